//! A user's own stream: every connection of a user hears of its rooms whether or not it joined
//! them: `room_added` (someone made it a participant, or it created a room on another connection),
//! `room_removed`, and `unread` (a room's count and newest message changed); and a small room's
//! members see read receipts.

use hyper::StatusCode;
use serde_json::{json, Value};

use crate::common::{chat, start_server_with, stored_server, Client, TempDir};

async fn told(client: &mut Client, kind: &str, room: &str) -> Value {
    client.recv_where(|frame| frame["type"] == kind && frame["room"] == room).await
}

/// Frames up to the answer to a ping: what the client was sent before it.
async fn until_pong(client: &mut Client) -> Vec<Value> {
    client.send(json!({"type": "ping", "id": "p"})).await;
    let mut frames = Vec::new();
    loop {
        let frame = client.recv().await;
        if frame["type"] == "pong" {
            return frames;
        }
        frames.push(frame);
    }
}

#[tokio::test]
async fn a_direct_room_a_private_room_and_an_added_participant_are_told_to_the_user() {
    let dir = TempDir::new("room-added");
    let url = dir.sqlite();
    let server = start_server_with(move |c| c.database_url = url).await;
    let mut alice = server.connect("/ws?user=alice").await;
    let mut alice_phone = server.connect("/ws?user=alice").await;
    let mut bob = server.connect("/ws?user=bob").await;
    let mut carol = server.connect("/ws?user=carol").await;

    // Alice opens a conversation with bob by joining their direct room: bob hears of it, and so
    // does alice's other connection.
    let joined = alice.request(json!({"type": "join", "room": "dm:alice:bob", "id": "j"})).await;
    assert_eq!(joined["type"], "ack", "{joined}");
    let frame = told(&mut bob, "room_added", "dm:alice:bob").await;
    assert_eq!(frame["data"], json!({"type": "direct", "by": "alice"}));
    let frame = told(&mut alice_phone, "room_added", "dm:alice:bob").await;
    assert_eq!(frame["data"], json!({"type": "direct", "by": "alice"}));

    // A private room created with bob in it: bob and the creator's connections hear of it.
    let body = json!({"name": "team", "type": "private", "members": ["bob"]});
    let (status, answer) = server.post("/api/v1/chat/rooms?user=alice", body).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    let added = json!({"type": "private", "by": "alice"});
    assert_eq!(told(&mut bob, "room_added", "team").await["data"], added);
    assert_eq!(told(&mut alice_phone, "room_added", "team").await["data"], added);

    // Carol added to it later by its owner; the owner had the room already and is not told.
    let (status, answer) =
        server.post("/api/v1/chat/rooms/team/participants/carol?user=alice", json!({})).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    assert_eq!(told(&mut carol, "room_added", "team").await["data"], added);
    let frames = until_pong(&mut alice).await;
    let told_team = frames.iter().filter(|f| f["type"] == "room_added" && f["room"] == "team");
    assert_eq!(told_team.count(), 1, "at its creation, not at carol's: {frames:?}");

    // Removed by the owner: every connection of carol hears it, joined to the room or not.
    let (status, _) = server.delete("/api/v1/chat/rooms/team/participants/carol?user=alice").await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let frame = told(&mut carol, "room_removed", "team").await;
    assert_eq!(frame["data"], json!({"by": "alice"}));
}

#[tokio::test]
async fn a_participant_not_joined_hears_a_rooms_unread_count_and_newest_message() {
    let dir = TempDir::new("unread-events");
    let server = stored_server(&dir).await;
    let mut alice = server.member("alice", "r").await;
    let mut bob = server.member("bob", "r").await;
    assert_eq!(bob.request(json!({"type": "leave", "room": "r", "id": "l"})).await["type"], "ack");
    // Bob still takes part in the room (a leave ends the connection's membership, not the user's).
    let mut bob_phone = server.connect("/ws?user=bob").await;

    assert_eq!(alice.request(chat("r", "m1", "hello")).await["type"], "ack");
    for client in [&mut bob, &mut bob_phone] {
        let frame = told(client, "unread", "r").await;
        assert_eq!(
            (frame["data"]["unread"].as_i64(), frame["data"]["last_seq"].as_i64()),
            (Some(1), Some(1)),
            "{frame}"
        );
        assert_eq!(frame["data"]["last_read"], 0);
        assert_eq!(frame["data"]["last_message"]["data"]["content"], "hello");
        assert_eq!(frame["data"]["last_message"]["seq"], 1);
    }

    // Bob reads it on one connection: the other hears its count is 0 (no newest message: unchanged).
    let read = json!({"type": "read", "room": "r", "id": "rd", "data": {"seq": 1}});
    let mut bob_laptop = server.member("bob", "r").await;
    assert_eq!(bob_laptop.request(read).await["type"], "ack");
    let frame = told(&mut bob_phone, "unread", "r").await;
    assert_eq!(frame["data"], json!({"unread": 0, "last_seq": 1, "last_read": 1}));
    // Reading as far again changes nothing and tells nothing.
    let read = json!({"type": "read", "room": "r", "id": "rd2", "data": {"seq": 1}});
    assert_eq!(bob_laptop.request(read).await["type"], "ack");
    let frames = until_pong(&mut bob_phone).await;
    assert!(frames.iter().all(|f| f["type"] != "unread"), "{frames:?}");

    // A non-participant hears nothing.
    let mut carol = server.connect("/ws?user=carol").await;
    assert_eq!(alice.request(chat("r", "m2", "again")).await["type"], "ack");
    let frame = told(&mut bob_phone, "unread", "r").await;
    assert_eq!(frame["data"]["unread"], 1, "{frame}");
    assert!(until_pong(&mut carol).await.iter().all(|f| f["type"] != "unread"));
}

#[tokio::test]
async fn messages_within_a_window_are_told_once_at_its_end_with_the_newest_count() {
    let dir = TempDir::new("unread-window");
    let url = dir.sqlite();
    let server = start_server_with(move |c| {
        c.database_url = url;
        c.rate_limit = 0.0;
        c.unread_coalesce = std::time::Duration::from_millis(300);
    })
    .await;
    let mut alice = server.member("alice", "r").await;
    let _bob = server.member("bob", "r").await;
    let mut bob_phone = server.connect("/ws?user=bob").await;
    for n in 1..=5 {
        assert_eq!(
            alice.request(chat("r", &format!("m{n}"), &format!("m{n}"))).await["type"],
            "ack"
        );
    }
    // The first at once, then one for the rest of the window, with the newest count.
    let first = told(&mut bob_phone, "unread", "r").await;
    assert_eq!(first["data"]["unread"], 1, "{first}");
    let second = told(&mut bob_phone, "unread", "r").await;
    assert_eq!(second["data"]["unread"], 5, "{second}");
    assert_eq!(second["data"]["last_message"]["data"]["content"], "m5");
}

#[tokio::test]
async fn a_rooms_members_see_read_receipts_in_small_rooms_only() {
    let dir = TempDir::new("receipts");
    let url = dir.sqlite();
    let server = start_server_with(move |c| {
        c.database_url = url;
        c.rate_limit = 0.0;
        c.receipts_max_members = 2;
    })
    .await;
    let mut alice = server.member("alice", "r").await;
    let mut bob = server.member("bob", "r").await;
    assert_eq!(alice.request(chat("r", "m1", "hi")).await["type"], "ack");
    let read = json!({"type": "read", "room": "r", "id": "rd", "data": {"seq": 1}});
    assert_eq!(bob.request(read).await["type"], "ack");
    let receipt = told(&mut alice, "receipt", "r").await;
    assert_eq!(receipt["data"], json!({"user": "bob", "seq": 1}));
    let (status, body) = server.get("/api/v1/chat/rooms/r/receipts?user=alice").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let expected = json!([{"user": "alice", "seq": 0}, {"user": "bob", "seq": 1}]);
    assert_eq!(body["receipts"], expected);
    let (status, _) = server.get("/api/v1/chat/rooms/r/receipts?user=mallory").await;
    assert_eq!(status, StatusCode::OK, "a public room: anyone may read it, receipts too");

    // A third participant makes the room too large: no receipts any more.
    let _carol = server.member("carol", "r").await;
    assert_eq!(alice.request(chat("r", "m2", "more")).await["type"], "ack");
    let read = json!({"type": "read", "room": "r", "id": "rd2", "data": {"seq": 2}});
    assert_eq!(bob.request(read).await["type"], "ack");
    assert!(until_pong(&mut alice).await.iter().all(|f| f["type"] != "receipt"));
    let (_, body) = server.get("/api/v1/chat/rooms/r/receipts?user=alice").await;
    assert!(body["receipts"].is_null(), "{body}");
}
