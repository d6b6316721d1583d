//! Replies and threads: a chat may answer a message of the same room (`data.reply_to`), deleted or
//! not; history quotes it and counts each message's replies; a thread pages through them.

use hyper::StatusCode;
use serde_json::{json, Value};

use crate::common::{chat, stored_server, TempDir};

fn reply(id: &str, to: Value, content: &str) -> Value {
    json!({"type": "chat", "room": "r", "id": id, "data": {"content": content, "reply_to": to}})
}

/// The history page's message `id`.
fn message<'a>(page: &'a Value, id: &str) -> &'a Value {
    let messages = page["messages"].as_array().unwrap();
    messages.iter().find(|m| m["id"] == id).unwrap_or_else(|| panic!("no {id} in {page}"))
}

#[tokio::test]
async fn replies_quote_their_message_count_in_its_thread_and_keep_their_order() {
    let dir = TempDir::new("replies");
    let server = stored_server(&dir).await;
    let mut alice = server.member("alice", "r").await;
    let mut bob = server.member("bob", "r").await;
    alice.request(chat("r", "m1", "a question")).await;
    // A reply is checked off the shard; what bob sends after it still comes after it.
    bob.send(reply("b1", json!("m1"), "an answer")).await;
    bob.send(chat("r", "b2", "and more")).await;
    let mut sent = vec!["b1".to_owned(), "b2".to_owned()];
    for n in 0..10 {
        bob.send(reply(&format!("br{n}"), json!("m1"), "again")).await;
        bob.send(chat("r", &format!("bc{n}"), "plain")).await;
        sent.extend([format!("br{n}"), format!("bc{n}")]);
    }
    let mut got = Vec::new();
    while got.len() < sent.len() {
        let frame = alice.recv_where(|f| f["type"] == "chat" && f["from"] == "bob").await;
        if frame["id"] == "b1" {
            assert_eq!(frame["data"]["reply_to"], "m1", "live, as sent");
        }
        got.push(frame["id"].as_str().unwrap().to_owned());
    }
    assert_eq!(got, sent, "in the order bob sent them");
    let carol_reply = reply("c1", json!("m1"), "me too");
    let mut carol = server.member("carol", "r").await;
    assert_eq!(carol.request(carol_reply).await["type"], "ack");

    let (_, page) = server.get("/api/v1/chat/rooms/r/messages").await;
    let thread = &message(&page, "m1")["thread"];
    assert_eq!(thread["replies"], 12, "{page}");
    assert!(thread["last_reply_at"].is_string());
    let quote = &message(&page, "b1")["quote"];
    assert_eq!(quote, &json!({"id": "m1", "from": "alice", "content": "a question"}));
    assert!(
        message(&page, "b2").get("quote").is_none() && message(&page, "b2").get("thread").is_none()
    );

    let path = "/api/v1/chat/rooms/r/messages/m1/thread";
    let (_, first_page) = server.get(&format!("{path}?limit=11")).await;
    let ids = |page: &Value| -> Vec<String> {
        page["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let replies: Vec<String> =
        std::iter::once("b1".to_owned()).chain((0..10).map(|n| format!("br{n}"))).collect();
    assert_eq!(ids(&first_page), replies, "oldest first");
    let after = first_page["next_after"].as_str().unwrap().to_owned();
    let (_, second_page) = server.get(&format!("{path}?limit=11&after={after}")).await;
    assert_eq!(ids(&second_page), ["c1"]);
    assert!(second_page["next_after"].is_null(), "{second_page}");

    // The question is deleted: replying still works, and the quote says it is gone.
    alice.request(json!({"type": "delete", "room": "r", "id": "d", "data": {"id": "m1"}})).await;
    assert_eq!(carol.request(reply("c2", json!("m1"), "where did it go?")).await["type"], "ack");
    let (_, page) = server.get("/api/v1/chat/rooms/r/messages").await;
    assert_eq!(
        message(&page, "c2")["quote"],
        json!({"id": "m1", "from": "alice", "deleted": true})
    );
}

#[tokio::test]
async fn a_reply_right_behind_its_message_finds_it() {
    let dir = TempDir::new("quick-replies");
    let server = stored_server(&dir).await;
    let mut alice = server.member("alice", "r").await;
    let mut bob = server.member("bob", "r").await;
    for n in 0..20 {
        // Alice answers herself before her message is acked; bob as soon as he sees it live.
        alice.send(chat("r", &format!("q{n}"), "question")).await;
        let own = alice.request(reply(&format!("a{n}"), json!(format!("q{n}")), "and so")).await;
        assert_eq!(own["type"], "ack", "{own}");
        let seen = bob.recv_where(|f| f["id"] == format!("q{n}").as_str()).await;
        let quick = bob.request(reply(&format!("b{n}"), seen["id"].clone(), "quick")).await;
        assert_eq!(quick["type"], "ack", "{quick}");
    }
}

#[tokio::test]
async fn a_reply_to_what_is_not_in_the_room_is_refused_and_changes_nothing() {
    let dir = TempDir::new("bad-replies");
    let server = stored_server(&dir).await;
    let mut alice = server.member("alice", "r").await;
    alice.join("other").await;
    alice.request(chat("other", "elsewhere", "not here")).await;
    alice.request(chat("r", "m1", "here")).await;
    let cases = [
        (reply("x1", json!("elsewhere"), "wrong room"), "not_found"),
        (reply("x2", json!("nothing"), "no such"), "not_found"),
        (reply("x3", json!(7), "not a string"), "bad_request"),
        (reply("x4", json!(""), "empty"), "bad_request"),
        (
            json!({"type": "chat", "id": "x5", "data": {"content": "global", "reply_to": "m1"}}),
            "bad_request",
        ),
    ];
    for (request, code) in cases {
        let answer = alice.request(request.clone()).await;
        assert_eq!(answer["data"]["code"], code, "{request} -> {answer}");
    }
    let next = alice.request(chat("r", "m2", "after")).await;
    assert_eq!(next["seq"], 2, "nothing refused took a seq: {next}");
    let (status, _) = server.get("/api/v1/chat/rooms/r/messages/m1/thread?after=nope").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}
