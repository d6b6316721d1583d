//! Room streams across a cluster: one seq per room that every instance agrees on, stamped in Redis
//! with the publish; a join's ack that holds for messages published anywhere right after it; and a
//! client that drops from one instance and resumes on another.

use hyper::StatusCode;
use serde_json::{json, Value};

use crate::cluster::{instance_with, wait_room};
use crate::common::{Client, TestServer};
use crate::redis_server::RedisServer;

fn numbered(room: &str, id: &str, content: &str) -> Value {
    json!({"type": "chat", "id": id, "room": room, "data": {"content": content}})
}

fn resume(room: &str, seq: u64, epoch: &str) -> Value {
    json!({"type": "join", "room": room, "id": "resume", "data": {"since": {"seq": seq, "epoch": epoch}}})
}

/// The next `count` chats of `room`: (seq, epoch, content) each, in the order they came.
async fn chats(client: &mut Client, room: &str, count: usize) -> Vec<(u64, String, String)> {
    let mut seen = Vec::with_capacity(count);
    while seen.len() < count {
        let frame = client.recv_where(|f| f["type"] == "chat" && f["room"] == room).await;
        seen.push((
            frame["seq"].as_u64().expect("a room message carries its seq"),
            frame["epoch"].as_str().expect("and its epoch").to_owned(),
            frame["data"]["content"].as_str().unwrap().to_owned(),
        ));
    }
    seen
}

/// Reads until `count` chats of `room` came and every chat this client sent (ids a0.. or b0..,
/// 40 of them) is acked: the chats, and the seqs the acks carried.
async fn acks_and_chats(
    client: &mut Client,
    room: &str,
    count: usize,
) -> (Vec<(u64, String, String)>, Vec<u64>) {
    let (mut seen, mut acked) = (Vec::new(), Vec::new());
    while seen.len() < count || acked.len() < count / 2 {
        let frame = client.recv().await;
        match frame["type"].as_str() {
            Some("ack") => acked.push(frame["seq"].as_u64().expect("the ack carries the seq")),
            Some("chat") if frame["room"] == room => seen.push((
                frame["seq"].as_u64().unwrap(),
                frame["epoch"].as_str().unwrap().to_owned(),
                frame["data"]["content"].as_str().unwrap().to_owned(),
            )),
            _ => {}
        }
    }
    (seen, acked)
}

/// Two instances without rate limits (the tests send bursts).
async fn two_instances(redis: &RedisServer) -> (TestServer, TestServer) {
    let unlimited = |c: &mut wsbroker::Config| c.rate_limit = 0.0;
    (instance_with(redis, "a", unlimited).await, instance_with(redis, "b", unlimited).await)
}

#[tokio::test]
async fn instances_agree_on_one_seq_per_room_and_every_member_gets_it_in_order() {
    let redis = RedisServer::start().await;
    let (a, b) = two_instances(&redis).await;
    let mut alice = a.member("alice", "r").await;
    let mut bob = b.member("bob", "r").await;
    wait_room(&a, "r", json!(["alice", "bob"])).await;
    for n in 0..40 {
        alice.send(numbered("r", &format!("a{n}"), &format!("a{n}"))).await;
        bob.send(numbered("r", &format!("b{n}"), &format!("b{n}"))).await;
    }
    let (at_a, mut acked) = acks_and_chats(&mut alice, "r", 80).await;
    let (at_b, acked_b) = acks_and_chats(&mut bob, "r", 80).await;
    acked.extend(acked_b);
    acked.sort_unstable();
    assert_eq!(acked, (1..=80).collect::<Vec<u64>>(), "80 messages, 80 seqs, no gap, none twice");
    assert_eq!(at_a, at_b, "both instances deliver the same stream");
    let seqs: Vec<u64> = at_a.iter().map(|(seq, _, _)| *seq).collect();
    assert_eq!(seqs, (1..=80).collect::<Vec<u64>>(), "in seq order");
    assert!(at_a.iter().all(|(_, epoch, _)| *epoch == at_a[0].1), "one epoch");
    let from_alice: Vec<&str> =
        at_a.iter().map(|(_, _, c)| c.as_str()).filter(|c| c.starts_with('a')).collect();
    let sent: Vec<String> = (0..40).map(|n| format!("a{n}")).collect();
    assert_eq!(from_alice, sent, "each sender's messages keep their order");

    let (status, answer) = b
        .post("/api/v1/chat/rooms/r/messages", json!({"type": "chat", "data": {"content": "http"}}))
        .await;
    assert_eq!((status.as_u16(), answer["seq"].clone()), (202, json!(81)));
    assert_eq!(chats(&mut alice, "r", 1).await[0].0, 81);
}

/// How the late member comes into the room on b.
#[derive(Clone, Copy)]
enum Joining {
    /// A `join` request: its ack is the promise.
    Request,
    /// `?room=` on the connect URL: the `101` is the promise.
    Url,
}

/// Five rounds: b's relay is kept busy subscribing (a thousand joins just before), a member joins
/// the round's room on b as `joining` says, and a message published on a right after the promise
/// must reach it (a promise made before b listens would come well before it does).
async fn a_message_right_after_the_promise_arrives(joining: Joining) {
    let redis = RedisServer::start().await;
    let (a, b) = two_instances(&redis).await;
    let mut crowd = b.connect("/ws?user=crowd").await;
    for round in 0..5 {
        let room = format!("target-{round}");
        let mut alice = a.member("alice", &room).await;
        for n in 0..1_000 {
            crowd.send(json!({"type": "join", "room": format!("crowd-{round}-{n}")})).await;
        }
        let mut late = match joining {
            Joining::Request => {
                let mut late = b.connect(&format!("/ws?user=late{round}")).await;
                late.join(&room).await;
                late
            }
            Joining::Url => b.connect(&format!("/ws?user=late{round}&room={room}")).await,
        };
        alice.send(numbered(&room, "m", "right after")).await;
        let got = chats(&mut late, &room, 1).await;
        assert_eq!((got[0].0, got[0].2.as_str()), (1, "right after"), "room {room}");
    }
}

#[tokio::test]
async fn a_cluster_join_ack_means_a_message_published_on_another_instance_right_after_arrives() {
    a_message_right_after_the_promise_arrives(Joining::Request).await;
}

#[tokio::test]
async fn a_cluster_url_join_means_a_message_published_on_another_instance_after_the_101_arrives() {
    a_message_right_after_the_promise_arrives(Joining::Url).await;
}

#[tokio::test]
async fn a_client_dropped_on_one_instance_resumes_on_the_other_and_misses_nothing() {
    let redis = RedisServer::start().await;
    let (a, b) = two_instances(&redis).await;
    let mut alice = a.member("alice", "r").await;
    let mut bob = b.member("bob", "r").await;
    wait_room(&a, "r", json!(["alice", "bob"])).await;
    for n in 0..5 {
        alice.send(numbered("r", &format!("x{n}"), &n.to_string())).await;
    }
    let seen = chats(&mut bob, "r", 5).await;
    let (last, epoch) = (seen[4].0, seen[4].1.clone());
    drop(bob);
    for n in 5..15 {
        alice.send(numbered("r", &format!("x{n}"), &n.to_string())).await;
    }
    assert_eq!(chats(&mut alice, "r", 15).await[14].0, 15);
    // Bob comes back on the other instance, and a message is published while he resumes.
    let mut bob = a.connect("/ws?user=bob").await;
    bob.send(resume("r", last, &epoch)).await;
    alice.send(numbered("r", "x15", "15")).await;
    let answer = bob.recv_where(|f| f["id"] == "resume").await;
    assert_eq!(answer["data"], json!({"recovered": true}), "{answer}");
    let contents: Vec<String> = chats(&mut bob, "r", 11).await.into_iter().map(|c| c.2).collect();
    let expected: Vec<String> = (5..16).map(|n| n.to_string()).collect();
    assert_eq!(contents, expected, "every missed message once, in order, then the live one");

    let mut carol = b.connect(&format!("/ws?since=r:{last}:{epoch}&user=carol")).await;
    let joined = carol.recv_type("joined").await;
    assert_eq!(joined["data"], json!({"recovered": true}), "a resume in the connect URL");
    assert_eq!(chats(&mut carol, "r", 11).await.last().unwrap().0, 16);

    let mut dave = b.connect("/ws?user=dave").await;
    let changed = dave.request(resume("r", 3, "another")).await;
    assert_eq!(
        (changed["data"]["reason"].clone(), changed["data"]["seq"].clone()),
        (json!("epoch_changed"), json!(16))
    );
    let ahead = dave.request(resume("r", 99, &epoch)).await;
    assert_eq!(
        ahead["data"],
        json!({"recovered": false, "reason": "behind", "seq": 16, "epoch": epoch}),
        "a place beyond the stream: take the stream's"
    );
}

#[tokio::test]
async fn a_resume_while_redis_is_down_keeps_its_place_then_hears_of_the_new_epoch() {
    let mut redis = RedisServer::start().await;
    let (a, b) = two_instances(&redis).await;
    let mut bob = b.member("bob", "quiet").await;
    bob.send(numbered("quiet", "m1", "before")).await;
    let (seq, epoch, _) = chats(&mut bob, "quiet", 1).await.remove(0);
    redis.stop();
    a.wait_get("/readyz", |status, _| status == StatusCode::SERVICE_UNAVAILABLE).await;
    // No member of the room on a: its home knows nothing of the stream, and cannot ask Redis.
    let mut alice = a.connect("/ws?user=alice").await;
    let answer = alice.request(resume("quiet", seq, &epoch)).await;
    assert_eq!(
        answer["data"],
        json!({"recovered": false, "reason": "interrupted", "seq": seq, "epoch": epoch}),
        "nothing to reload: the stream stands where alice left it, as far as a knows: {answer}"
    );
    redis.restart().await;
    a.wait_get("/readyz", |status, _| status == StatusCode::OK).await;
    b.wait_get("/readyz", |status, _| status == StatusCode::OK).await;
    let (status, _) = a
        .post(
            "/api/v1/chat/rooms/quiet/messages",
            json!({"type": "chat", "data": {"content": "after"}}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let notice = alice.recv_where(|f| f["type"] == "joined" || f["type"] == "chat").await;
    assert_eq!(
        (notice["type"].clone(), notice["data"]["reason"].clone()),
        (json!("joined"), json!("epoch_changed")),
        "Redis came back without the stream: the new one is told before its first message: {notice}"
    );
    let after = alice.recv_type("chat").await;
    assert_eq!(after["data"]["content"], "after");
    assert_eq!(notice["data"]["epoch"], after["epoch"], "the notice names the new stream");
}
