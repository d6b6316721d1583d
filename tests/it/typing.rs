//! Typing: never stored or numbered, told to the room's other members as typers change, renewals
//! and floods told once, coalesced per room, ended by a stop, a timeout, a leave or a disconnect,
//! off in big rooms, and across a cluster.

use std::time::Duration;

use serde_json::{json, Value};

use crate::cluster::{instance_with, wait_room};
use crate::common::{start_server_with, Client};
use crate::redis_server::RedisServer;

fn typing(room: &str, on: bool) -> Value {
    json!({"type": "typing", "room": room, "data": {"typing": on}})
}

fn chat(room: &str, content: &str) -> Value {
    json!({"type": "chat", "room": room, "data": {"content": content}})
}

/// The typing changes `client` is told until the chat `until` arrives, as `(user, typing)`.
async fn typing_until(client: &mut Client, until: &str) -> Vec<(String, bool)> {
    let mut told = Vec::new();
    loop {
        let frame = client.recv_where(|f| f["type"] == "typing" || f["type"] == "chat").await;
        if frame["type"] == "chat" {
            assert_eq!(frame["data"]["content"], until, "{frame}");
            return told;
        }
        assert!(frame.get("seq").is_none(), "typing takes no seq: {frame}");
        let data = &frame["data"];
        if data["event"] == "batch" {
            let users = |list: &Value| -> Vec<String> {
                list.as_array().unwrap().iter().map(|u| u.as_str().unwrap().to_owned()).collect()
            };
            told.extend(users(&data["started"]).into_iter().map(|u| (u, true)));
            told.extend(users(&data["stopped"]).into_iter().map(|u| (u, false)));
        } else {
            told.push((
                data["user"].as_str().unwrap().to_owned(),
                data["typing"].as_bool().unwrap(),
            ));
        }
    }
}

/// No coalescing window: every change is told at once, before a chat sent after it.
fn at_once(config: &mut wsbroker::Config) {
    config.rate_limit = 0.0;
    config.typing_coalesce = Duration::ZERO;
}

fn pairs(told: &[(&str, bool)]) -> Vec<(String, bool)> {
    told.iter().map(|(user, on)| ((*user).to_owned(), *on)).collect()
}

#[tokio::test]
async fn a_start_and_a_stop_reach_the_room_once_each_and_floods_are_told_once() {
    let server = start_server_with(at_once).await;
    let mut alice = server.member("alice", "r").await;
    let mut bob = server.member("bob", "r").await;
    let ack = alice.request(json!({"type": "typing", "room": "r", "id": "t1"})).await;
    assert_eq!(ack["type"], "ack", "no data starts: {ack}");
    for _ in 0..50 {
        alice.send(typing("r", true)).await;
    }
    alice.send(chat("r", "mark")).await;
    assert_eq!(
        typing_until(&mut bob, "mark").await,
        pairs(&[("alice", true)]),
        "a flood is one start"
    );
    alice.send(typing("r", false)).await;
    alice.send(typing("r", false)).await;
    alice.send(chat("r", "done")).await;
    assert_eq!(typing_until(&mut bob, "done").await, pairs(&[("alice", false)]), "a stop, once");

    let refusals = [
        (
            alice.request(json!({"type": "typing", "room": "elsewhere", "id": "x"})).await,
            "not_member",
        ),
        (
            alice
                .request(
                    json!({"type": "typing", "room": "r", "id": "y", "data": {"typing": "yes"}}),
                )
                .await,
            "bad_request",
        ),
        (alice.request(json!({"type": "typing", "id": "z"})).await, "bad_request"),
    ];
    for (answer, code) in refusals {
        assert_eq!(answer["data"]["code"], code, "{answer}");
    }
}

#[tokio::test]
async fn a_typer_is_stopped_by_its_timeout_a_leave_and_a_disconnect() {
    let server = start_server_with(|c| {
        at_once(c);
        c.typing_timeout = Duration::from_millis(300);
    })
    .await;
    let mut bob = server.member("bob", "r").await;
    let mut alice = server.member("alice", "r").await;
    alice.send(typing("r", true)).await;
    // Nothing renews it: the timeout stops it, then alice writes.
    let stopped = bob.recv_where(|f| f["type"] == "typing" && f["data"]["typing"] == false).await;
    assert_eq!(stopped["data"]["user"], "alice");
    let mut carol = server.member("carol", "r").await;
    carol.send(typing("r", true)).await;
    carol.request(json!({"type": "leave", "room": "r", "id": "l"})).await;
    let mut dave = server.member("dave", "r").await;
    dave.request(
        typing("r", true)
            .as_object()
            .cloned()
            .map(|mut t| {
                t.insert("id".into(), json!("t"));
                Value::Object(t)
            })
            .unwrap(),
    )
    .await;
    drop(dave);
    // Carol's leave and dave's disconnect each stop them (both, whatever the order).
    let mut stopped = Vec::new();
    while stopped.len() < 2 {
        let frame = bob.recv_where(|f| f["type"] == "typing" && f["data"]["typing"] == false).await;
        stopped.push(frame["data"]["user"].as_str().unwrap().to_owned());
    }
    stopped.sort();
    assert_eq!(stopped, ["carol", "dave"]);
}

#[tokio::test]
async fn typers_within_a_window_come_in_one_batch_and_big_rooms_hear_none() {
    let server = start_server_with(|c| {
        c.rate_limit = 0.0;
        c.typing_coalesce = Duration::from_secs(1);
        c.presence_max_members = 3;
    })
    .await;
    let mut watcher = server.member("watcher", "r").await;
    let mut typers = Vec::new();
    for user in ["a", "b"] {
        typers.push(server.member(user, "r").await);
    }
    for typer in &mut typers {
        typer.request(json!({"type": "typing", "room": "r", "id": "t"})).await;
    }
    let first = watcher.recv_where(|f| f["type"] == "typing").await;
    assert_eq!(first["data"], json!({"user": "a", "typing": true}), "the first at once");
    let batch = watcher.recv_where(|f| f["type"] == "typing").await;
    assert_eq!(batch["data"], json!({"event": "batch", "started": ["b"], "stopped": []}));
    let _crowd = server.member("c", "r").await;
    let _more = server.member("d", "r").await;
    typers[1]
        .request(json!({"type": "typing", "room": "r", "id": "t2", "data": {"typing": false}}))
        .await;
    typers[0].send(chat("r", "barrier")).await;
    let told = typing_until(&mut watcher, "barrier").await;
    assert!(told.is_empty(), "5 members > 3: no typing events: {told:?}");
}

#[tokio::test]
async fn typing_crosses_instances() {
    let redis = RedisServer::start().await;
    let (a, b) =
        (instance_with(&redis, "a", at_once).await, instance_with(&redis, "b", at_once).await);
    let mut alice = a.member("alice", "r").await;
    let mut bob = b.member("bob", "r").await;
    wait_room(&a, "r", json!(["alice", "bob"])).await;
    alice.send(typing("r", true)).await;
    alice.send(typing("r", false)).await;
    alice.send(chat("r", "sent")).await;
    let told = typing_until(&mut bob, "sent").await;
    assert_eq!(told, pairs(&[("alice", true), ("alice", false)]), "in order, on b");
}

#[tokio::test]
async fn a_typers_chat_never_overtakes_its_typing_whatever_shard_the_room_is_homed_on() {
    // Four shards and eight typers: most of them are on another shard than the room's home, so
    // their typing and their chat each cross to it, and the chat must not pass the typing.
    let server = start_server_with(|c| {
        at_once(c);
        c.shards = Some(4);
    })
    .await;
    let mut watcher = server.member("watcher", "r").await;
    let mut typers = Vec::new();
    for k in 0..8 {
        typers.push(server.member(&format!("u{k}"), "r").await);
    }
    for (k, typer) in typers.iter_mut().enumerate() {
        typer.send(typing("r", true)).await;
        typer.send(chat("r", &format!("m{k}"))).await;
    }
    let (mut typing_seen, mut chats) = (Vec::new(), 0);
    while chats < typers.len() {
        let frame = watcher.recv_where(|f| f["type"] == "typing" || f["type"] == "chat").await;
        if frame["type"] == "typing" {
            typing_seen.push(frame["data"]["user"].as_str().unwrap().to_owned());
            continue;
        }
        chats += 1;
        let sender = frame["from"].as_str().unwrap();
        assert!(typing_seen.iter().any(|u| u == sender), "{sender}'s chat came before its typing");
    }
}
