//! A deploy stops an instance gracefully (SIGTERM): its users stay in cluster presence for the
//! handover window, so one that reconnects to another instance causes no leave/join for the others
//! in its rooms, and one that does not come back is announced as left once.

use hyper::StatusCode;
use serde_json::json;

use crate::cluster::{instance, wait_room};
use crate::common::{presence_changes, spawn_broker};
use crate::redis_server::RedisServer;

#[tokio::test]
async fn a_stopping_instance_hands_its_users_over_without_a_leave_join_flap() {
    let redis = RedisServer::start().await;
    let url = redis.url();
    let args = ["--redis-url", &url, "--instance-id", "stopping", "--presence-heartbeat", "1s"];
    let more = ["--database-url", "none", "--handover", "3s"];
    let (mut stopping, a) = spawn_broker(&[&args[..], &more[..]].concat()).await;
    a.wait_get("/readyz", |status, _| status == StatusCode::OK).await;
    let b = instance(&redis, "b").await;
    let mut watcher = b.member("watcher", "room").await;
    let mut alice_on_a = a.member("alice", "room").await;
    let mut bob_on_a = a.member("bob", "room").await;
    watcher.recv_presence_change("alice", "join").await;
    wait_room(&b, "room", json!(["alice", "bob", "watcher"])).await;

    let pid = stopping.0.id().to_string();
    std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let bob_closed = tokio::spawn(async move { bob_on_a.closed().await });
    let close = alice_on_a.closed().await.expect("a close frame");
    assert_eq!(u16::from(close.code), 1001, "going away");
    assert!(
        bob_closed.await.unwrap().is_some(),
        "bob's connection closed too (he does not come back)"
    );
    // Alice's client reconnects after a one-second backoff, as clients do after a close: well
    // after the stopping instance closed everyone, within its handover window.
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    let mut alice_on_b = b.member("alice", "room").await;
    let exited = tokio::task::spawn_blocking(move || stopping.0.wait().unwrap());
    let status = tokio::time::timeout(std::time::Duration::from_secs(20), exited).await;
    assert!(status.expect("the stopping instance exits").unwrap().success());

    let mut changes = Vec::new();
    while !changes.contains(&("bob".to_owned(), "leave".to_owned())) {
        changes.extend(watcher.next_presence_changes().await);
    }
    alice_on_b
        .send(json!({"type": "chat", "room": "room", "data": {"content": "still here"}}))
        .await;
    loop {
        let frame = watcher.recv_where(|f| f["type"] == "presence" || f["type"] == "chat").await;
        if frame["type"] == "chat" {
            break;
        }
        changes.extend(presence_changes(&frame));
    }
    let flaps: Vec<_> = changes.iter().filter(|(user, _)| user == "alice").collect();
    assert!(flaps.is_empty(), "alice moved without a leave or join: {changes:?}");
    let bob_left = changes.iter().filter(|(user, status)| user == "bob" && status == "leave");
    assert_eq!(bob_left.count(), 1, "bob did not come back: left once: {changes:?}");
    wait_room(&b, "room", json!(["alice", "watcher"])).await;
}
