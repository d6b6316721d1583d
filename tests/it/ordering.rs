//! A connection's frames take effect in the order it sends them, whatever waits behind them (a
//! join asking the store, a resume, a subscription in cluster mode): join then leave, join then
//! chat, leave then chat, send then history, send then delete. Run with the store off, on SQLite,
//! and in cluster mode (Redis and SQLite).

use serde_json::{json, Value};

use crate::cluster::instance_with;
use crate::common::{chat, start_server_with, Client, TempDir, TestServer};
use crate::postgres_server::PostgresServer;
use crate::redis_server::RedisServer;

/// Where the broker under test keeps its messages.
enum Mode {
    NoStore,
    Sqlite,
    Cluster,
}

/// What a test broker needs alive beside it.
struct Beside {
    _dir: TempDir,
    _redis: Option<RedisServer>,
    _postgres: Option<PostgresServer>,
}

/// A broker in `mode`, with what must outlive it (the database's directory, Redis, PostgreSQL).
async fn broker(mode: Mode) -> (TestServer, Beside) {
    let dir = TempDir::new("ordering");
    let url = dir.sqlite();
    match mode {
        Mode::NoStore => {
            let server = start_server_with(|c| c.rate_limit = 0.0).await;
            (server, Beside { _dir: dir, _redis: None, _postgres: None })
        }
        Mode::Sqlite => {
            let server = start_server_with(move |c| {
                c.database_url = url;
                c.rate_limit = 0.0;
            })
            .await;
            (server, Beside { _dir: dir, _redis: None, _postgres: None })
        }
        Mode::Cluster => {
            let (redis, postgres) = (RedisServer::start().await, PostgresServer::start().await);
            let url = postgres.database("ordering").await.parse().unwrap();
            let server = instance_with(&redis, "a", move |c| {
                c.database_url = url;
                c.rate_limit = 0.0;
            })
            .await;
            (server, Beside { _dir: dir, _redis: Some(redis), _postgres: Some(postgres) })
        }
    }
}

/// Sends every frame at once, then reads the answers to their ids (ack, error, history), in the
/// order they come; other frames are skipped.
async fn burst(client: &mut Client, frames: &[Value]) -> Vec<Value> {
    for frame in frames {
        client.send(frame.clone()).await;
    }
    let ids: Vec<&str> = frames.iter().filter_map(|f| f["id"].as_str()).collect();
    let mut answers = Vec::new();
    while answers.len() < ids.len() {
        let frame = client.recv().await;
        let answer = ["ack", "error", "history"].iter().any(|t| frame["type"] == *t);
        if answer && frame["id"].as_str().is_some_and(|id| ids.contains(&id)) {
            answers.push(frame);
        }
    }
    answers
}

/// `(id, type or error code)` of each answer.
fn outcomes(answers: &[Value]) -> Vec<(String, String)> {
    let outcome = |a: &Value| match a["type"].as_str().unwrap() {
        "error" => a["data"]["code"].as_str().unwrap().to_owned(),
        kind => kind.to_owned(),
    };
    answers.iter().map(|a| (a["id"].as_str().unwrap().to_owned(), outcome(a))).collect()
}

fn pairs(expected: &[(&str, &str)]) -> Vec<(String, String)> {
    expected.iter().map(|(id, kind)| ((*id).to_owned(), (*kind).to_owned())).collect()
}

async fn joins_leaves_and_chats_take_effect_in_order(mode: Mode) {
    let (server, _beside) = broker(mode).await;
    let mut bob = server.member("bob", "x1").await;
    let mut alice = server.connect("/ws?user=alice").await;
    let join = |id: &str| json!({"type": "join", "room": "x1", "id": id});
    let leave = |id: &str| json!({"type": "leave", "room": "x1", "id": id});

    // Join then leave: both acked, in order, and alice is out of the room.
    let answers = burst(&mut alice, &[join("j1"), leave("l1")]).await;
    assert_eq!(outcomes(&answers), pairs(&[("j1", "ack"), ("l1", "ack")]));
    let refused = alice.request(chat("x1", "c0", "after leaving")).await;
    assert_eq!(refused["data"]["code"], "not_member", "{refused}");

    // Join, leave, join, then a chat: in the room again, and the chat is delivered.
    let frames = [join("j2"), leave("l2"), join("j3"), chat("x1", "c1", "in again")];
    let answers = burst(&mut alice, &frames).await;
    let expected = [("j2", "ack"), ("l2", "ack"), ("j3", "ack"), ("c1", "ack")];
    assert_eq!(outcomes(&answers), pairs(&expected));
    let heard = bob.recv_type("chat").await;
    assert_eq!(heard["data"]["content"], "in again", "the chat before it was refused");

    // Leave then chat: the chat is refused, and nobody receives it.
    let answers = burst(&mut alice, &[leave("l3"), chat("x1", "c2", "gone")]).await;
    assert_eq!(outcomes(&answers), pairs(&[("l3", "ack"), ("c2", "not_member")]));
    bob.send(json!({"type": "chat", "room": "x1", "data": {"content": "marker"}})).await;
    assert_eq!(bob.recv_type("chat").await["data"]["content"], "marker", "nothing in between");
}

#[tokio::test]
async fn frames_take_effect_in_order_without_a_store() {
    joins_leaves_and_chats_take_effect_in_order(Mode::NoStore).await;
}

#[tokio::test]
async fn frames_take_effect_in_order_with_a_store() {
    joins_leaves_and_chats_take_effect_in_order(Mode::Sqlite).await;
}

#[tokio::test]
async fn frames_take_effect_in_order_in_cluster_mode() {
    joins_leaves_and_chats_take_effect_in_order(Mode::Cluster).await;
}

/// What a sender asks right after sending, before the ack, sees the send: history holds it, a
/// delete finds it; and a room created by a join exists for every request after the join.
async fn reads_and_deletes_see_what_came_before(mode: Mode) {
    let (server, _beside) = broker(mode).await;
    let mut carol = server.connect("/ws?user=carol").await;
    let join = json!({"type": "join", "room": "dm:bob:carol", "id": "j4"});
    let history = json!({"type": "history", "room": "dm:bob:carol", "id": "h1"});
    let answers = burst(&mut carol, &[join, history]).await;
    assert_eq!(outcomes(&answers), pairs(&[("j4", "ack"), ("h1", "history")]));
    let (status, participants) =
        server.get("/api/v1/chat/rooms/dm:bob:carol/participants?user=carol").await;
    assert_eq!(status, hyper::StatusCode::OK, "the room exists once its join is acked");
    let users = participants.to_string();
    assert!(users.contains("bob") && users.contains("carol"), "{participants}");

    for n in 0..5 {
        let (id, delete_id) = (format!("m{n}"), format!("d{n}"));
        let history = json!({"type": "history", "room": "dm:bob:carol", "id": format!("h{n}x")});
        let delete =
            json!({"type": "delete", "room": "dm:bob:carol", "id": delete_id, "data": {"id": id}});
        let frames = [chat("dm:bob:carol", &id, &format!("hello {n}")), history, delete];
        let answers = burst(&mut carol, &frames).await;
        assert_eq!(answers[0]["type"], "ack", "{answers:?}");
        let page = &answers[1]["data"];
        let last = page["messages"].as_array().and_then(|m| m.last()).cloned();
        assert_eq!(last.map(|m| m["id"].clone()), Some(json!(id)), "history sees the send: {page}");
        assert_eq!(answers[2]["type"], "ack", "the delete finds the message: {answers:?}");
    }
}

#[tokio::test]
async fn reads_and_deletes_see_the_sends_before_them() {
    reads_and_deletes_see_what_came_before(Mode::Sqlite).await;
}

#[tokio::test]
async fn reads_and_deletes_see_the_sends_before_them_in_cluster_mode() {
    reads_and_deletes_see_what_came_before(Mode::Cluster).await;
}
