//! Several instances as one, through a real Redis: delivery across instances exactly once, cluster
//! presence, a crashed instance dropping out, and Redis going away and coming back.

use std::time::Duration;

use hyper::StatusCode;
use serde_json::{json, Value};

use crate::common::{spawn_broker, start_server_with, Client, TestServer};
use crate::redis_server::RedisServer;

/// A broker in cluster mode, once its relay has connected.
pub(crate) async fn instance(redis: &RedisServer, id: &str) -> TestServer {
    instance_with(redis, id, |_| {}).await
}

/// A broker in cluster mode, configured further by `configure`, once its relay has connected.
pub(crate) async fn instance_with(
    redis: &RedisServer,
    id: &str,
    configure: impl FnOnce(&mut wsbroker::Config) + Send + 'static,
) -> TestServer {
    let (url, id) = (redis.url(), id.to_owned());
    let server = start_server_with(move |c| {
        c.redis_url = Some(url);
        c.instance_id = Some(id);
        c.presence_heartbeat = Duration::from_secs(1);
        configure(c);
    })
    .await;
    server.wait_get("/readyz", |status, _| status == StatusCode::OK).await;
    server
}

/// Waits until `server` sees exactly `users` in `room`, cluster-wide.
pub(crate) async fn wait_room(server: &TestServer, room: &str, users: Value) {
    let path = format!("/api/v1/chat/rooms/{room}/online");
    server.wait_get(&path, |_, answer| answer["users"] == users).await;
}

fn chat(room: &str, content: &str) -> Value {
    json!({"type": "chat", "room": room, "data": {"content": content}})
}

/// Receives frames of type `kind` until every one of `ends` came; every other content, sorted.
pub(crate) async fn contents_until_all(
    client: &mut Client,
    kind: &str,
    ends: &[&str],
) -> Vec<String> {
    let (mut seen, mut ended) = (Vec::new(), 0);
    while ended < ends.len() {
        let frame = client.recv_type(kind).await;
        match frame["data"]["content"].as_str().unwrap() {
            end if ends.contains(&end) => ended += 1,
            content => seen.push(content.to_owned()),
        }
    }
    seen.sort();
    seen
}

/// Receives frames of type `kind` until `last`; every content before it, in order.
pub(crate) async fn contents_until(client: &mut Client, kind: &str, last: &str) -> Vec<String> {
    let mut seen = Vec::new();
    loop {
        let frame = client.recv_type(kind).await;
        let content = frame["data"]["content"].as_str().unwrap().to_owned();
        if content == last {
            return seen;
        }
        seen.push(content);
    }
}

#[tokio::test]
async fn room_global_and_direct_messages_cross_instances_exactly_once() {
    let redis = RedisServer::start().await;
    let (a, b) = (instance(&redis, "a").await, instance(&redis, "b").await);
    let mut alice = a.member("alice", "lobby").await;
    let mut bob = b.member("bob", "lobby").await;
    wait_room(&a, "lobby", json!(["alice", "bob"])).await;
    wait_room(&b, "lobby", json!(["alice", "bob"])).await;

    bob.send(chat("lobby", "from b")).await;
    alice.send(chat("lobby", "from a")).await;
    bob.send(chat("lobby", "end-b")).await;
    alice.send(chat("lobby", "end-a")).await;
    // Each publisher's messages keep their order, so both ends come after everything else.
    assert_eq!(
        contents_until_all(&mut alice, "chat", &["end-a", "end-b"]).await,
        ["from a", "from b"],
        "alice: each message once"
    );
    assert_eq!(
        contents_until_all(&mut bob, "chat", &["end-a", "end-b"]).await,
        ["from a", "from b"],
        "bob: each message once"
    );

    bob.send(json!({"type": "chat", "room": "", "data": {"content": "to everyone"}})).await;
    assert_eq!(alice.recv_type("chat").await["data"]["content"], "to everyone");
    let (status, _) =
        b.post("/api/v1/chat/users/alice/messages", json!({"data": {"content": "direct"}})).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(alice.recv_type("notification").await["data"]["content"], "direct");
    let users = json!({"users": ["alice", "nobody"], "data": {"content": "listed"}});
    assert_eq!(b.post("/api/v1/chat/messages", users).await.0, StatusCode::ACCEPTED);
    assert_eq!(alice.recv_type("notification").await["data"]["content"], "listed");
}

#[tokio::test]
async fn an_instance_receives_no_traffic_for_rooms_it_has_no_members_in() {
    let redis = RedisServer::start().await;
    let (a, b) = (instance(&redis, "a").await, instance(&redis, "b").await);
    let mut only_a = a.member("dave", "only-a").await;
    let mut bob = b.member("bob", "shared").await;
    let mut alice = a.member("alice", "shared").await;
    wait_room(&a, "shared", json!(["alice", "bob"])).await;
    // b listens to "shared" since bob's ack, so alice's join event reaches it: counted before.
    bob.recv_presence_change("alice", "join").await;
    let received_before = b.metric("wsbroker_relay_received_total").await;
    only_a.send(chat("only-a", "private")).await;
    assert_eq!(only_a.recv_type("chat").await["data"]["content"], "private");
    alice.send(chat("shared", "after")).await;
    // Published after "private" through the same relay, so once bob has it, a leak would be counted.
    assert_eq!(bob.recv_type("chat").await["data"]["content"], "after");
    let received_after = b.metric("wsbroker_relay_received_total").await;
    assert_eq!(
        received_after,
        received_before + 1,
        "b received the shared message and nothing else"
    );
    assert_eq!(a.metric("wsbroker_relay_dropped_total").await, 0);
}

#[tokio::test]
async fn presence_counts_every_instance_and_join_leave_fire_once_per_user() {
    let redis = RedisServer::start().await;
    let (a, b) = (instance(&redis, "a").await, instance(&redis, "b").await);
    let mut watcher = a.member("watcher", "room").await;
    let alice_on_a = a.member("alice", "room").await;
    let alice_on_b = b.member("alice", "room").await;
    let _carol = b.member("carol", "room").await;
    wait_room(&a, "room", json!(["alice", "carol", "watcher"])).await;
    let online = a
        .wait_get("/api/v1/chat/online", |_, answer| {
            answer["users"] == json!(["alice", "carol", "watcher"])
        })
        .await;
    assert_eq!(online["partial"], false);
    assert_eq!(
        a.get("/api/v1/chat/users/carol/online").await.1["online"],
        true,
        "carol is on b only"
    );

    drop(alice_on_a);
    wait_room(&b, "room", json!(["alice", "carol", "watcher"])).await;
    drop(alice_on_b);
    wait_room(&a, "room", json!(["carol", "watcher"])).await;
    let (mut events, alice_left) = (Vec::new(), ("alice".to_owned(), "leave".to_owned()));
    // Until alice's leave is told: a batch may hold changes after it (an `away`, once a member
    // has been idle for `--away-after` on a busy machine), so it need not be the last.
    while !events.contains(&alice_left) {
        events.extend(watcher.next_presence_changes().await);
    }
    let alice_events: Vec<&str> =
        events.iter().filter(|(user, _)| user == "alice").map(|(_, s)| s.as_str()).collect();
    assert_eq!(alice_events, ["join", "leave"], "once each: {events:?}");
    assert!(events.contains(&("carol".to_owned(), "join".to_owned())), "{events:?}");
}

#[tokio::test]
async fn a_killed_instance_drops_out_of_presence_and_its_users_leave() {
    let redis = RedisServer::start().await;
    let a = instance(&redis, "a").await;
    let url = redis.url();
    let args =
        ["--redis-url", url.as_str(), "--instance-id", "doomed", "--presence-heartbeat", "1s"];
    let args = [args.as_slice(), &["--database-url", "none"]].concat();
    let (mut doomed, doomed_server) = spawn_broker(&args).await;
    let mut watcher = a.member("watcher", "room").await;
    let _victim = doomed_server.member("victim", "room").await;
    wait_room(&a, "room", json!(["victim", "watcher"])).await;
    watcher.recv_presence_change("victim", "join").await;

    doomed.0.kill().unwrap();
    doomed.0.wait().unwrap();
    let killed_at = std::time::Instant::now();
    wait_room(&a, "room", json!(["watcher"])).await;
    // Two missed heartbeats (2 s), then the next reaping round of a live instance (1 s), with half a
    // second of slack for a busy machine.
    assert!(
        killed_at.elapsed() < Duration::from_millis(3_500),
        "gone within 2 heartbeats and a reaping round: {:?}",
        killed_at.elapsed()
    );
    watcher.recv_presence_change("victim", "leave").await;
    assert_eq!(a.get("/api/v1/chat/users/victim/online").await.1["online"], false);
}

#[tokio::test]
async fn without_redis_rooms_refuse_messages_others_go_on_locally_and_the_cluster_heals() {
    let mut redis = RedisServer::start().await;
    let (a, b) = (instance(&redis, "a").await, instance(&redis, "b").await);
    let mut alice = a.member("alice", "lobby").await;
    let mut anna = a.member("anna", "lobby").await;
    let mut bob = b.member("bob", "lobby").await;
    wait_room(&b, "lobby", json!(["alice", "anna", "bob"])).await;
    anna.send(chat("lobby", "before")).await;
    let before = alice.recv_type("chat").await;
    assert_eq!(
        (before["data"]["content"].clone(), before["seq"].clone()),
        (json!("before"), json!(1))
    );

    assert_eq!(bob.recv_type("chat").await["data"]["content"], "before");

    redis.stop();
    let stopped_at = std::time::Instant::now();
    a.wait_get("/readyz", |status, _| status == StatusCode::SERVICE_UNAVAILABLE).await;
    assert!(
        stopped_at.elapsed() < Duration::from_secs(5),
        "/readyz failed after {:?}",
        stopped_at.elapsed()
    );
    let refused = anna
        .request(
            json!({"type": "chat", "id": "m1", "room": "lobby", "data": {"content": "unnumbered"}}),
        )
        .await;
    assert_eq!(refused["data"]["code"], "unavailable", "a room message needs its seq: {refused}");
    assert_eq!(a.metric(r#"wsbroker_unavailable_total{cause="unnumbered"}"#).await, 1);
    anna.send(json!({"type": "chat", "room": "", "data": {"content": "local only"}})).await;
    assert_eq!(alice.recv_type("chat").await["data"]["content"], "local only");
    let partial = a.get("/api/v1/chat/rooms/lobby/online").await.1;
    assert_eq!(
        (partial["users"].clone(), partial["partial"].clone()),
        (json!(["alice", "anna"]), json!(true))
    );
    assert!(
        a.metric("wsbroker_relay_dropped_total").await >= 1,
        "the message for b was dropped and counted"
    );
    assert_eq!(a.metric("wsbroker_redis_up").await, 0);

    redis.restart().await;
    a.wait_get("/readyz", |status, _| status == StatusCode::OK).await;
    wait_room(&a, "lobby", json!(["alice", "anna", "bob"])).await;
    wait_room(&b, "lobby", json!(["alice", "anna", "bob"])).await;
    alice.send(chat("lobby", "healed")).await;
    let notice = bob.recv_where(|f| f["type"] == "joined" || f["type"] == "chat").await;
    assert_eq!(
        (notice["type"].clone(), notice["data"]["reason"].clone(), notice["data"]["seq"].clone()),
        (json!("joined"), json!("epoch_changed"), json!(1)),
        "Redis lost the stream: the members are told before its first new message: {notice}"
    );
    let healed = bob.recv_type("chat").await;
    assert_eq!(
        (healed["data"]["content"].clone(), healed["seq"].clone()),
        (json!("healed"), json!(1))
    );
    assert_ne!(healed["epoch"], before["epoch"], "a new stream");
    bob.send(chat("lobby", "back")).await;
    assert_eq!(
        contents_until(&mut alice, "chat", "back").await,
        ["healed"],
        "the refused one never came"
    );
    // a wrote its online users again (asked of its shards), so a message for one of them is routed
    // to a again.
    let online = b.get("/api/v1/chat/online").await.1;
    assert_eq!(online["users"], json!(["alice", "anna", "bob"]), "{online}");
    let (status, _) =
        b.post("/api/v1/chat/users/anna/messages", json!({"data": {"content": "direct"}})).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(anna.recv_type("notification").await["data"]["content"], "direct");
}
