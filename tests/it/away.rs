//! "Away" told live: a user none of whose connections showed a person there for `--away-after` is
//! told to its rooms as `away`, once, and as `back` on its next sign; in a cluster only when it is
//! away on every instance it is on.

use std::time::Duration;

use serde_json::json;

use crate::cluster::{instance_with, wait_room};
use crate::common::{presence_changes, start_server_with, Client};
use crate::redis_server::RedisServer;

const AWAY_AFTER: Duration = Duration::from_millis(400);

fn changes_of(frames: &[serde_json::Value], user: &str) -> Vec<String> {
    let changes = frames.iter().flat_map(presence_changes);
    changes.filter(|(who, _)| who == user).map(|(_, status)| status).collect()
}

/// Receives presence frames until `user` is told `status`; returns every frame received.
async fn until_told(client: &mut Client, user: &str, status: &str) -> Vec<serde_json::Value> {
    let mut frames = Vec::new();
    loop {
        let frame = client.recv_type("presence").await;
        let told = presence_changes(&frame).contains(&(user.to_owned(), status.to_owned()));
        frames.push(frame);
        if told {
            return frames;
        }
    }
}

#[tokio::test]
async fn an_idle_member_is_told_away_once_and_back_when_it_shows_up() {
    let server = start_server_with(|c| c.away_after = AWAY_AFTER).await;
    let mut alice = server.member("alice", "r").await;
    let mut bob = server.member("bob", "r").await;
    alice.recv_presence_change("bob", "join").await;
    // Alice keeps writing, so only bob goes away.
    let mut ticks = tokio::time::interval(AWAY_AFTER / 4);
    let told = loop {
        tokio::select! {
            _ = ticks.tick() => alice.send(json!({"type": "active"})).await,
            frame = alice.recv_type("presence") => {
                if !presence_changes(&frame).is_empty() { break frame; }
            }
        }
    };
    assert_eq!(told["data"], json!({"user": "bob", "status": "away"}), "{told}");
    let query = bob.request(json!({"type": "presence", "room": "r", "id": "q"})).await;
    assert_eq!(query["data"]["away"], json!(["bob"]), "the answer agrees: {query}");

    bob.send(json!({"type": "chat", "room": "r", "data": {"content": "here"}})).await;
    let frames = until_told(&mut alice, "bob", "back").await;
    assert_eq!(changes_of(&frames, "bob"), ["back"], "away was told once: {frames:?}");
    // Alice stops too; a new connection of hers is a sign of a person.
    until_told(&mut bob, "alice", "away").await;
    let _alice_again = server.member("alice", "elsewhere").await;
    until_told(&mut bob, "alice", "back").await;
}

#[tokio::test]
async fn in_a_cluster_a_user_active_on_one_instance_is_not_away() {
    let redis = RedisServer::start().await;
    let quick = |c: &mut wsbroker::Config| c.away_after = AWAY_AFTER;
    let (a, b) = (instance_with(&redis, "a", quick).await, instance_with(&redis, "b", quick).await);
    let mut alice = a.member("alice", "r").await;
    let mut bob_on_a = a.member("bob", "r").await;
    let mut bob_on_b = b.member("bob", "r").await;
    wait_room(&a, "r", json!(["alice", "bob"])).await;
    // Bob types on b for six periods of --away-after while his connection on a sits idle.
    let mut ticks = tokio::time::interval(AWAY_AFTER / 4);
    let mut seen = Vec::new();
    for _ in 0..24 {
        tokio::select! {
            _ = ticks.tick() => {
                bob_on_b.send(json!({"type": "active"})).await;
                alice.send(json!({"type": "active"})).await;
            }
            frame = alice.recv_type("presence") => seen.push(frame),
        }
    }
    assert!(!changes_of(&seen, "bob").contains(&"away".to_owned()), "bob is active on b: {seen:?}");
    // He stops: away once, for the cluster, then back from a.
    let frames = until_told(&mut alice, "bob", "away").await;
    assert_eq!(changes_of(&frames, "bob"), ["away"], "{frames:?}");
    bob_on_a.send(json!({"type": "active"})).await;
    let frames = until_told(&mut alice, "bob", "back").await;
    assert_eq!(changes_of(&frames, "bob"), ["back"], "{frames:?}");
}
