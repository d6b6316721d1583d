//! Messages for users across instances: each reaches every connection of its users once, and only
//! the instances where they are online receive it from Redis.

use hyper::StatusCode;
use serde_json::{json, Value};

use crate::cluster::{contents_until, contents_until_all, instance};
use crate::common::TestServer;
use crate::redis_server::RedisServer;

/// Waits until `server` sees exactly `users` online, cluster-wide.
async fn wait_online(server: &TestServer, users: Value) {
    server.wait_get("/api/v1/chat/online", |_, answer| answer["users"] == users).await;
}

async fn to_user(server: &TestServer, user: &str, content: &str) {
    let path = format!("/api/v1/chat/users/{user}/messages");
    let (status, _) = server.post(&path, json!({"data": {"content": content}})).await;
    assert_eq!(status, StatusCode::ACCEPTED);
}

async fn to_users(server: &TestServer, users: &[&str], content: &str) {
    let body = json!({"users": users, "data": {"content": content}});
    assert_eq!(server.post("/api/v1/chat/messages", body).await.0, StatusCode::ACCEPTED);
}

#[tokio::test]
async fn direct_messages_reach_every_device_once_and_only_the_instances_of_their_users() {
    let redis = RedisServer::start().await;
    let (a, b, c) =
        (instance(&redis, "a").await, instance(&redis, "b").await, instance(&redis, "c").await);
    let mut alice_a = a.connect("/ws?user=alice").await;
    let mut alice_b = b.connect("/ws?user=alice").await;
    let mut bob = b.connect("/ws?user=bob").await;
    let mut carol = c.connect("/ws?user=carol").await;
    for server in [&a, &b, &c] {
        wait_online(server, json!(["alice", "bob", "carol"])).await;
    }
    let c_before = c.metric("wsbroker_relay_received_total").await;

    to_user(&c, "alice", "to alice").await;
    to_users(&a, &["alice", "bob", "nobody"], "listed").await;
    to_user(&a, "bob", "to bob").await;
    // Each publisher's messages keep their order, so each one's end marker comes after its others.
    to_users(&a, &["alice", "bob", "carol"], "end a").await;
    to_users(&c, &["alice", "bob", "carol"], "end c").await;

    let both_ends = ["end a", "end c"];
    assert_eq!(
        contents_until_all(&mut alice_a, "notification", &both_ends).await,
        ["listed", "to alice"]
    );
    assert_eq!(
        contents_until_all(&mut alice_b, "notification", &both_ends).await,
        ["listed", "to alice"]
    );
    assert_eq!(
        contents_until_all(&mut bob, "notification", &both_ends).await,
        ["listed", "to bob"]
    );
    assert_eq!(
        contents_until_all(&mut carol, "notification", &both_ends).await,
        Vec::<String>::new()
    );
    // a published "listed" and "to bob" before "end a" through the same relay, so had either reached
    // c, it would be counted by now.
    assert_eq!(
        c.metric("wsbroker_relay_received_total").await,
        c_before + 1,
        "c received a's end marker for carol and nothing for alice or bob"
    );

    // Once b has seen alice's b device go, b no longer receives her messages.
    drop(alice_b);
    let mut round = 0;
    loop {
        let b_before = b.metric("wsbroker_relay_received_total").await;
        let (probe, mark) = (format!("probe {round}"), format!("mark {round}"));
        to_user(&c, "alice", &probe).await;
        to_user(&c, "bob", &mark).await;
        assert_eq!(
            contents_until(&mut alice_a, "notification", &probe).await,
            Vec::<String>::new()
        );
        assert_eq!(contents_until(&mut bob, "notification", &mark).await, Vec::<String>::new());
        if b.metric("wsbroker_relay_received_total").await == b_before + 1 {
            break;
        }
        round += 1;
        assert!(round < 200, "b still receives alice's messages after her device there left");
    }
}
