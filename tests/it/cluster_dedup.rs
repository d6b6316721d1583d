//! Exactly once across instances: a chat resent with the same id on another instance, or after its
//! instance restarted, is acked with the original seq and delivered nowhere again. The decision is
//! the stamp script's, atomic with the numbering in Redis.

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
