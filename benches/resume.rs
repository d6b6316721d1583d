//! Resume latency: a client rejoins a room with `since` 100 messages back and waits for the answer
//! and all 100 replayed messages from the home shard's in-memory window. A broker in this process
//! (no store), real WebSocket clients over loopback, one resume at a time.
//!
//! `cargo bench --bench resume` runs 2,000 resumes; under `cargo test` 20, as a smoke check.
//! Results: docs/benchmarks.md.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;
use wsbroker::{Config, Server};

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn next_json(socket: &mut Socket) -> Value {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(10), socket.next()).await.unwrap();
        if let Message::Text(text) = message.unwrap().unwrap() {
            return serde_json::from_str(&text).unwrap();
        }
    }
}

fn main() {
    let full = std::env::args().any(|arg| arg == "--bench");
    let resumes = if full { 2_000 } else { 20 };
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    runtime.block_on(run(resumes));
}

async fn run(resumes: usize) {
    let mut config = Config::with_listen("127.0.0.1:0".parse().unwrap());
    config.rate_limit = 0.0;
    let server = Server::bind(config).await.unwrap();
    let addr = server.local_addr().unwrap();
    tokio::spawn(server.run(std::future::pending()));
    let url = format!("ws://{addr}/ws?user=publisher&room=bench");
    let (mut publisher, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    for n in 0..100 {
        let chat = json!({"type": "chat", "room": "bench", "data": {"content": n.to_string()}});
        publisher.send(Message::text(chat.to_string())).await.unwrap();
    }
    let mut last = json!(null);
    while last["seq"] != 100 {
        last = next_json(&mut publisher).await;
    }
    let epoch = last["epoch"].as_str().unwrap().to_owned();
    let (mut reader, _) =
        tokio_tungstenite::connect_async(format!("ws://{addr}/ws?user=reader")).await.unwrap();
    let mut latencies = Vec::with_capacity(resumes);
    for n in 0..resumes {
        let join = json!({"type": "join", "room": "bench", "id": format!("r{n}"), "data": {"since": {"seq": 0, "epoch": epoch}}});
        let started = Instant::now();
        reader.send(Message::text(join.to_string())).await.unwrap();
        let mut answer = next_json(&mut reader).await;
        while answer["id"] != format!("r{n}").as_str() {
            answer = next_json(&mut reader).await;
        }
        assert_eq!(answer["data"]["recovered"], true, "{answer}");
        let mut got = 0;
        while got < 100 {
            if next_json(&mut reader).await["type"] == "chat" {
                got += 1;
            }
        }
        latencies.push(started.elapsed());
        let leave = json!({"type": "leave", "room": "bench", "id": format!("l{n}")});
        reader.send(Message::text(leave.to_string())).await.unwrap();
        while next_json(&mut reader).await["id"] != format!("l{n}").as_str() {}
    }
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    println!(
        "resume of 100 missed messages from the window: p50 {:.2?}, p99 {:.2?}, max {:.2?} ({resumes} resumes)",
        at(0.5),
        at(0.99),
        latencies.last().unwrap()
    );
}
