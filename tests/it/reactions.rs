//! Reactions: room events like edits; one per user, message and emoji; counted per message in
//! history with whether the caller is among them; replayed on a resume.

use serde_json::{json, Value};

use crate::common::{stored_server, Client, TempDir, TestServer};

fn react(id: &str, emoji: &str, remove: bool) -> Value {
    json!({"type": "react", "room": "r", "id": "x", "data": {"id": id, "emoji": emoji, "remove": remove}})
}

/// The reactions history shows on the room's only message, for `viewer`.
async fn reactions_seen_by(server: &TestServer, viewer: &str) -> Value {
    let (_, page) = server.get(&format!("/api/v1/chat/rooms/r/messages?user={viewer}")).await;
    page["messages"][0]["reactions"].clone()
}

async fn next_reaction(client: &mut Client) -> Value {
    client.recv_where(|f| f["type"] == "reaction_added" || f["type"] == "reaction_removed").await
}

#[tokio::test]
async fn reactions_are_told_numbered_counted_once_per_user_and_taken_back() {
    let dir = TempDir::new("reactions");
    let server = stored_server(&dir).await;
    let mut alice = server.member("alice", "r").await;
    let mut bob = server.member("bob", "r").await;
    let mut carol = server.member("carol", "r").await;
    alice
        .request(json!({"type": "chat", "room": "r", "id": "m1", "data": {"content": "hi"}}))
        .await;
    let ack = bob.request(react("m1", "👍", false)).await;
    assert_eq!((ack["type"].as_str(), ack["seq"].as_u64()), (Some("ack"), Some(2)), "{ack}");
    let told = next_reaction(&mut alice).await;
    assert_eq!(
        (told["type"].as_str(), told["from"].as_str(), told["seq"].as_u64()),
        (Some("reaction_added"), Some("bob"), Some(2))
    );
    assert_eq!(told["data"], json!({"id": "m1", "from": "alice", "emoji": "👍"}));
    assert_eq!(
        bob.request(react("m1", "👍", false)).await["data"]["code"],
        "conflict",
        "once per user"
    );
    carol.request(react("m1", "👍", false)).await;
    carol.request(react("m1", ":tada:", false)).await;
    let expected = json!([
        {"emoji": ":tada:", "count": 1, "mine": false},
        {"emoji": "👍", "count": 2, "mine": true},
    ]);
    assert_eq!(reactions_seen_by(&server, "bob").await, expected);

    // Bob steps away; carol takes hers back and reacts again: a resume brings both, in order.
    let since = json!({"seq": 4, "epoch": told["epoch"]});
    drop(bob);
    carol.request(react("m1", "👍", true)).await;
    carol.request(react("m1", "❤️", false)).await;
    let mut bob = server.connect("/ws?user=bob").await;
    let answer = bob
        .request(json!({"type": "join", "room": "r", "id": "j", "data": {"since": since}}))
        .await;
    assert_eq!(answer["data"]["recovered"], true, "{answer}");
    let (first, second) = (next_reaction(&mut bob).await, next_reaction(&mut bob).await);
    assert_eq!(
        (first["type"].as_str(), first["seq"].as_u64()),
        (Some("reaction_removed"), Some(5))
    );
    assert_eq!((second["data"]["emoji"].as_str(), second["seq"].as_u64()), (Some("❤️"), Some(6)));
    assert_eq!(
        carol.request(react("m1", "👍", true)).await["data"]["code"],
        "not_found",
        "taken back already"
    );
    let expected = json!([
        {"emoji": ":tada:", "count": 1, "mine": true},
        {"emoji": "❤️", "count": 1, "mine": true},
        {"emoji": "👍", "count": 1, "mine": false},
    ]);
    assert_eq!(reactions_seen_by(&server, "carol").await, expected);
    assert!(reactions_seen_by(&server, "alice")
        .await
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["mine"] == false));
}

#[tokio::test]
async fn bad_reactions_get_clear_errors_and_change_nothing() {
    let dir = TempDir::new("bad-reactions");
    let server = stored_server(&dir).await;
    let mut alice = server.member("alice", "r").await;
    alice
        .request(json!({"type": "chat", "room": "r", "id": "m1", "data": {"content": "hi"}}))
        .await;
    alice
        .request(json!({"type": "chat", "room": "r", "id": "m2", "data": {"content": "gone"}}))
        .await;
    alice.request(json!({"type": "delete", "room": "r", "id": "d", "data": {"id": "m2"}})).await;
    let cases = [
        (react("m1", "ok", false), "bad_request"),
        (react("m1", "", false), "bad_request"),
        (react("m1", &"😀".repeat(9), false), "bad_request"),
        (react("m1", ":Not_Lower:", false), "bad_request"),
        (react("m1", "👍 ", false), "bad_request"),
        (react("nothing", "👍", false), "not_found"),
        (react("m2", "👍", false), "not_found"),
        (json!({"type": "react", "room": "r", "id": "x", "data": {"id": "m1"}}), "bad_request"),
        (
            json!({"type": "react", "room": "elsewhere", "id": "x", "data": {"id": "m1", "emoji": "👍"}}),
            "not_found",
        ),
    ];
    for (request, code) in cases {
        let answer = alice.request(request.clone()).await;
        assert_eq!(answer["data"]["code"], code, "{request} -> {answer}");
    }
    let next = alice.request(json!({"type": "chat", "room": "r", "id": "m3", "data": {}})).await;
    assert_eq!(next["seq"], 4, "no refused reaction took a seq");
    assert_eq!(reactions_seen_by(&server, "alice").await, Value::Null, "m1 has none");
    let ok = alice.request(react("m1", "👩‍👩‍👧‍👦", false)).await;
    assert_eq!(ok["type"], "ack", "a family is one emoji of 7 code points: {ok}");
}

#[tokio::test]
async fn anyone_who_may_read_a_room_reacts_without_joining_it_and_others_are_refused() {
    let dir = TempDir::new("reactions-unjoined");
    let server = stored_server(&dir).await;
    let mut alice = server.member("alice", "r").await;
    alice
        .request(json!({"type": "chat", "room": "r", "id": "m1", "data": {"content": "hi"}}))
        .await;
    // Bob never joined public room r: he may read it, so he may react to it.
    let mut bob = server.connect("/ws?user=bob").await;
    let ack = bob.request(react("m1", "👀", false)).await;
    assert_eq!(ack["type"], "ack", "{ack}");
    assert_eq!(next_reaction(&mut alice).await["from"], "bob");
    // A private room is for its participants only.
    let body = json!({"name": "secret", "type": "private", "members": []});
    let (status, _) = server.post("/api/v1/chat/rooms?user=alice", body).await;
    assert_eq!(status, hyper::StatusCode::CREATED);
    alice.join("secret").await;
    alice
        .request(json!({"type": "chat", "room": "secret", "id": "s1", "data": {"content": "psst"}}))
        .await;
    let refused = bob
        .request(json!({"type": "react", "room": "secret", "id": "x", "data": {"id": "s1", "emoji": "👀"}}))
        .await;
    assert_eq!(refused["data"]["code"], "forbidden", "{refused}");
}
