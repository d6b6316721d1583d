//! Chats while files move: 20 members chat in one room (a chat every 50 ms each, 400 a second),
//! each timing its acks (sent to `ack`: stored and delivered); first alone, then while 10 other
//! users each upload a 25 MiB file into another room of the same broker (a process of its own, a
//! SQLite store, or `UPLOAD_BENCH_DB=postgres://...`; more broker flags in `UPLOAD_BENCH_ARGS`,
//! e.g. `--attachment-write-rate 0`). Prints the ack p50 / p99 / max of both phases and how long
//! the uploads took.
//!
//! `cargo bench --bench uploads`; under `cargo test` a smoke run (1 MiB files, 1 s phases).
//! Results: docs/benchmarks.md.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

const CHATTERS: usize = 20;
const UPLOADERS: usize = 10;
const CHAT_EVERY: Duration = Duration::from_millis(50);

struct Broker(Child, SocketAddr);

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(db: &str) -> Broker {
    let mut child = Command::new(env!("CARGO_BIN_EXE_wsbroker"))
        .args(["--listen", "127.0.0.1:0", "--log-format", "text", "--database-url", db])
        .args(["--rate-limit", "0", "--upload-rate", "0"])
        .args(std::env::var("UPLOAD_BENCH_ARGS").unwrap_or_default().split_whitespace())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the wsbroker binary");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = lines.find_map(|l| l.ok().filter(|l| l.contains("listening on"))).unwrap();
    let addr = line.split("listening on ").nth(1).unwrap().split_whitespace().next().unwrap();
    let addr = addr.parse().unwrap();
    std::thread::spawn(move || lines.for_each(drop));
    Broker(child, addr)
}

async fn http(addr: SocketAddr, method: &str, path: &str, body: Vec<u8>) -> u16 {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
    tokio::spawn(connection);
    let request = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "bench")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    let status = response.status().as_u16();
    let _ = response.into_body().collect().await;
    status
}

/// One member: a chat every [`CHAT_EVERY`] until `stop`, each ack's latency recorded.
async fn chatter(
    addr: SocketAddr,
    n: usize,
    (stop, ready): (Arc<AtomicBool>, Arc<tokio::sync::Barrier>),
    acks: Arc<Mutex<Vec<Duration>>>,
) {
    let url = format!("ws://{addr}/ws?user=c{n}");
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    socket
        .send(Message::text(json!({"type": "join", "room": "talk", "id": "j"}).to_string()))
        .await
        .unwrap();
    while let Some(Ok(frame)) = socket.next().await {
        if matches!(&frame, Message::Text(text) if text.contains("\"ack\"")) {
            break;
        }
    }
    ready.wait().await;
    let mut sent: std::collections::HashMap<String, Instant> = std::collections::HashMap::new();
    let mut tick = tokio::time::interval(CHAT_EVERY);
    let mut k = 0u64;
    while !stop.load(Ordering::Relaxed) {
        tokio::select! {
            _ = tick.tick() => {
                k += 1;
                let id = format!("c{n}-{k}");
                let chat = json!({"type": "chat", "room": "talk", "id": id, "data": {"content": "hello"}});
                sent.insert(id, Instant::now());
                socket.send(Message::text(chat.to_string())).await.unwrap();
            }
            frame = socket.next() => {
                let Some(Ok(Message::Text(text))) = frame else { continue };
                let frame: Value = serde_json::from_str(&text).unwrap();
                if frame["type"] == "ack" {
                    if let Some(at) = frame["id"].as_str().and_then(|id| sent.remove(id)) {
                        acks.lock().unwrap().push(at.elapsed());
                    }
                }
            }
        }
    }
}

fn summary(label: &str, mut acks: Vec<Duration>) {
    acks.sort_unstable();
    let at = |q: f64| {
        acks.get(((acks.len() as f64 * q) as usize).min(acks.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{label}: {} acks, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        acks.len(),
        ms(at(0.5)),
        ms(at(0.99)),
        ms(acks.last().copied().unwrap_or_default())
    );
}

/// Runs the chatters for `phase`, with `uploads` running meanwhile (or none); the acks.
async fn phase(
    addr: SocketAddr,
    length: Duration,
    file: Option<usize>,
) -> (Vec<Duration>, Option<Duration>) {
    let (stop, acks) = (Arc::new(AtomicBool::new(false)), Arc::new(Mutex::new(Vec::new())));
    let ready = Arc::new(tokio::sync::Barrier::new(CHATTERS + 1));
    let chatters: Vec<_> = (0..CHATTERS)
        .map(|n| {
            let signals = (Arc::clone(&stop), Arc::clone(&ready));
            tokio::spawn(chatter(addr, n, signals, Arc::clone(&acks)))
        })
        .collect();
    ready.wait().await; // every member joined
    let started = Instant::now();
    let uploaded = match file {
        Some(bytes) => {
            let uploads: Vec<_> = (0..UPLOADERS)
                .map(|n| {
                    tokio::spawn(async move {
                        let body: Vec<u8> = (0..bytes).map(|i| (i * 7 + n) as u8 | 0x80).collect();
                        let path =
                            format!("/api/v1/chat/rooms/files/attachments?user=u{n}&name=f{n}");
                        assert_eq!(http(addr, "POST", &path, body).await, 201);
                    })
                })
                .collect();
            for upload in uploads {
                upload.await.unwrap();
            }
            Some(started.elapsed())
        }
        None => {
            tokio::time::sleep(length).await;
            None
        }
    };
    stop.store(true, Ordering::Relaxed);
    for chatter in chatters {
        let _ = chatter.await;
    }
    let acks = std::mem::take(&mut *acks.lock().unwrap());
    (acks, uploaded)
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let (file, length) =
        if full { (25 << 20, Duration::from_secs(10)) } else { (1 << 20, Duration::from_secs(1)) };
    let dir = std::env::temp_dir().join(format!("wsbroker-uploads-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let db = std::env::var("UPLOAD_BENCH_DB")
        .unwrap_or_else(|_| format!("sqlite://{}/bench.db", dir.display()));
    let broker = start(&db);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let addr = broker.1;
        let room = json!({"name": "files", "type": "public"}).to_string().into_bytes();
        assert_eq!(http(addr, "POST", "/api/v1/chat/rooms?user=u0", room).await, 201);
        for n in 1..UPLOADERS {
            let path = format!("/api/v1/chat/rooms/files/participants/u{n}?user=u0");
            assert_eq!(http(addr, "POST", &path, b"{}".to_vec()).await, 201);
        }
        let (alone, _) = phase(addr, length, None).await;
        summary("chat acks alone", alone);
        let (during, took) = phase(addr, length, Some(file)).await;
        summary(
            &format!("chat acks while {UPLOADERS} users upload {} MiB each", file >> 20),
            during,
        );
        println!("the uploads took {:.2} s", took.unwrap_or_default().as_secs_f64());
    });
    drop(broker);
    let _ = std::fs::remove_dir_all(dir);
}
