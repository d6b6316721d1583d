//! Nobody sees a room message before it is committed. A commit held up (another connection holds
//! the SQLite file's write lock) holds the message back from the room; a broker killed then loses
//! only a message nobody saw, and its sender's resend after the restart reaches everyone once.

use serde_json::{json, Value};

use crate::common::{chat, spawn_broker, TempDir};

fn resume(room: &str, seq: u64, epoch: &str) -> Value {
    json!({"type": "join", "room": room, "id": "resume", "data": {"since": {"seq": seq, "epoch": epoch}}})
}

#[tokio::test]
async fn a_message_whose_commit_never_came_was_seen_by_nobody_and_its_resend_is_delivered_once() {
    let dir = TempDir::new("durable");
    let url = dir.sqlite_url();
    // One shard: a fan-out made at numbering would be in bob's outbox before the writer tried.
    let args = ["--database-url", &url, "--rate-limit", "0", "--shards", "1"];
    let (process, server) = spawn_broker(&args).await;
    let mut alice = server.member("alice", "lobby").await;
    let mut bob = server.member("bob", "lobby").await;
    let first = alice.request(chat("lobby", "m1", "first")).await;
    assert_eq!(first["type"], "ack", "{first}");
    let seen = bob.recv_type("chat").await;
    let epoch = seen["epoch"].as_str().unwrap().to_owned();
    assert_eq!(seen["seq"], 1);

    let lock = rusqlite::Connection::open(dir.0.join("test.db")).unwrap();
    lock.execute_batch("BEGIN EXCLUSIVE").unwrap();
    alice.send(chat("lobby", "m2", "second")).await;
    // The writer has tried to commit it and could not (its busy timeout ran out).
    server.wait_metric("wsbroker_store_failures_total", 1).await;
    bob.send(json!({"type": "ping", "id": "p"})).await;
    let next = bob.recv_where(|f| f["type"] == "pong" || f["type"] == "chat").await;
    assert_eq!(next["type"], "pong", "a message not committed reached a member: {next}");

    let addr = server.addr.to_string();
    drop(process); // SIGKILL, with the chat numbered and never committed
    drop(lock);
    let args = ["--database-url", &url, "--rate-limit", "0", "--listen", &addr];
    let (_process, server) = spawn_broker(&args).await;
    let mut bob = server.connect("/ws?user=bob").await;
    let resumed = bob.request(resume("lobby", 1, &epoch)).await;
    assert_eq!(resumed["type"], "ack", "bob resumes where he was: {resumed}");
    assert_ne!(resumed["data"]["recovered"], false, "{resumed}");
    let mut alice = server.member("alice", "lobby").await;
    let resent = alice.request(chat("lobby", "m2", "second")).await;
    assert_eq!(
        (resent["type"].as_str(), resent["seq"].as_u64()),
        (Some("ack"), Some(2)),
        "{resent}"
    );
    let got = bob.recv_type("chat").await;
    assert_eq!((got["id"].as_str(), got["seq"].as_u64()), (Some("m2"), Some(2)), "{got}");
    let (_, history) = server.get("/api/v1/chat/rooms/lobby/messages").await;
    let stored = history["messages"].as_array().unwrap();
    let ids: Vec<&str> = stored.iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["m1", "m2"], "stored once each: {history}");
}
