//! Graceful shutdown: queued frames go out, then every client gets 1001, then the process exits 0.

use std::process::Command;
use std::time::Duration;

use serde_json::json;

use crate::common::{spawn_broker, start_server};

#[tokio::test]
async fn shutdown_flushes_queued_frames_then_closes_everyone_with_1001() {
    let mut server = start_server().await;
    let mut clients = vec![
        server.member("alice", "r").await,
        server.member("bob", "r").await,
        server.connect("/ws?user=carol").await,
    ];
    let (_, body) = server
        .post("/api/v1/chat/rooms/_global/messages", json!({"data": {"content": "bye"}}))
        .await;
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
    let (mut child, server) = spawn_broker(&["--database-url", "none"]).await;
    let mut client = server.member("alice", "r").await;
    let killed = Command::new("kill").args(["-TERM", &child.0.id().to_string()]).status().unwrap();
    assert!(killed.success());
    let close = client.closed().await.expect("a close frame");
    assert_eq!(u16::from(close.code), 1001);
    let status = tokio::time::timeout(
        Duration::from_secs(20),
        tokio::task::spawn_blocking(move || child.0.wait()),
    )
    .await
    .expect("the broker exited")
    .unwrap()
    .unwrap();
    assert!(status.success(), "exit status {status}");
}
