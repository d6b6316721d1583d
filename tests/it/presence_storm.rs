//! A presence storm with the default flags: hundreds of connections join one room at once, then a
//! hundred leave at once. Nobody is evicted, every member's view (its presence query, then the
//! events) ends equal to the room, and the events come coalesced, not one frame per change. In
//! cluster mode, joins at once reach Redis in batches: one script call each, not one per join.

use std::collections::BTreeSet;

use futures_util::future::join_all;
use serde_json::json;

use crate::cluster::{instance, wait_room};
use crate::common::{presence_changes, start_server, start_server_with, Client};
use crate::redis_server::RedisServer;

const JOINERS: usize = 400;
const LEAVERS: usize = 100;

/// A member's view of who is in the room, and how many presence events built it.
struct View {
    client: Client,
    users: BTreeSet<String>,
    events: usize,
}

impl View {
    /// Reads until the view is `wanted` (the query answer first, then events).
    async fn until(&mut self, wanted: &BTreeSet<String>) {
        while self.users != *wanted {
            let frame = self.client.recv_type("presence").await;
            if let Some(users) = frame["data"]["users"].as_array() {
                self.users.extend(users.iter().filter_map(|u| u.as_str().map(str::to_owned)));
                continue;
            }
            self.events += 1;
            for (user, status) in presence_changes(&frame) {
                if status == "join" {
                    self.users.insert(user);
                } else {
                    self.users.remove(&user);
                }
            }
        }
    }
}

#[tokio::test]
async fn hundreds_joining_one_room_at_once_are_told_coalesced_and_nobody_is_evicted() {
    let server = start_server().await;
    let paths: Vec<String> = (0..JOINERS).map(|n| format!("/ws?user=u{n}&room=storm")).collect();
    let connects = paths.iter().map(|path| server.connect(path));
    let mut views: Vec<View> = join_all(connects)
        .await
        .into_iter()
        .map(|client| View { client, users: BTreeSet::new(), events: 0 })
        .collect();
    for view in &mut views {
        view.client.send(json!({"type": "presence", "room": "storm", "id": "q"})).await;
    }
    let everyone: BTreeSet<String> = (0..JOINERS).map(|n| format!("u{n}")).collect();
    for view in &mut views {
        view.until(&everyone).await;
    }
    let leavers: Vec<View> = views.drain(..LEAVERS).collect();
    join_all(leavers.into_iter().map(|mut view| async move { view.client.ws.close(None).await }))
        .await;
    let stayed: BTreeSet<String> = (LEAVERS..JOINERS).map(|n| format!("u{n}")).collect();
    for view in &mut views {
        view.until(&stayed).await;
    }
    assert_eq!(server.metric("wsbroker_slow_consumer_evictions_total").await, 0, "nobody evicted");
    let most = views.iter().map(|view| view.events).max().unwrap();
    assert!(
        most < (JOINERS + LEAVERS) / 4,
        "{} joins and leaves reached each member in at most {most} presence frames",
        JOINERS + LEAVERS
    );
}

#[tokio::test]
async fn a_room_above_the_member_limit_sends_no_events_and_answers_presence_in_pages() {
    // Every change told at once, so a join that were told would come before the marker below.
    // Nobody reads while the 1,000 join (each of the first gets up to 999 join frames, ~110 KB), so
    // each connection may queue more than the default 256 frames: this test is about the member
    // limit, and an evicted reader (tests/it/eviction.rs) would take the room below it.
    let server = start_server_with(|c| {
        c.presence_max_members = 1000;
        c.presence_coalesce = std::time::Duration::ZERO;
        c.send_buffer = 2048;
    })
    .await;
    let mut watcher = server.member("a-watcher", "big").await;
    let paths: Vec<String> = (0..1_000).map(|n| format!("/ws?user=u{n:04}&room=big")).collect();
    let mut crowd = Vec::new();
    for chunk in paths.chunks(250) {
        crowd.extend(join_all(chunk.iter().map(|path| server.connect(path))).await);
    }
    let late = server.member("zz-late", "big").await;
    let mut speaker = crowd.pop().unwrap();
    speaker.send(json!({"type": "chat", "room": "big", "data": {"content": "marker"}})).await;
    loop {
        let frame = watcher.recv_where(|f| f["type"] == "presence" || f["type"] == "chat").await;
        if frame["type"] == "chat" {
            break;
        }
        let late_told = presence_changes(&frame).iter().any(|(user, _)| user == "zz-late");
        assert!(!late_told, "the 1,002nd member's join is not told: {frame}");
    }
    let first = watcher.request(json!({"type": "presence", "room": "big", "id": "p1"})).await;
    let users = first["data"]["users"].as_array().unwrap();
    assert_eq!(users.len(), 1_000, "a page holds 1,000 users");
    assert_eq!(
        (users[0].as_str(), first["data"]["next_after"].as_str()),
        (Some("a-watcher"), Some("u0998"))
    );
    let next = json!({"type": "presence", "room": "big", "id": "p2", "data": {"after": "u0998"}});
    let second = watcher.request(next).await;
    assert_eq!(second["data"]["users"], json!(["u0999", "zz-late"]));
    assert!(second["data"].get("next_after").is_none(), "the last page: {second}");
    drop((late, crowd));
}

/// Calls of scripts (EVALSHA) Redis has run since its statistics were last reset.
async fn script_calls(redis: &mut redis::aio::MultiplexedConnection) -> u64 {
    let info: String = redis::cmd("INFO").arg("commandstats").query_async(redis).await.unwrap();
    let line = info.lines().find(|line| line.starts_with("cmdstat_evalsha:"));
    let calls = line.and_then(|line| line.split(['=', ',']).nth(1)?.parse().ok());
    calls.unwrap_or(0)
}

#[tokio::test]
async fn cluster_joins_at_once_are_written_to_redis_in_batched_script_calls() {
    const JOINS: usize = 300;
    let redis_server = RedisServer::start().await;
    let server = instance(&redis_server, "a").await;
    let client = redis::Client::open(redis_server.url()).unwrap();
    let mut redis = client.get_multiplexed_async_connection().await.unwrap();
    let paths: Vec<String> = (0..JOINS).map(|n| format!("/ws?user=u{n:03}")).collect();
    let connects = paths.iter().map(|path| server.connect(path));
    let mut clients = join_all(connects).await;
    let _: () = redis::cmd("CONFIG").arg("RESETSTAT").query_async(&mut redis).await.unwrap();
    for client in &mut clients {
        client.send(json!({"type": "join", "room": "crowd", "id": "j"})).await;
    }
    let everyone: Vec<String> = {
        let mut users: Vec<String> = (0..JOINS).map(|n| format!("u{n:03}")).collect();
        users.sort();
        users
    };
    wait_room(&server, "crowd", json!(everyone)).await;
    let calls = script_calls(&mut redis).await;
    assert!(calls < (JOINS / 3) as u64, "{JOINS} joins took {calls} script calls");
}
