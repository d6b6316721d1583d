//! Graceful shutdown: queued frames go out, then every client gets 1001, then the process exits 0.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::json;

use crate::common::{start_server, TestServer};

#[tokio::test]
async fn shutdown_flushes_queued_frames_then_closes_everyone_with_1001() {
    let mut server = start_server().await;
    let mut clients = vec![
        server.member("alice", "r").await,
        server.member("bob", "r").await,
        server.connect("/ws?user=carol").await,
    ];
    let (_, body) = server.post("/api/v1/chat/rooms/_global/messages", json!({"data": {"content": "bye"}})).await;
    let stopping = tokio::spawn(async move { server.shutdown().await });
    for client in &mut clients {
        let last = client.recv_type("notification").await;
        assert_eq!(last["id"], body["id"], "the queued message went out before the close");
        let close = client.closed().await.expect("a close frame");
        assert_eq!(u16::from(close.code), 1001);
    }
    assert!(stopping.await.unwrap(), "every connection closed within the shutdown timeout");
}

#[tokio::test]
async fn sigterm_closes_clients_with_1001_and_exits_0() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_wsbroker"))
        .args(["--listen", "127.0.0.1:0", "--log-format", "text"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the wsbroker binary");
    let stdout = child.stdout.take().unwrap();
    let addr = tokio::task::spawn_blocking(move || {
        let mut lines = BufReader::new(stdout).lines();
        let line = lines.find(|l| l.as_ref().is_ok_and(|l| l.contains("listening on"))).expect("a listening line");
        let line = line.unwrap();
        let addr = line.split("listening on ").nth(1).unwrap().split_whitespace().next().unwrap().to_owned();
        // Keep draining stdout so the broker never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        addr
    });
    let addr = tokio::time::timeout(Duration::from_secs(30), addr).await.expect("the broker started").unwrap();
    let server = TestServer::attach(addr.parse().unwrap());
    let mut client = server.member("alice", "r").await;
    let killed = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(killed.success());
    let close = client.closed().await.expect("a close frame");
    assert_eq!(u16::from(close.code), 1001);
    let status = tokio::time::timeout(Duration::from_secs(20), tokio::task::spawn_blocking(move || child.wait()))
        .await
        .expect("the broker exited")
        .unwrap()
        .unwrap();
    assert!(status.success(), "exit status {status}");
}
