//! Shared black-box test helpers: a broker on port 0, real WebSocket clients, a real HTTP client.
//! Every wait is bounded: a missing event fails the test instead of hanging it.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::MaybeTlsStream;
use wsbroker::store::DatabaseUrl;
use wsbroker::{Config, Server};

/// How long any single expected event may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(10);

mod client;

pub use client::{presence_changes, Client};

pub struct TestServer {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<bool>>,
}

pub async fn start_server() -> TestServer {
    start_server_with(|_| {}).await
}

/// Starts a broker on 127.0.0.1:0 with the defaults, adjusted by `configure`.
pub async fn start_server_with(configure: impl FnOnce(&mut Config)) -> TestServer {
    let mut config = Config::with_listen("127.0.0.1:0".parse().unwrap());
    // No store unless the test names one (a temporary file, or a PostgreSQL of its own).
    config.database_url = DatabaseUrl::None;
    configure(&mut config);
    let server = Server::bind(config).await.expect("bind the test server");
    let addr = server.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(server.run(async move {
        let _ = stopped.await;
    }));
    TestServer { addr, stop: Some(stop), task: Some(task) }
}

/// A broker process, killed when dropped so a failing test leaves nothing running.
pub struct BrokerProcess(pub std::process::Child);

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A chat frame with an id, for `room`.
pub fn chat(room: &str, id: &str, content: &str) -> serde_json::Value {
    serde_json::json!({"type": "chat", "room": room, "id": id, "data": {"content": content}})
}

/// A broker storing into a SQLite file in `dir`, with no chat rate limit.
pub async fn stored_server(dir: &TempDir) -> TestServer {
    let url = dir.sqlite();
    start_server_with(move |c| {
        c.database_url = url;
        c.rate_limit = 0.0;
    })
    .await
}

/// Runs the `wsbroker` binary on 127.0.0.1:0 with `args`, as its own process (for tests that kill it).
/// `args` must name the database (`--database-url`), so no test writes `./wsbroker.db`.
pub async fn spawn_broker(args: &[&str]) -> (BrokerProcess, TestServer) {
    let (process, server, _) = spawn_broker_logged(args).await;
    (process, server)
}

/// [`spawn_broker`], keeping every line the broker logs (text format) in the returned list.
pub async fn spawn_broker_logged(
    args: &[&str],
) -> (BrokerProcess, TestServer, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use std::io::{BufRead, BufReader};
    assert!(args.contains(&"--database-url"), "a test broker names its database: {args:?}");
    // A test that restarts the broker on the same address names it (`--listen`).
    let listen: &[&str] =
        if args.contains(&"--listen") { &[] } else { &["--listen", "127.0.0.1:0"] };
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_wsbroker"))
        .args(listen)
        .args(["--log-format", "text"])
        .args(args)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("start the wsbroker binary");
    let stdout = child.stdout.take().unwrap();
    let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let kept = std::sync::Arc::clone(&log);
    let addr = tokio::task::spawn_blocking(move || {
        let mut lines = BufReader::new(stdout).lines();
        let line = lines
            .find(|l| l.as_ref().is_ok_and(|l| l.contains("listening on")))
            .expect("a listening line");
        let line = line.unwrap();
        let addr = line
            .split("listening on ")
            .nth(1)
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
            .to_owned();
        // Keep draining stdout so the broker never blocks on a full pipe.
        std::thread::spawn(move || {
            lines.map_while(Result::ok).for_each(|l| kept.lock().unwrap().push(l))
        });
        addr
    });
    let addr = tokio::time::timeout(Duration::from_secs(30), addr)
        .await
        .expect("the broker started")
        .unwrap();
    (BrokerProcess(child), TestServer::attach(addr.parse().unwrap()), log)
}

impl TestServer {
    /// A handle to a broker running elsewhere (another process); it cannot be shut down from here.
    pub fn attach(addr: SocketAddr) -> Self {
        Self { addr, stop: None, task: None }
    }

    pub async fn connect(&self, path_and_query: &str) -> Client {
        self.try_connect(path_and_query, None)
            .await
            .unwrap_or_else(|status| panic!("connect refused: {status}"))
    }

    /// Connects, with `Authorization: Bearer` when given; `Err` is the HTTP status of a refusal.
    pub async fn try_connect(
        &self,
        path_and_query: &str,
        bearer: Option<&str>,
    ) -> Result<Client, StatusCode> {
        let authorization = bearer.map(|token| ("authorization", format!("Bearer {token}")));
        self.try_connect_with(path_and_query, authorization.as_slice()).await
    }

    /// Connects from the loopback address `source` (e.g. 127.0.0.2); `Err` is the HTTP status of a refusal.
    pub async fn try_connect_from(
        &self,
        path_and_query: &str,
        source: &str,
    ) -> Result<Client, StatusCode> {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
        self.try_connect_socket(path_and_query, socket).await
    }

    /// Connects with a receive buffer of `bytes`, so what the server writes soon fills the window.
    pub async fn connect_with_small_window(&self, path_and_query: &str, bytes: u32) -> Client {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(bytes).unwrap();
        let connected = self.try_connect_socket(path_and_query, socket).await;
        connected.unwrap_or_else(|status| panic!("connect refused: {status}"))
    }

    async fn try_connect_socket(
        &self,
        path_and_query: &str,
        socket: tokio::net::TcpSocket,
    ) -> Result<Client, StatusCode> {
        let stream = socket.connect(self.addr).await.unwrap();
        let request =
            format!("ws://{}{}", self.addr, path_and_query).into_client_request().unwrap();
        let handshake = tokio_tungstenite::client_async(request, MaybeTlsStream::Plain(stream));
        match tokio::time::timeout(WAIT, handshake).await.expect("handshake timed out") {
            Ok((ws, _)) => Ok(Client { ws }),
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => Err(response.status()),
            Err(other) => panic!("connect failed: {other}"),
        }
    }

    /// Connects with extra request headers; `Err` is the HTTP status of a refusal.
    pub async fn try_connect_with(
        &self,
        path_and_query: &str,
        headers: &[(&str, String)],
    ) -> Result<Client, StatusCode> {
        let mut request =
            format!("ws://{}{}", self.addr, path_and_query).into_client_request().unwrap();
        for (name, value) in headers {
            let name = hyper::header::HeaderName::from_bytes(name.as_bytes()).unwrap();
            request.headers_mut().insert(name, value.parse().unwrap());
        }
        let connecting = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(request));
        match connecting.await.expect("connect timed out") {
            Ok((ws, _)) => Ok(Client { ws }),
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => Err(response.status()),
            Err(other) => panic!("connect failed: {other}"),
        }
    }

    /// Connects as `user` to `/ws` and joins `room` (waiting for the ack).
    pub async fn member(&self, user: &str, room: &str) -> Client {
        let mut client = self.connect(&format!("/ws?user={user}")).await;
        client.join(room).await;
        client
    }

    /// Starts the graceful shutdown; returns whether every connection closed within the timeout.
    pub async fn shutdown(&mut self) -> bool {
        let _ = self.stop.take().expect("shut down once").send(());
        tokio::time::timeout(WAIT * 3, self.task.take().unwrap())
            .await
            .expect("shutdown timed out")
            .unwrap()
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        http(self.addr, Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        http(self.addr, Method::POST, path, Some(body.to_string())).await
    }

    pub async fn patch(&self, path: &str, body: Value) -> (StatusCode, Value) {
        http(self.addr, Method::PATCH, path, Some(body.to_string())).await
    }

    /// `DELETE path`; the JSON answer, or `Null` for an empty one (204).
    pub async fn delete(&self, path: &str) -> (StatusCode, Value) {
        let (status, text) = http_text(self.addr, Method::DELETE, path, None).await;
        let value =
            if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap() };
        (status, value)
    }

    /// `method path` with a JSON body; the JSON answer, or `Null` for an empty one (204).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let (status, text) = http_text(self.addr, method, path, body.map(|b| b.to_string())).await;
        let value =
            if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap() };
        (status, value)
    }

    /// A request with `Authorization: Bearer token`; `Null` for an empty answer (204).
    pub async fn request_as(
        &self,
        token: &str,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let (status, text) =
            http_exchange(self.addr, method, path, body.map(|b| b.to_string()), Some(token)).await;
        if text.is_empty() {
            return (status, Value::Null);
        }
        (status, serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}")))
    }

    /// The value of an unlabelled metric from `/metrics`.
    pub async fn metric(&self, name: &str) -> u64 {
        let (status, text) = http_text(self.addr, Method::GET, "/metrics", None).await;
        assert_eq!(status, StatusCode::OK);
        let line = text
            .lines()
            .find(|l| l.split(' ').next() == Some(name))
            .unwrap_or_else(|| panic!("no {name} in {text}"));
        line.split(' ').nth(1).unwrap().parse().unwrap()
    }

    /// Polls `GET path` until its answer satisfies `wanted`, for at most [`WAIT`]; returns it.
    pub async fn wait_get(&self, path: &str, wanted: impl Fn(StatusCode, &Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let (status, answer) = self.get(path).await;
            if wanted(status, &answer) {
                return answer;
            }
            assert!(tokio::time::Instant::now() < deadline, "GET {path} stayed {status} {answer}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Polls a metric until it reaches `value`, for at most [`WAIT`].
    pub async fn wait_metric(&self, name: &str, value: u64) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let current = self.metric(name).await;
            if current == value {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{name} stayed {current}, expected {value}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

pub async fn http(
    addr: SocketAddr,
    method: Method,
    path: &str,
    body: Option<String>,
) -> (StatusCode, Value) {
    let (status, text) = http_text(addr, method, path, body).await;
    let value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"));
    (status, value)
}

pub async fn http_text(
    addr: SocketAddr,
    method: Method,
    path: &str,
    body: Option<String>,
) -> (StatusCode, String) {
    http_exchange(addr, method, path, body, None).await
}

async fn http_exchange(
    addr: SocketAddr,
    method: Method,
    path: &str,
    body: Option<String>,
    bearer: Option<&str>,
) -> (StatusCode, String) {
    let exchange = async {
        let stream = TcpStream::connect(addr).await.unwrap();
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
        tokio::spawn(connection);
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header("host", addr.to_string())
            .header("content-type", "application/json");
        if let Some(token) = bearer {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let request = request.body(Full::new(Bytes::from(body.unwrap_or_default()))).unwrap();
        let response = sender.send_request(request).await.unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8(bytes.to_vec()).unwrap())
    };
    tokio::time::timeout(WAIT, exchange).await.expect("HTTP request timed out")
}

/// A directory of the test's own under the system's temporary directory, removed when dropped.
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    pub fn new(name: &str) -> Self {
        use std::sync::atomic::{AtomicU32, Ordering};
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("wsbroker-{name}-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    /// `sqlite://` URL of a database file in this directory.
    pub fn sqlite_url(&self) -> String {
        format!("sqlite://{}", self.0.join("test.db").display())
    }

    pub fn sqlite(&self) -> DatabaseUrl {
        self.sqlite_url().parse().unwrap()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A deterministic xorshift generator, so a failing run replays the same schedule.
pub struct Rng(pub u64);

impl Rng {
    /// A number in `0..n`.
    pub fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}
