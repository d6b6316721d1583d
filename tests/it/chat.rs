//! The WebSocket side of the wire contract (docs/protocol.md), through real sockets.

use crate::common::{self, start_server, start_server_with, Client};
use futures_util::SinkExt;
use hyper::StatusCode;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

fn content(frame: &Value) -> &str {
    frame["data"]["content"].as_str().unwrap_or_default()
}

/// Publishes `text` to `room` (no id, so no ack).
async fn say(client: &mut Client, room: &str, text: &str) {
    client.send(json!({"type": "chat", "room": room, "data": {"content": text}})).await;
}

#[tokio::test]
async fn room_messages_reach_members_only() {
    let server = start_server().await;
    let mut alice = server.member("alice", "r1").await;
    let mut bob = server.member("bob", "r2").await;
    let mut carol = server.member("carol", "r1").await;
    carol.join("r2").await;
    say(&mut carol, "r1", "for r1").await;
    say(&mut carol, "r2", "for r2").await;
    let got = alice.recv_type("chat").await;
    assert_eq!((content(&got), got["room"].as_str()), ("for r1", Some("r1")));
    // Messages from one publisher arrive in order: had bob got "for r1", it would come first.
    let got = bob.recv_type("chat").await;
    assert_eq!(content(&got), "for r2", "bob is not in r1: {got}");
}

#[tokio::test]
async fn sender_gets_its_own_message_and_an_ack_with_its_id() {
    let server = start_server().await;
    let mut alice = server.member("alice", "lobby").await;
    alice
        .send(json!({"type": "chat", "room": "lobby", "id": "c-1", "data": {"content": "hi"}}))
        .await;
    let echo = alice.recv_type("chat").await;
    assert_eq!(echo["id"], "c-1");
    assert_eq!(echo["from"], "alice");
    assert_eq!(echo["room"], "lobby");
    assert!(echo["timestamp"].as_str().unwrap().ends_with('Z'));
    assert_eq!(echo["seq"], 1, "the room's first message");
    assert!(echo["epoch"].as_str().is_some_and(|epoch| !epoch.is_empty()));
    let ack = alice.recv_type("ack").await;
    assert_eq!(ack, json!({"type": "ack", "id": "c-1", "seq": 1}));
}

#[tokio::test]
async fn forged_from_is_overwritten_with_the_connections_user() {
    let server = start_server().await;
    let mut mallory = server.member("mallory", "lobby").await;
    let mut bob = server.member("bob", "lobby").await;
    mallory
        .send(json!({"type": "chat", "room": "lobby", "from": "alice", "data": {"content": "x"}}))
        .await;
    assert_eq!(bob.recv_type("chat").await["from"], "mallory");
}

#[tokio::test]
async fn a_message_without_room_reaches_every_connection() {
    let server = start_server().await;
    let mut roomless = server.connect("/ws?user=roomless").await;
    let mut member = server.member("member", "r").await;
    let mut sender = server.connect("/ws?user=sender").await;
    sender.send(json!({"type": "chat", "room": "", "data": {"content": "all"}})).await;
    for client in [&mut roomless, &mut member, &mut sender] {
        let got = client.recv_type("chat").await;
        assert_eq!(content(&got), "all");
        assert!(got.get("room").is_none(), "a global frame has no room: {got}");
    }
}

#[tokio::test]
async fn publishing_to_a_room_one_is_not_in_is_refused() {
    let server = start_server().await;
    let mut outsider = server.connect("/ws?user=outsider").await;
    let mut member = server.member("member", "r").await;
    let reply = outsider
        .request(json!({"type": "chat", "room": "r", "id": "m1", "data": {"content": "x"}}))
        .await;
    assert_eq!(reply["data"]["code"], "not_member");
    let reply = outsider.request(json!({"type": "leave", "room": "r", "id": "l1"})).await;
    assert_eq!(reply["data"]["code"], "not_member");
    say(&mut member, "r", "marker").await;
    assert_eq!(
        content(&member.recv_type("chat").await),
        "marker",
        "the refused message was not delivered"
    );
}

#[tokio::test]
async fn bad_input_gets_an_error_and_the_connection_stays_open() {
    let server = start_server().await;
    let mut client = server.connect("/ws?user=u").await;
    client.send_text("{not json").await;
    assert_eq!(client.recv().await["data"]["code"], "bad_request");
    client.send(json!({"type": "teleport", "id": "t1"})).await;
    let reply = client.recv().await;
    assert_eq!(
        (reply["data"]["code"].as_str(), reply["id"].as_str()),
        (Some("unknown_type"), Some("t1"))
    );
    client.send(json!({"type": "ack", "id": "a1"})).await;
    assert_eq!(client.recv().await["data"]["code"], "unknown_type", "clients may not send acks");
    client.send(json!({"type": "join", "room": "no spaces", "id": "j1"})).await;
    assert_eq!(client.recv().await["data"]["code"], "bad_request");
    client.ws.send(Message::binary(vec![1, 2, 3])).await.unwrap();
    assert_eq!(client.recv().await["data"]["code"], "bad_request");
    let pong = client.request(json!({"type": "ping", "id": "p1"})).await;
    assert_eq!(pong, json!({"type": "pong", "id": "p1"}));
}

#[tokio::test]
async fn content_over_the_limit_is_refused_and_not_delivered() {
    let server = start_server().await;
    let mut sender = server.member("sender", "r").await;
    let mut reader = server.member("reader", "r").await;
    let too_long = "é".repeat(4097);
    let reply = sender
        .request(json!({"type": "chat", "room": "r", "id": "big", "data": {"content": too_long}}))
        .await;
    assert_eq!(reply["data"]["code"], "content_too_long");
    let at_limit = "é".repeat(4096);
    let reply = sender
        .request(json!({"type": "chat", "room": "r", "id": "ok", "data": {"content": at_limit}}))
        .await;
    assert_eq!(reply["type"], "ack");
    let got = reader.recv_type("chat").await;
    assert_eq!(got["id"], "ok", "only the message within the limit was delivered");
}

#[tokio::test]
async fn a_message_over_the_frame_limit_closes_with_1009_and_evicts() {
    let server = start_server().await;
    let mut client = server.connect("/ws?user=big").await;
    client.ws.send(Message::text("x".repeat(65_537))).await.unwrap();
    let close = client.closed().await.expect("a close frame");
    assert_eq!(u16::from(close.code), 1009);
    server.wait_metric("wsbroker_connections_open", 0).await;
    let (_, online) = server.get("/api/v1/chat/users/big/online").await;
    assert_eq!(online["online"], false);
}

#[tokio::test]
async fn ping_gets_pong() {
    let server = start_server().await;
    let mut client = server.connect("/ws").await;
    client.send(json!({"type": "ping"})).await;
    assert_eq!(client.recv().await, json!({"type": "pong"}));
}

#[tokio::test]
async fn presence_announces_a_users_first_join_and_last_leave() {
    let server = start_server().await;
    let mut alice = server.connect("/ws?user=alice&room=r").await;
    let mut bob_phone = server.connect("/ws?user=bob&room=r").await;
    let change = |user: &str, status: &str| vec![(user.to_owned(), status.to_owned())];
    assert_eq!(
        alice.next_presence_changes().await,
        change("alice", "join"),
        "the joiner sees itself"
    );
    assert_eq!(alice.next_presence_changes().await, change("bob", "join"));
    assert_eq!(bob_phone.next_presence_changes().await, change("bob", "join"));
    let mut bob_laptop = server.member("bob", "r").await;
    bob_phone.request(json!({"type": "leave", "room": "r", "id": "l"})).await;
    say(&mut bob_laptop, "r", "marker").await;
    let next = alice.recv_where(|f| f["type"] != "ack").await;
    assert_eq!(content(&next), "marker", "bob still has a connection in r: no event, got {next}");
    bob_laptop.ws.close(None).await.unwrap();
    let left = alice.recv_type("presence").await;
    assert_eq!(crate::common::presence_changes(&left), change("bob", "leave"));
    assert_eq!(left["room"], "r");
}

#[tokio::test]
async fn presence_events_can_be_turned_off_while_queries_still_answer() {
    let server = start_server_with(|c| c.presence_events = false).await;
    let mut alice = server.connect("/ws?user=alice&room=r").await;
    let mut bob = server.connect("/ws?user=bob&room=r").await;
    say(&mut bob, "r", "first").await;
    assert_eq!(content(&alice.recv().await), "first", "no presence event came before it");
    let list = alice.request(json!({"type": "presence", "room": "r", "id": "q"})).await;
    assert_eq!(list["data"]["users"], json!(["alice", "bob"]));
    drop(bob);
    server.post("/api/v1/chat/rooms/r/messages", json!({"data": {"content": "after"}})).await;
    assert_eq!(alice.recv().await["data"]["content"], "after", "no leave event either");
}

#[tokio::test]
async fn presence_query_lists_users_and_who_is_away() {
    let server = start_server_with(|c| c.away_after = std::time::Duration::from_millis(300)).await;
    let mut alice = server.member("alice", "r").await;
    let mut bob = server.member("bob", "r").await;
    let query = json!({"type": "presence", "room": "r", "id": "q"});
    let list = alice.request(query.clone()).await;
    assert_eq!(list["room"], "r");
    assert_eq!(list["data"], json!({"users": ["alice", "bob"], "away": []}));
    // Alice keeps asking, which is no sign of a person: both go away.
    let deadline = tokio::time::Instant::now() + common::WAIT;
    loop {
        let list = alice.request(query.clone()).await;
        if list["data"]["away"] == json!(["alice", "bob"]) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "they never became away: {list}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    bob.request(json!({"type": "ping", "id": "heartbeat"})).await;
    let list = alice.request(query.clone()).await;
    assert_eq!(list["data"]["away"], json!(["alice", "bob"]), "a ping is not a person: {list}");
    assert_eq!(bob.request(json!({"type": "active", "id": "here"})).await["type"], "ack");
    let list = alice.request(query).await;
    assert_eq!(list["data"]["users"], json!(["alice", "bob"]));
    assert_eq!(list["data"]["away"], json!(["alice"]), "bob is back: {list}");
}

#[tokio::test]
async fn url_paths_and_query_rooms_join_at_connect() {
    let server = start_server().await;
    let mut by_path = server.connect("/api/chat-api/ws/lobby?user=a").await;
    assert_eq!(by_path.recv_type("presence").await["data"]["user"], "a");
    let mut by_query = server.connect("/api/chat-api/ws?room=x&room=y&user=b").await;
    let mut alias = server.connect("/ws/chat?user=c&room=y").await;
    say(&mut by_query, "x", "in x").await;
    say(&mut by_query, "y", "in y").await;
    assert_eq!(content(&by_query.recv_type("chat").await), "in x");
    assert_eq!(content(&alias.recv_type("chat").await), "in y");
    let (_, online) = server.get("/api/v1/chat/rooms/lobby/online").await;
    assert_eq!(online, json!({"room": "lobby", "users": ["a"]}));
}

#[tokio::test]
async fn plain_get_on_a_websocket_path_answers_426() {
    let server = start_server().await;
    for path in ["/ws", "/ws/chat", "/api/chat-api/ws", "/api/chat-api/ws/lobby"] {
        let (status, body) = server.get(path).await;
        assert_eq!(status, StatusCode::UPGRADE_REQUIRED, "{path}");
        assert_eq!(body["error"]["code"], "upgrade_required");
    }
    let (status, _) = server.get("/ws?room=bad%20name").await;
    assert_eq!(status, StatusCode::UPGRADE_REQUIRED);
}
