//! Read state: a participant marks a room read up to a seq; the caller's rooms carry their last
//! seq, how much is unread (a seq difference, never a count over the messages) and the newest
//! message.

use hyper::StatusCode;
use serde_json::{json, Value};

use crate::common::{stored_server, TempDir, TestServer};

/// Room `room` as `GET /rooms` shows it to `user`.
async fn room_for(server: &TestServer, user: &str, room: &str) -> Value {
    let (_, answer) = server.get(&format!("/api/v1/chat/rooms?user={user}")).await;
    let rooms = answer["rooms"].as_array().unwrap();
    rooms.iter().find(|r| r["id"] == room).cloned().unwrap_or_else(|| panic!("no {room}: {answer}"))
}

fn read(seq: u64) -> Value {
    json!({"type": "read", "room": "r", "id": "read", "data": {"seq": seq}})
}

#[tokio::test]
async fn unread_counts_follow_what_a_participant_marks_read_and_the_room_shows_its_newest() {
    let dir = TempDir::new("read-state");
    let server = stored_server(&dir).await;
    let mut alice = server.member("alice", "r").await;
    let mut bob = server.member("bob", "r").await;
    for n in 1..=3 {
        let chat = json!({"type": "chat", "room": "r", "id": format!("m{n}"), "data": {"content": format!("m{n}")}});
        alice.request(chat).await;
    }
    let room = room_for(&server, "bob", "r").await;
    assert_eq!((room["last_seq"].as_i64(), room["unread"].as_i64()), (Some(3), Some(3)), "{room}");
    assert_eq!(room["last_message"]["data"]["content"], "m3");
    assert_eq!(bob.request(read(2)).await["type"], "ack");
    assert_eq!(room_for(&server, "bob", "r").await["unread"], 1);
    assert_eq!(bob.request(read(1)).await["type"], "ack", "never backwards, no error");
    assert_eq!(room_for(&server, "bob", "r").await["unread"], 1);
    assert_eq!(room_for(&server, "alice", "r").await["unread"], 3, "each participant its own");

    let refusals = [
        (bob.request(read(9)).await, "bad_request"),
        (
            bob.request(json!({"type": "read", "room": "r", "id": "x", "data": {"seq": -1}})).await,
            "bad_request",
        ),
        (
            bob.request(json!({"type": "read", "room": "nowhere", "id": "x", "data": {"seq": 1}}))
                .await,
            "not_found",
        ),
    ];
    for (answer, code) in refusals {
        assert_eq!(answer["data"]["code"], code, "{answer}");
    }
    let mut carol = server.connect("/ws?user=carol").await;
    assert_eq!(carol.request(read(1)).await["data"]["code"], "not_member", "carol takes no part");
    assert!(room_for(&server, "carol", "r").await["unread"].is_null());

    // The newest message deleted: the room shows the one before; the deletion is a stream item.
    alice.request(json!({"type": "delete", "room": "r", "id": "d", "data": {"id": "m3"}})).await;
    let room = room_for(&server, "bob", "r").await;
    assert_eq!((room["last_seq"].as_i64(), room["unread"].as_i64()), (Some(4), Some(2)));
    assert_eq!(room["last_message"]["data"]["content"], "m2");
    let (status, body) = server.post("/api/v1/chat/rooms/r/read?user=bob", json!({"seq": 4})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(room_for(&server, "bob", "r").await["unread"], 0);
}
