//! Exactly once across instances: a chat resent with the same id on another instance, or after its
//! instance restarted, is acked with the original seq and delivered nowhere again. The decision is
//! the stamp script's, atomic with the numbering in Redis.
//! A chat to everyone has no stream: the store, which finds a resend stored already, decides.

use serde_json::{json, Value};

use crate::cluster::instance_with;
use crate::common::{Client, TestServer};
use crate::postgres_server::PostgresServer;
use crate::redis_server::RedisServer;

fn chat(id: &str, content: &str) -> Value {
    json!({"type": "chat", "room": "dup", "id": id, "data": {"content": content}})
}

async fn instance(redis: &RedisServer, url: &str, id: &str) -> TestServer {
    let url = url.parse().unwrap();
    instance_with(redis, id, move |c| {
        c.database_url = url;
        c.rate_limit = 0.0;
    })
    .await
}

/// The `(id, seq)` of every chat `client` gets until the one with content `last`.
async fn chats_until(client: &mut Client, last: &str) -> Vec<(String, u64)> {
    let mut seen = Vec::new();
    loop {
        let frame = client.recv_type("chat").await;
        seen.push((frame["id"].as_str().unwrap().to_owned(), frame["seq"].as_u64().unwrap()));
        if frame["data"]["content"] == last {
            return seen;
        }
    }
}

#[tokio::test]
async fn a_resend_on_any_instance_or_after_a_restart_is_acked_with_its_seq_and_delivered_once() {
    let (redis, postgres) = (RedisServer::start().await, PostgresServer::start().await);
    let url = postgres.database("dedup").await;
    let a = instance(&redis, &url, "a").await;
    let b = instance(&redis, &url, "b").await;
    let c = instance(&redis, &url, "c").await;
    let mut bob = a.member("bob", "dup").await;
    let mut carol = c.member("carol", "dup").await;

    let mut alice = a.member("alice", "dup").await;
    let first = alice.request(chat("x-1", "once")).await;
    assert_eq!((first["type"].as_str(), first["seq"].as_u64()), (Some("ack"), Some(1)));
    assert_eq!(alice.request(chat("x-1", "once")).await["seq"], 1, "resent on a");
    drop(alice);
    for (name, instance) in [("b", &b), ("c", &c)] {
        let mut alice = instance.member("alice", "dup").await;
        let again = alice.request(chat("x-1", "once")).await;
        assert_eq!(
            (again["type"].as_str(), again["seq"].as_u64()),
            (Some("ack"), Some(1)),
            "resent on {name}: {again}"
        );
    }
    // An instance restarted between the send and the resend.
    let mut alice = b.member("alice", "dup").await;
    assert_eq!(alice.request(chat("x-2", "second")).await["seq"], 2);
    drop((alice, b));
    let b = instance(&redis, &url, "b").await;
    let mut alice = b.member("alice", "dup").await;
    assert_eq!(alice.request(chat("x-2", "second")).await["seq"], 2, "resent after b restarted");
    // A batch holding a new chat and resends of old ones numbers only the new one.
    for frame in [chat("x-1", "once"), chat("x-3", "third"), chat("x-2", "second")] {
        alice.send(frame).await;
    }
    assert_eq!(alice.request(chat("x-4", "end")).await["seq"], 4);

    let expected: Vec<(String, u64)> =
        [("x-1", 1), ("x-2", 2), ("x-3", 3), ("x-4", 4)].map(|(i, s)| (i.to_owned(), s)).into();
    assert_eq!(chats_until(&mut bob, "end").await, expected, "bob, on a: each once");
    assert_eq!(chats_until(&mut carol, "end").await, expected, "carol, on c: each once");
    let (_, page) = a.get("/api/v1/chat/rooms/dup/messages?user=bob").await;
    let stored: Vec<(&str, u64)> = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["id"].as_str().unwrap(), m["seq"].as_u64().unwrap()))
        .collect();
    assert_eq!(stored, [("x-1", 1), ("x-2", 2), ("x-3", 3), ("x-4", 4)], "stored once each");
}

fn to_everyone(id: &str) -> Value {
    json!({"type": "chat", "id": id, "data": {"content": id}})
}

/// The contents of the chats to everyone `client` gets until the one with content `last`.
async fn everyone_until(client: &mut Client, last: &str) -> Vec<String> {
    let mut seen = Vec::new();
    loop {
        let frame = client.recv_where(|f| f["type"] == "chat" && f.get("room").is_none()).await;
        seen.push(frame["data"]["content"].as_str().unwrap().to_owned());
        if frame["data"]["content"] == last {
            return seen;
        }
    }
}

#[tokio::test]
async fn a_chat_to_everyone_resent_on_another_instance_or_after_a_restart_is_delivered_once() {
    // No seq and no stream: what knows a resend that no instance's memory holds is the store,
    // which finds the message stored already; only its first commit goes out.
    let (redis, postgres) = (RedisServer::start().await, PostgresServer::start().await);
    let url = postgres.database("everyone").await;
    let a = instance(&redis, &url, "a").await;
    let b = instance(&redis, &url, "b").await;
    let c = instance(&redis, &url, "c").await;
    let mut bob = a.connect("/ws?user=bob").await;
    let mut carol = c.connect("/ws?user=carol").await;

    let mut alice = a.connect("/ws?user=alice").await;
    assert_eq!(alice.request(to_everyone("g-1")).await["type"], "ack");
    drop(alice);
    let mut alice = b.connect("/ws?user=alice").await;
    assert_eq!(alice.request(to_everyone("g-1")).await["type"], "ack", "resent on b");
    assert_eq!(alice.request(to_everyone("g-2")).await["type"], "ack");
    drop((alice, b));
    let b = instance(&redis, &url, "b").await;
    let mut alice = b.connect("/ws?user=alice").await;
    let again = alice.request(to_everyone("g-2")).await;
    assert_eq!(again["type"], "ack", "resent after b restarted: {again}");
    assert_eq!(alice.request(to_everyone("g-3")).await["type"], "ack");

    let expected = ["g-1", "g-2", "g-3"];
    assert_eq!(everyone_until(&mut bob, "g-3").await, expected, "bob, on a: each once");
    assert_eq!(everyone_until(&mut carol, "g-3").await, expected, "carol, on c: each once");
}
