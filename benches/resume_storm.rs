//! A resume storm: 19,000 idle connections in 1,000 rooms of 19 (a broker with its default flags and
//! a SQLite store, in its own process), one message in each room; the broker is restarted
//! (SIGTERM, same database), five more messages go into each room, then every client reconnects at
//! once with `?since=<room>:<seq>:<epoch>`. Measured: the time from the reconnect signal until the
//! last client has its `joined {"recovered":true}` and all five missed messages.
//!
//! `cargo bench --bench resume_storm` runs 19,000 connections; under `cargo test` 190, as a smoke
//! check. Clients bind source addresses 127.0.0.2-127.0.0.40, so the ports of the closed
//! connections (TIME_WAIT) do not run out. Results: docs/benchmarks.md.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::sync::{mpsc, watch, Semaphore};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::MaybeTlsStream;

const PER_ROOM: usize = 19;
const MISSED: u64 = 5;
const WAIT: Duration = Duration::from_secs(120);

type Socket = tokio_tungstenite::WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

/// The broker process and where it listens.
struct Broker(Child, SocketAddr);

impl Broker {
    fn start(db: &str) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_wsbroker"))
            .args(["--listen", "127.0.0.1:0", "--log-format", "text", "--database-url", db])
            .args(["--rate-limit", "0"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the wsbroker binary");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let line = lines.find_map(|l| l.ok().filter(|l| l.contains("listening on"))).unwrap();
        let addr = line.split("listening on ").nth(1).unwrap().split_whitespace().next().unwrap();
        let addr = addr.parse().unwrap();
        std::thread::spawn(move || lines.for_each(drop));
        Self(child, addr)
    }

    /// SIGTERM, and wait for the graceful exit.
    fn stop(mut self) {
        let pid = self.0.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        self.0.wait().unwrap();
    }
}

async fn connect(addr: SocketAddr, source: u8, path: &str) -> Socket {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from(([127, 0, 0, source], 0))).unwrap();
    let stream = socket.connect(addr).await.unwrap();
    let request = format!("ws://{addr}{path}").into_client_request().unwrap();
    tokio_tungstenite::client_async(request, MaybeTlsStream::Plain(stream)).await.unwrap().0
}

async fn next_json(socket: &mut Socket) -> Option<Value> {
    loop {
        match tokio::time::timeout(WAIT, socket.next()).await.ok()?? {
            Ok(Message::Text(text)) => return serde_json::from_str(&text).ok(),
            Ok(Message::Close(_)) | Err(_) => return None,
            Ok(_) => {}
        }
    }
}

/// One idle member: remembers the last message it got; after the restart, resumes and reports once
/// it has the missed ones.
async fn member(
    n: usize,
    rooms: usize,
    first: SocketAddr,
    again: watch::Receiver<Option<SocketAddr>>,
    done: mpsc::UnboundedSender<u8>,
    gate: Arc<Semaphore>,
) {
    let (room, source) = (format!("r{}", n % rooms), 2 + (n % 39) as u8);
    let permit = gate.acquire().await.unwrap();
    let mut socket = connect(first, source, &format!("/ws?user=u{n}&room={room}")).await;
    drop(permit);
    let _ = done.send(0);
    let (mut seq, mut epoch) = (0, String::new());
    while let Some(frame) = next_json(&mut socket).await {
        if frame["type"] == "chat" {
            (seq, epoch) =
                (frame["seq"].as_u64().unwrap(), frame["epoch"].as_str().unwrap().into());
            let _ = done.send(1);
        }
    }
    drop(socket);
    let mut again = again;
    let addr = loop {
        if let Some(addr) = *again.borrow_and_update() {
            break addr;
        }
        again.changed().await.unwrap();
    };
    let mut socket =
        connect(addr, source, &format!("/ws?user=u{n}&since={room}:{seq}:{epoch}")).await;
    let (mut recovered, mut got) = (false, 0);
    while !(recovered && got == MISSED) {
        let frame = next_json(&mut socket).await.expect("the resume is answered");
        match frame["type"].as_str() {
            Some("joined") => recovered = frame["data"]["recovered"] == true,
            Some("chat") => got += 1,
            _ => {}
        }
    }
    let _ = done.send(2);
    // Hold the connection until every member is done.
    let _ = next_json(&mut socket).await;
}

/// A publisher in every room sends `count` messages into each and waits for every ack. The ids
/// start with `tag`: the same id again would be a resend, acked and not delivered.
async fn publish(addr: SocketAddr, rooms: usize, count: u64, tag: &str) {
    let mut publisher = connect(addr, 41, "/ws?user=publisher").await;
    for room in 0..rooms {
        let join = json!({"type": "join", "room": format!("r{room}"), "id": format!("j{room}")});
        publisher.send(Message::text(join.to_string())).await.unwrap();
    }
    let mut acked = 0;
    while acked < rooms {
        let frame = next_json(&mut publisher).await.expect("the publisher's joins are answered");
        acked += usize::from(frame["type"] == "ack");
    }
    // In windows of 100, so the acks and echoes stay within the publisher's send buffer.
    let total = count as usize * rooms;
    for window in (0..total).collect::<Vec<_>>().chunks(100) {
        for n in window {
            let room = format!("r{}", n % rooms);
            let chat = json!({"type": "chat", "id": format!("{tag}{n}"), "room": room, "data": {"content": "x"}});
            publisher.send(Message::text(chat.to_string())).await.unwrap();
        }
        let mut acked = 0;
        while acked < window.len() {
            let frame = next_json(&mut publisher).await.expect("the publisher's chats are acked");
            acked += usize::from(frame["type"] == "ack" && frame["seq"].is_u64());
        }
    }
    let _ = publisher.close(None).await;
}

async fn wait_for(done: &mut mpsc::UnboundedReceiver<u8>, stage: u8, count: usize) {
    let mut seen = 0;
    while seen < count {
        let got = tokio::time::timeout(WAIT, done.recv()).await.expect("members progress").unwrap();
        seen += usize::from(got == stage);
    }
}

fn main() {
    let full = std::env::args().any(|arg| arg == "--bench");
    let conns = if full { 19_000 } else { 190 };
    let conns = std::env::var("CONNS").ok().and_then(|c| c.parse().ok()).unwrap_or(conns);
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let elapsed = runtime.block_on(storm(conns));
    println!("resume storm: {conns} connections resumed after a restart, each with {MISSED} missed messages, in {elapsed:.2?} ({:.0} resumes/s)", conns as f64 / elapsed.as_secs_f64());
}

async fn storm(conns: usize) -> Duration {
    let dir = std::env::temp_dir().join(format!("wsbroker-resume-storm-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let db = format!("sqlite://{}", dir.join("storm.db").display());
    let rooms = conns / PER_ROOM;
    let broker = Broker::start(&db);
    let (again_tx, again) = watch::channel(None);
    let (done_tx, mut done) = mpsc::unbounded_channel();
    let gate = Arc::new(Semaphore::new(512));
    let first = broker.1;
    for n in 0..conns {
        tokio::spawn(member(n, rooms, first, again.clone(), done_tx.clone(), Arc::clone(&gate)));
    }
    wait_for(&mut done, 0, conns).await;
    publish(broker.1, rooms, 1, "before-").await;
    wait_for(&mut done, 1, conns).await;
    broker.stop();
    let broker = Broker::start(&db);
    publish(broker.1, rooms, MISSED, "missed-").await;
    let started = Instant::now();
    again_tx.send(Some(broker.1)).unwrap();
    wait_for(&mut done, 2, conns).await;
    let elapsed = started.elapsed();
    broker.stop();
    let _ = std::fs::remove_dir_all(&dir);
    elapsed
}
