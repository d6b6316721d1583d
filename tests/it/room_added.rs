//! A user someone else makes a participant of a room is told at once (`room_added`), so a direct
//! conversation or a private room shows up without a reload.

use hyper::StatusCode;
use serde_json::{json, Value};

use crate::common::{start_server_with, Client, TempDir};

async fn told(client: &mut Client, room: &str) -> Value {
    client.recv_where(|frame| frame["type"] == "room_added" && frame["room"] == room).await
}

#[tokio::test]
async fn a_direct_room_a_private_room_and_an_added_participant_are_told_to_the_user() {
    let dir = TempDir::new("room-added");
    let url = dir.sqlite();
    let server = start_server_with(move |c| c.database_url = url).await;
    let mut alice = server.connect("/ws?user=alice").await;
    let mut bob = server.connect("/ws?user=bob").await;
    let mut carol = server.connect("/ws?user=carol").await;

    // Alice opens a conversation with bob by joining their direct room: bob hears of it.
    let joined = alice.request(json!({"type": "join", "room": "dm:alice:bob", "id": "j"})).await;
    assert_eq!(joined["type"], "ack", "{joined}");
    let frame = told(&mut bob, "dm:alice:bob").await;
    assert_eq!(frame["data"], json!({"type": "direct", "by": "alice"}));

    // A private room created with bob in it.
    let body = json!({"name": "team", "type": "private", "members": ["bob"]});
    let (status, answer) = server.post("/api/v1/chat/rooms?user=alice", body).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    assert_eq!(told(&mut bob, "team").await["data"], json!({"type": "private", "by": "alice"}));

    // Carol added to it later by its owner.
    let (status, answer) =
        server.post("/api/v1/chat/rooms/team/participants/carol?user=alice", json!({})).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    assert_eq!(told(&mut carol, "team").await["data"], json!({"type": "private", "by": "alice"}));

    // The one who did it is not told of it.
    alice.send(json!({"type": "ping", "id": "p"})).await;
    loop {
        let frame = alice.recv().await;
        assert_ne!(frame["type"], "room_added", "alice made the rooms: {frame}");
        if frame["type"] == "pong" {
            break;
        }
    }
}
