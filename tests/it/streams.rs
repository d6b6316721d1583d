//! Room streams: every room message carries `seq` (per room, from 1, no gap) and `epoch`, stamped by
//! the room's home shard, so every member receives a room's messages in seq order.

use hyper::StatusCode;
use serde_json::{json, Value};

use crate::common::{start_server_with, Client, TempDir, TestServer};

fn chat(room: &str, id: &str) -> Value {
    json!({"type": "chat", "room": room, "id": id, "data": {"content": id}})
}

/// The seqs of the next `count` chats `client` receives in `room`.
async fn seqs(client: &mut Client, room: &str, count: usize) -> Vec<u64> {
    let mut seen = Vec::with_capacity(count);
    while seen.len() < count {
        let frame = client.recv_where(|f| f["type"] == "chat" || f["type"] == "presence").await;
        if frame["type"] == "presence" {
            assert!(frame.get("seq").is_none(), "presence events carry no seq: {frame}");
            continue;
        }
        assert_eq!(frame["room"], room);
        seen.push(frame["seq"].as_u64().unwrap_or_else(|| panic!("no seq: {frame}")));
    }
    seen
}

#[tokio::test]
async fn every_member_gets_a_rooms_messages_in_seq_order_with_no_gap_from_any_shard() {
    let server = start_server_with(|c| {
        c.shards = Some(4);
        c.rate_limit = 0.0;
    })
    .await;
    let users = ["ann", "ben", "cat", "dan", "eve", "fay"];
    let mut clients = Vec::new();
    for user in users {
        clients.push(server.member(user, "r").await);
    }
    const EACH: usize = 25;
    for n in 0..EACH {
        for (i, client) in clients.iter_mut().enumerate() {
            client.send(chat("r", &format!("{}-{n}", users[i]))).await;
        }
    }
    let total = EACH * users.len();
    for client in &mut clients {
        assert_eq!(seqs(client, "r", total).await, (1..=total as u64).collect::<Vec<_>>());
    }
}

#[tokio::test]
async fn acks_and_http_publishes_carry_the_seq_and_history_reads_after_a_seq() {
    let dir = TempDir::new("streams-rest");
    let url = dir.sqlite();
    let server = start_server_with(move |c| c.database_url = url).await;
    let mut alice = server.member("alice", "news").await;
    let ack = alice.request(chat("news", "a1")).await;
    assert_eq!((ack["type"].as_str(), ack["seq"].as_u64()), (Some("ack"), Some(1)));
    let (status, published) =
        server.post("/api/v1/chat/rooms/news/messages", json!({"data": {"content": "p"}})).await;
    assert_eq!((status, published["seq"].as_u64()), (StatusCode::ACCEPTED, Some(2)));
    assert_eq!(alice.request(chat("news", "a3")).await["seq"], 3);
    let (_, page) = server.get("/api/v1/chat/rooms/news/messages?after=1").await;
    let found: Vec<u64> =
        page["messages"].as_array().unwrap().iter().map(|m| m["seq"].as_u64().unwrap()).collect();
    assert_eq!((found, page["next_after"].as_u64()), (vec![2, 3], Some(3)));
    let epochs: Vec<&Value> =
        page["messages"].as_array().unwrap().iter().map(|m| &m["epoch"]).collect();
    assert!(epochs.iter().all(|e| e.is_string() && *e == epochs[0]), "one stream: {epochs:?}");
    let (status, _) = server.get("/api/v1/chat/rooms/news/messages?after=1&before=2").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let retry = alice.request(chat("news", "a1")).await;
    assert_eq!(retry["seq"], 1, "a retry is acked with the original's seq");
}

/// Sends one chat into `room` and returns its (seq, epoch) from the echo.
async fn one(server: &TestServer, user: &str, room: &str, id: &str) -> (u64, String) {
    let mut client = server.member(user, room).await;
    client.send(chat(room, id)).await;
    let echo = client.recv_where(|f| f["type"] == "chat" && f["id"] == id).await;
    (echo["seq"].as_u64().unwrap(), echo["epoch"].as_str().unwrap().to_owned())
}

#[tokio::test]
async fn a_stream_goes_on_across_a_restart_with_a_store_and_starts_anew_without() {
    let dir = TempDir::new("streams-restart");
    let url = dir.sqlite();
    let stored = |url| start_server_with(move |c| c.database_url = url);
    let mut server = stored(url.clone()).await;
    let (first, epoch) = one(&server, "alice", "kept", "k1").await;
    assert_eq!(one(&server, "alice", "kept", "k2").await, (first + 1, epoch.clone()));
    assert!(server.shutdown().await);
    let server = stored(url).await;
    assert_eq!(
        one(&server, "bob", "kept", "k3").await,
        (first + 2, epoch),
        "same stream, next seq"
    );

    let mut bare = start_server_with(|_| {}).await;
    let (seq, old_epoch) = one(&bare, "alice", "gone", "g1").await;
    assert_eq!(seq, 1);
    assert!(bare.shutdown().await);
    let bare = start_server_with(|_| {}).await;
    let (seq, new_epoch) = one(&bare, "alice", "gone", "g2").await;
    assert_eq!(seq, 1, "without a store the stream starts again");
    assert_ne!(new_epoch, old_epoch, "under a new epoch");
}
