//! Persistence through real sockets, on SQLite files of the tests' own: acks after commit, history,
//! restarts, idempotent send, deletes, retention, last seen, and bad input.

use std::time::Duration;

use hyper::StatusCode;
use serde_json::{json, Value};

use crate::common::{chat, start_server_with, stored_server, Client, TempDir};

/// The contents of a history page, oldest first.
fn contents(page: &Value) -> Vec<String> {
    let messages = page["messages"].as_array().unwrap_or_else(|| panic!("no messages: {page}"));
    messages.iter().map(|m| m["data"]["content"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn a_chat_is_acked_once_stored_and_history_survives_a_restart_without_the_deleted() {
    let dir = TempDir::new("restart");
    let mut server = stored_server(&dir).await;
    let mut alice = server.member("alice", "lobby").await;
    let mut bob = server.member("bob", "lobby").await;
    let ack = alice.request(chat("lobby", "c-1", "kept")).await;
    assert_eq!((ack["type"].as_str(), ack["id"].as_str()), (Some("ack"), Some("c-1")));
    // Acked means committed: a reader sees it at once.
    let (status, page) = server.get("/api/v1/chat/rooms/lobby/messages").await;
    assert_eq!((status, contents(&page)), (StatusCode::OK, vec!["kept".to_owned()]));
    let live = bob.recv_type("chat").await;
    assert_eq!(page["messages"][0], live, "history holds the envelope exactly as it went out live");
    assert_eq!(alice.request(chat("lobby", "c-2", "deleted")).await["type"], "ack");
    let deleted = alice
        .request(json!({"type": "delete", "room": "lobby", "id": "d", "data": {"id": "c-2"}}))
        .await;
    assert_eq!(deleted["type"], "ack", "{deleted}");
    let told = bob.recv_type("message_deleted").await;
    assert_eq!((told["room"].as_str(), told["data"]["id"].as_str()), (Some("lobby"), Some("c-2")));
    drop((alice, bob));
    assert!(server.shutdown().await);

    let server = stored_server(&dir).await;
    let (_, page) = server.get("/api/v1/chat/rooms/lobby/messages").await;
    assert_eq!(
        contents(&page),
        ["kept"],
        "still there after a restart, and the deleted one hidden"
    );
}

#[tokio::test]
async fn history_pages_are_the_same_over_rest_and_websocket() {
    let dir = TempDir::new("paging");
    let server = stored_server(&dir).await;
    let mut alice = server.member("alice", "paged").await;
    for n in 0..120 {
        assert_eq!(
            alice.request(chat("paged", &format!("m{n}"), &n.to_string())).await["type"],
            "ack"
        );
    }
    let (_, first) = server.get("/api/v1/chat/rooms/paged/messages").await;
    let expected: Vec<String> = (70..120).map(|n| n.to_string()).collect();
    assert_eq!(contents(&first), expected, "the newest 50 by default, oldest first");
    let cursor = first["next_before"].as_str().expect("a cursor to older messages").to_owned();
    let (_, second) =
        server.get(&format!("/api/v1/chat/rooms/paged/messages?limit=100&before={cursor}")).await;
    assert_eq!(contents(&second), (0..70).map(|n| n.to_string()).collect::<Vec<_>>());
    assert_eq!(second["next_before"], Value::Null, "no older page");

    let ws = alice
        .request(json!({"type": "history", "room": "paged", "id": "h1", "data": {"limit": 50}}))
        .await;
    assert_eq!((ws["type"].as_str(), ws["room"].as_str()), (Some("history"), Some("paged")));
    assert_eq!(ws["data"]["messages"], first["messages"]);
    assert_eq!(ws["data"]["next_before"], first["next_before"]);
}

#[tokio::test]
async fn the_chats_to_everyone_have_a_history_that_every_user_reads_and_nobody_changes() {
    let dir = TempDir::new("global");
    let server = stored_server(&dir).await;
    let mut alice = server.connect("/ws?user=alice").await;
    let mut bob = server.connect("/ws?user=bob").await;
    for (id, content) in [("g1", "one"), ("g2", "two"), ("g3", "three")] {
        let global = json!({"type": "chat", "id": id, "data": {"content": content}});
        assert_eq!(alice.request(global).await["type"], "ack");
    }
    let live = bob.recv_type("chat").await;

    // Carol was not connected when they went out: she reads them, over REST and WebSocket alike.
    let (status, newest) = server.get("/api/v1/chat/rooms/_global/messages?limit=2").await;
    assert_eq!((status, contents(&newest)), (StatusCode::OK, vec!["two".into(), "three".into()]));
    let cursor = newest["next_before"].as_str().expect("a cursor to older messages").to_owned();
    let older = format!("/api/v1/chat/rooms/_global/messages?before={cursor}");
    let (_, oldest) = server.get(&older).await;
    assert_eq!((contents(&oldest), &oldest["next_before"]), (vec!["one".into()], &Value::Null));
    assert_eq!(oldest["messages"][0], live, "history holds the envelope as it went out live");
    let mut carol = server.connect("/ws?user=carol").await;
    let ws = carol
        .request(json!({"type": "history", "room": "_global", "id": "h", "data": {"limit": 2}}))
        .await;
    assert_eq!((ws["type"].as_str(), ws["room"].as_str()), (Some("history"), Some("_global")));
    assert_eq!(ws["data"]["messages"], newest["messages"]);

    // They have no seq to page after, and `_global` is no room to write to or join.
    let (status, _) = server.get("/api/v1/chat/rooms/_global/messages?after=0").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let after = json!({"type": "history", "room": "_global", "id": "a", "data": {"after": 0}});
    assert_eq!(carol.request(after).await["data"]["code"], "bad_request");
    let join = carol.request(json!({"type": "join", "room": "_global", "id": "j"})).await;
    assert_eq!(join["data"]["code"], "bad_request", "{join}");
    let (status, _) = server.delete("/api/v1/chat/rooms/_global/messages/g1?from=alice").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (_, still) = server.get("/api/v1/chat/rooms/_global/messages").await;
    assert_eq!(contents(&still), ["one", "two", "three"]);
}

#[tokio::test]
async fn a_retry_after_a_reconnect_is_acked_again_and_neither_delivered_nor_stored_twice() {
    let dir = TempDir::new("dedup");
    let server = stored_server(&dir).await;
    let mut bob = server.member("bob", "r").await;
    let mut alice = server.member("alice", "r").await;
    assert_eq!(alice.request(chat("r", "once", "hello")).await["type"], "ack");
    drop(alice);
    let mut alice = server.member("alice", "r").await;
    let again = alice.request(chat("r", "once", "hello")).await;
    assert_eq!((again["type"].as_str(), again["id"].as_str()), (Some("ack"), Some("once")));
    alice.request(chat("r", "marker", "marker")).await;
    let mut seen = Vec::new();
    while seen.last().map(String::as_str) != Some("marker") {
        seen.push(bob.recv_type("chat").await["data"]["content"].as_str().unwrap().to_owned());
    }
    assert_eq!(seen, ["hello", "marker"], "the retry was not delivered again");
    let (_, page) = server.get("/api/v1/chat/rooms/r/messages").await;
    assert_eq!(contents(&page), ["hello", "marker"], "nor stored again");
}

#[tokio::test]
async fn deleting_is_for_the_author_owners_moderators_and_admins() {
    let dir = TempDir::new("delete");
    let server = stored_server(&dir).await;
    let (status, _) = server
        .post("/api/v1/chat/rooms?user=olga", json!({"name": "club", "type": "public"}))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let mut alice = server.member("alice", "club").await;
    let mut bob = server.member("bob", "club").await;
    assert_eq!(alice.request(chat("club", "a1", "by alice")).await["type"], "ack");
    assert_eq!(bob.request(chat("club", "a1", "by bob too")).await["type"], "ack");
    let (status, body) = server.delete("/api/v1/chat/rooms/club/messages/a1?user=carol").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("conflict")),
        "two senders used a1"
    );
    let (status, _) =
        server.delete("/api/v1/chat/rooms/club/messages/a1?user=carol&from=alice").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "not hers");
    let (status, _) = server.delete("/api/v1/chat/rooms/club/messages/a1?user=bob").await;
    assert_eq!(status, StatusCode::OK, "bob's own a1");
    let told = alice.recv_type("message_deleted").await;
    assert_eq!(told["data"], json!({"id": "a1", "from": "bob"}));
    let (status, _) = server.delete("/api/v1/chat/rooms/club/messages/a1?user=olga").await;
    assert_eq!(status, StatusCode::OK, "the owner may delete alice's");
    let (status, _) = server.delete("/api/v1/chat/rooms/club/messages/a1?user=olga").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "gone already");
    let refused = bob
        .request(json!({"type": "delete", "room": "club", "id": "x", "data": {"id": "nope"}}))
        .await;
    assert_eq!(refused["data"]["code"], "not_found");
    let (_, page) = server.get("/api/v1/chat/rooms/club/messages").await;
    assert!(contents(&page).is_empty());
}

#[tokio::test]
async fn bad_requests_get_clear_errors_and_change_nothing() {
    let dir = TempDir::new("bad");
    let server = stored_server(&dir).await;
    let mut alice = server.member("alice", "r").await;
    assert_eq!(alice.request(chat("r", "m", "x")).await["type"], "ack");
    let code = |answer: &Value| answer["error"]["code"].as_str().map(str::to_owned);
    for (path, status) in [
        ("/api/v1/chat/rooms/nowhere/messages", StatusCode::NOT_FOUND),
        ("/api/v1/chat/rooms/r/messages?limit=0", StatusCode::BAD_REQUEST),
        ("/api/v1/chat/rooms/r/messages?limit=101", StatusCode::BAD_REQUEST),
        ("/api/v1/chat/rooms/r/messages?before=abc", StatusCode::BAD_REQUEST),
        ("/api/v1/chat/rooms/r/messages?before=-3", StatusCode::BAD_REQUEST),
        ("/api/v1/chat/rooms/nowhere/participants", StatusCode::NOT_FOUND),
    ] {
        let (got, answer) = server.get(path).await;
        assert_eq!(got, status, "{path}: {answer}");
        assert!(code(&answer).is_some(), "{path}: a JSON error");
    }
    let ws = alice.request(json!({"type": "history", "room": "nowhere", "id": "h"})).await;
    assert_eq!(ws["data"]["code"], "not_found");
    let ws = alice
        .request(json!({"type": "history", "room": "r", "id": "h2", "data": {"before": "x"}}))
        .await;
    assert_eq!(ws["data"]["code"], "bad_request");
    let (status, answer) =
        server.post("/api/v1/chat/rooms?user=alice", json!({"name": "x", "type": "secret"})).await;
    assert_eq!((status, code(&answer).as_deref()), (StatusCode::BAD_REQUEST, Some("bad_request")));
    let (status, _) =
        server.post("/api/v1/chat/rooms", json!({"name": "x", "type": "public"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "nobody named as the creator");
    let (_, page) = server.get("/api/v1/chat/rooms/r/messages").await;
    assert_eq!(contents(&page), ["x"], "nothing was lost");
}

#[tokio::test]
async fn retention_deletes_what_is_older_than_it() {
    let dir = TempDir::new("retention");
    let url = dir.sqlite();
    let server = start_server_with(move |c| {
        c.database_url = url;
        c.retention = Duration::from_secs(1);
        c.retention_interval = Duration::from_millis(100);
    })
    .await;
    let mut alice = server.member("alice", "r").await;
    assert_eq!(alice.request(chat("r", "old", "old")).await["type"], "ack");
    let (_, page) = server.get("/api/v1/chat/rooms/r/messages").await;
    assert_eq!(contents(&page), ["old"]);
    server.wait_get("/api/v1/chat/rooms/r/messages", |_, page| contents(page).is_empty()).await;
    assert!(server.metric("wsbroker_store_purged_total").await >= 1);
}

#[tokio::test]
async fn an_offline_user_shows_when_it_was_last_seen() {
    let dir = TempDir::new("seen");
    let server = stored_server(&dir).await;
    let alice = server.member("alice", "r").await;
    drop(alice);
    let answer = server
        .wait_get("/api/v1/chat/users/alice/online", |_, a| {
            a["online"] == false && a["last_seen"].is_string()
        })
        .await;
    assert!(answer["last_seen"].as_str().unwrap().ends_with('Z'), "{answer}");
    let (_, never) = server.get("/api/v1/chat/users/nobody/online").await;
    assert!(never.get("last_seen").is_none(), "never seen: {never}");
}

#[tokio::test]
async fn http_publishes_are_answered_once_stored() {
    let dir = TempDir::new("publish");
    let server = stored_server(&dir).await;
    let mut bob = server.member("bob", "news").await;
    let (status, answer) = server
        .post(
            "/api/v1/chat/rooms/news/messages",
            json!({"from": "cms", "data": {"content": "out"}}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (_, page) = server.get("/api/v1/chat/rooms/news/messages").await;
    assert_eq!(page["messages"][0]["id"], answer["id"], "stored before the 202");
    assert_eq!(bob.recv_type("notification").await["data"]["content"], "out");
}

/// Joins `room` and returns the reply (an ack or an error).
async fn try_join(client: &mut Client, room: &str) -> Value {
    client.request(json!({"type": "join", "room": room, "id": format!("j-{room}")})).await
}

#[tokio::test]
async fn private_rooms_admit_and_show_themselves_to_participants_only() {
    let dir = TempDir::new("private");
    let server = stored_server(&dir).await;
    let body = json!({"name": "team", "type": "private", "members": ["bob"]});
    let (status, created) = server.post("/api/v1/chat/rooms?user=alice", body.clone()).await;
    assert_eq!((status, created["room"]["type"].as_str()), (StatusCode::CREATED, Some("private")));
    assert_eq!(server.post("/api/v1/chat/rooms?user=zed", body).await.0, StatusCode::CONFLICT);
    let mut carol = server.connect("/ws?user=carol").await;
    assert_eq!(try_join(&mut carol, "team").await["data"]["code"], "forbidden");
    assert_eq!(
        server.try_connect("/ws?user=carol&room=team", None).await.err(),
        Some(StatusCode::FORBIDDEN)
    );
    let mut bob = server.member("bob", "team").await;
    assert_eq!(bob.request(chat("team", "t1", "secret")).await["type"], "ack");
    assert_eq!(
        server.get("/api/v1/chat/rooms/team/messages?user=carol").await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(server.get("/api/v1/chat/rooms/team/messages?user=bob").await.0, StatusCode::OK);
    let refused = carol.request(json!({"type": "history", "room": "team", "id": "h"})).await;
    assert_eq!(refused["data"]["code"], "forbidden");
    let rooms = |answer: &Value| -> Vec<String> {
        answer["rooms"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_owned())
            .collect()
    };
    assert!(
        !rooms(&server.get("/api/v1/chat/rooms?user=carol").await.1).contains(&"team".to_owned())
    );
    assert!(rooms(&server.get("/api/v1/chat/rooms?user=bob").await.1).contains(&"team".to_owned()));

    let (status, _) =
        server.post("/api/v1/chat/rooms/team/participants/carol?user=bob", json!({})).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "only the owner adds participants");
    let (status, _) =
        server.post("/api/v1/chat/rooms/team/participants/carol?user=alice", json!({})).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(try_join(&mut carol, "team").await["type"], "ack");
    // Told before the removal below (a join and leave in one presence window would cancel out).
    bob.recv_presence_change("carol", "join").await;
    let (_, people) = server.get("/api/v1/chat/rooms/team/participants?user=carol").await;
    let roles: Vec<(String, String)> = people["participants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["user"].as_str().unwrap().into(), p["role"].as_str().unwrap().into()))
        .collect();
    let expected = [("alice", "owner"), ("bob", "member"), ("carol", "member")];
    assert_eq!(roles, expected.map(|(u, r)| (u.to_owned(), r.to_owned())));

    assert_eq!(
        server.delete("/api/v1/chat/rooms/team/participants/carol?user=alice").await.0,
        StatusCode::NO_CONTENT
    );
    let left = bob
        .recv_where(|f| {
            let wanted = ("carol".to_owned(), "leave".to_owned());
            f["type"] == "presence" && crate::common::presence_changes(f).contains(&wanted)
        })
        .await;
    assert_eq!(left["room"], "team", "a removed participant's connections leave the room");
    assert_eq!(bob.request(chat("team", "t2", "after")).await["type"], "ack");
    let pong = carol.request(json!({"type": "ping", "id": "p"})).await;
    assert_eq!(pong["type"], "pong", "carol got no message of the room after her removal");
}

#[tokio::test]
async fn a_direct_room_is_for_its_two_users() {
    let dir = TempDir::new("direct");
    let server = stored_server(&dir).await;
    let mut alice = server.member("alice", "dm:alice:bob").await;
    let mut carol = server.connect("/ws?user=carol").await;
    assert_eq!(try_join(&mut carol, "dm:alice:bob").await["data"]["code"], "forbidden");
    assert_eq!(
        try_join(&mut carol, "dm:bob:alice").await["data"]["code"],
        "forbidden",
        "not a sorted pair"
    );
    let _bob = server.member("bob", "dm:alice:bob").await;
    assert_eq!(alice.request(chat("dm:alice:bob", "d1", "hi bob")).await["type"], "ack");
    let (status, created) = server
        .post("/api/v1/chat/rooms?user=erin", json!({"type": "direct", "members": ["dave"]}))
        .await;
    assert_eq!(
        (status, created["room"]["id"].as_str()),
        (StatusCode::CREATED, Some("dm:dave:erin"))
    );
    let (status, _) = server
        .post("/api/v1/chat/rooms?user=alice", json!({"type": "direct", "members": ["alice"]}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "a direct room needs another user");
    let (_, people) = server.get("/api/v1/chat/rooms/dm:alice:bob/participants?user=bob").await;
    assert_eq!(people["participants"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn a_fresh_broker_has_its_default_public_room_and_the_page_opens_it() {
    let dir = TempDir::new("default-room");
    let server = stored_server(&dir).await;
    let lobby = |_: StatusCode, rooms: &Value| {
        rooms["rooms"].as_array().is_some_and(|r| r.iter().any(|room| room["id"] == "lobby"))
    };
    let rooms = server.wait_get("/api/v1/chat/rooms?user=newcomer", lobby).await;
    let room = rooms["rooms"].as_array().unwrap().iter().find(|r| r["id"] == "lobby").unwrap();
    assert_eq!(room["type"], "public");
    let (_, config) = server.get("/web/config.json").await;
    assert_eq!(config["default_room"], "lobby");
    let mut newcomer = server.connect("/ws?user=newcomer").await;
    let joined = newcomer.request(json!({"type": "join", "room": "lobby", "id": "j"})).await;
    assert_eq!(joined["type"], "ack", "anyone may join it: {joined}");
}
