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

/// The `id`s of the chats `client` gets until the one with content `last`.
async fn chat_ids_until(client: &mut crate::common::Client, last: &str) -> Vec<String> {
    let mut ids = Vec::new();
    loop {
        let frame = client.recv_type("chat").await;
        ids.push(frame["id"].as_str().unwrap().to_owned());
        if frame["data"]["content"] == last {
            return ids;
        }
    }
}

#[tokio::test]
async fn sigterm_acks_every_chat_in_flight_and_a_resend_after_the_restart_is_not_delivered_again() {
    let dir = crate::common::TempDir::new("shutdown-acks");
    let url = dir.sqlite_url();
    let args = ["--database-url", url.as_str(), "--rate-limit", "0"];
    let (mut child, server) = spawn_broker(&args).await;
    let mut alice = server.member("alice", "r").await;
    let mut bob = server.member("bob", "r").await;
    let ids: Vec<String> = (0..10).map(|n| format!("m{n}")).collect();
    for id in &ids {
        alice.send(json!({"type": "chat", "room": "r", "id": id, "data": {"content": id}})).await;
    }
    let first = bob.recv_type("chat").await;
    assert_eq!(first["id"], "m0");
    let pid = child.0.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    // Every chat the broker took is acked before the 1001; one it refused says so.
    let mut answered = Vec::new();
    loop {
        use futures_util::StreamExt;
        let message = tokio::time::timeout(crate::common::WAIT, alice.ws.next()).await.unwrap();
        let Some(Ok(tokio_tungstenite::tungstenite::Message::Text(text))) = message else { break };
        let frame: serde_json::Value = serde_json::from_str(&text).unwrap();
        if frame["type"] == "ack" || frame["type"] == "error" {
            answered.push((frame["id"].as_str().unwrap().to_owned(), frame["type"].clone()));
        }
    }
    let acked: Vec<String> =
        answered.iter().filter(|(_, kind)| kind == "ack").map(|(id, _)| id.clone()).collect();
    assert_eq!(answered.len(), ids.len(), "every chat answered before the close: {answered:?}");
    let delivered = chat_ids_until(&mut bob, &acked.last().cloned().unwrap()).await;
    let mut seen: Vec<String> = std::iter::once("m0".to_owned()).chain(delivered).collect();
    drop((alice, bob));
    let _ = tokio::task::spawn_blocking(move || child.0.wait()).await;

    // The client resends every chat, as one that lost its acks would: the acked ones are
    // recognised (acked again, delivered to nobody), the refused ones go through once.
    let (_child, server) = spawn_broker(&args).await;
    let mut bob = server.member("bob", "r").await;
    let mut alice = server.member("alice", "r").await;
    for id in &ids {
        let frame = json!({"type": "chat", "room": "r", "id": id, "data": {"content": id}});
        let answer = alice.request(frame).await;
        assert_eq!(answer["type"], "ack", "{answer}");
    }
    let end = json!({"type": "chat", "room": "r", "id": "end", "data": {"content": "end"}});
    assert_eq!(alice.request(end).await["type"], "ack");
    seen.extend(chat_ids_until(&mut bob, "end").await);
    seen.pop();
    seen.sort();
    assert_eq!(seen, ids, "bob got each message exactly once, across the restart");
}
