//! Editing a message, and room events: an edit or a deletion takes a seq in the room's stream like
//! a message, so every member sees it in order and a resume replays what it missed.

use hyper::StatusCode;
use serde_json::{json, Value};

use crate::common::{start_server_with, Client, TempDir, TestServer};

async fn stored_server(
    dir: &TempDir,
    configure: impl FnOnce(&mut wsbroker::Config) + Send + 'static,
) -> TestServer {
    let url = dir.sqlite();
    start_server_with(move |c| {
        c.database_url = url;
        c.rate_limit = 0.0;
        configure(c);
    })
    .await
}

fn chat(id: &str, content: &str) -> Value {
    json!({"type": "chat", "room": "r", "id": id, "data": {"content": content, "mood": "calm"}})
}

fn edit(id: &str, message: &str, content: &str) -> Value {
    json!({"type": "edit", "room": "r", "id": id, "data": {"id": message, "content": content}})
}

fn delete(id: &str, message: &str) -> Value {
    json!({"type": "delete", "room": "r", "id": id, "data": {"id": message}})
}

/// The next frame of one of `kinds`, skipping presence and the rest.
async fn next_of(client: &mut Client, kinds: &[&str]) -> Value {
    client.recv_where(|f| kinds.iter().any(|kind| f["type"] == *kind)).await
}

#[tokio::test]
async fn the_author_edits_every_member_is_told_in_order_and_history_shows_it() {
    let dir = TempDir::new("edit");
    let server = stored_server(&dir, |_| {}).await;
    let mut alice = server.member("alice", "r").await;
    let mut bob = server.member("bob", "r").await;
    assert_eq!(alice.request(chat("m1", "helo")).await["seq"], 1);
    let ack = alice.request(edit("e1", "m1", "hello")).await;
    assert_eq!((ack["type"].as_str(), ack["seq"].as_u64()), (Some("ack"), Some(2)), "{ack}");
    assert_eq!(next_of(&mut bob, &["chat"]).await["seq"], 1);
    let told = next_of(&mut bob, &["message_edited"]).await;
    assert_eq!(told["seq"], 2, "numbered after the message: {told}");
    assert_eq!((told["room"].as_str(), told["from"].as_str()), (Some("r"), Some("alice")));
    let edited_at = told["timestamp"].clone();
    assert_eq!(told["data"], json!({"id": "m1", "content": "hello", "edited_at": edited_at}));

    let (_, page) = server.get("/api/v1/chat/rooms/r/messages").await;
    let messages = page["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 1, "the edit is no message of its own: {page}");
    assert_eq!(
        messages[0]["data"],
        json!({"content": "hello", "mood": "calm"}),
        "other fields stay"
    );
    assert_eq!(messages[0]["edited_at"], told["timestamp"]);
    assert_eq!(messages[0]["seq"], 1);

    let (status, body) = server
        .patch("/api/v1/chat/rooms/r/messages/m1?user=alice", json!({"content": "hello!"}))
        .await;
    assert_eq!((status, body["seq"].as_u64()), (StatusCode::OK, Some(3)), "{body}");
    assert_eq!(next_of(&mut bob, &["message_edited"]).await["data"]["content"], "hello!");
    let versions = "/api/v1/chat/rooms/r/messages/m1/versions?from=alice";
    let (status, _) = server.get(&format!("{versions}&user=bob")).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "only owners and moderators see earlier versions");
    server.post("/api/v1/chat/rooms?user=olga", json!({"name": "owned", "type": "public"})).await;
    let mut olga_in_owned = server.member("olga", "owned").await;
    olga_in_owned
        .request(json!({"type": "chat", "room": "owned", "id": "o1", "data": {"content": "v1"}}))
        .await;
    let (status, _) = server
        .patch("/api/v1/chat/rooms/owned/messages/o1?user=olga", json!({"content": "v2"}))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) =
        server.get("/api/v1/chat/rooms/owned/messages/o1/versions?from=olga&user=olga").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let replaced: Vec<&Value> =
        body["versions"].as_array().unwrap().iter().map(|v| &v["data"]).collect();
    assert_eq!(replaced, [&json!({"content": "v1"})], "{body}");
}

#[tokio::test]
async fn edits_that_may_not_be_made_get_clear_errors_and_change_nothing() {
    let dir = TempDir::new("edit-rules");
    let server = stored_server(&dir, |_| {}).await;
    let mut alice = server.member("alice", "r").await;
    let mut bob = server.member("bob", "r").await;
    alice.request(chat("m1", "mine")).await;
    alice.request(chat("m2", "to delete")).await;
    assert_eq!(alice.request(delete("d1", "m2")).await["seq"], 3);
    let refusals = [
        (bob.request(edit("b1", "m1", "not yours")).await, "forbidden"),
        (alice.request(edit("a1", "nothing", "x")).await, "not_found"),
        (alice.request(edit("a2", "m2", "deleted")).await, "not_found"),
        (alice.request(edit("a3", "m1", &"x".repeat(4097))).await, "content_too_long"),
        (alice.request(json!({"type": "edit", "room": "r", "id": "a4", "data": {"id": "m1"}})).await, "bad_request"),
        (alice.request(json!({"type": "edit", "room": "r", "id": "a5", "data": {"id": "", "content": "x"}})).await, "bad_request"),
    ];
    for (answer, code) in refusals {
        assert_eq!(answer["data"]["code"], code, "{answer}");
    }
    let (status, _) =
        server.patch("/api/v1/chat/rooms/r/messages/m1?user=bob", json!({"content": "x"})).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let next = alice.request(chat("m3", "after")).await;
    assert_eq!(next["seq"], 4, "no refused edit took a seq: {next}");
    let (_, page) = server.get("/api/v1/chat/rooms/r/messages").await;
    let contents: Vec<&str> = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["data"]["content"].as_str().unwrap())
        .collect();
    assert_eq!(contents, ["mine", "after"]);

    let no_editing = TempDir::new("edit-off");
    let server = stored_server(&no_editing, |c| c.edit_window = std::time::Duration::ZERO).await;
    let mut alice = server.member("alice", "r").await;
    alice.request(chat("m1", "final")).await;
    assert_eq!(alice.request(edit("e1", "m1", "changed")).await["data"]["code"], "forbidden");
}

/// Bob leaves after two messages; alice edits the first, deletes the second and writes a third.
/// Bob resumes from seq 2 and gets the three, in order. The last `window` messages are kept in
/// memory, so a small window makes the store serve the replay.
async fn a_resume_replays_the_edits_and_deletions_it_missed(window: usize) {
    let dir = TempDir::new("edit-resume");
    let server = stored_server(&dir, move |c| c.recovery_window = window).await;
    let mut alice = server.member("alice", "r").await;
    let mut bob = server.member("bob", "r").await;
    alice.request(chat("m1", "first")).await;
    alice.request(chat("m2", "second")).await;
    next_of(&mut bob, &["chat"]).await;
    let epoch = next_of(&mut bob, &["chat"]).await["epoch"].clone();
    drop(bob);
    alice.request(edit("e1", "m1", "first, edited")).await;
    alice.request(delete("d1", "m2")).await;
    alice.request(chat("m3", "third")).await;

    let mut bob = server.connect("/ws?user=bob").await;
    let since = json!({"since": {"seq": 2, "epoch": epoch}});
    let answer = bob.request(json!({"type": "join", "room": "r", "id": "j", "data": since})).await;
    assert_eq!(answer["data"]["recovered"], true, "{answer}");
    let mut replayed = Vec::new();
    while replayed.len() < 3 {
        let frame = next_of(&mut bob, &["chat", "message_edited", "message_deleted"]).await;
        let (kind, about) = (frame["type"].as_str().unwrap(), frame["data"]["id"].as_str());
        replayed.push((frame["seq"].as_u64().unwrap(), kind.to_owned(), about.map(str::to_owned)));
    }
    let expected = vec![
        (3, "message_edited".to_owned(), Some("m1".to_owned())),
        (4, "message_deleted".to_owned(), Some("m2".to_owned())),
        (5, "chat".to_owned(), None),
    ];
    assert_eq!(replayed, expected);
}

#[tokio::test]
async fn a_resume_from_memory_replays_missed_edits_and_deletions_in_order() {
    a_resume_replays_the_edits_and_deletions_it_missed(100).await;
}

#[tokio::test]
async fn a_resume_from_the_store_replays_missed_edits_and_deletions_in_order() {
    a_resume_replays_the_edits_and_deletions_it_missed(1).await;
}
