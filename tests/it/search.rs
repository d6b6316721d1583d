//! Search: `GET /api/v1/chat/search` finds the messages holding every word of `q` that the caller
//! may read, newest first, paged; edits are found by their new words, deletions never.

use hyper::StatusCode;
use serde_json::{json, Value};

use crate::common::{chat, stored_server, TempDir, TestServer};

/// The (room, id, seq) of what `user` finds for `query` (already URL-encoded), and the cursor.
async fn found(
    server: &TestServer,
    user: &str,
    query: &str,
) -> (Vec<(String, String, u64)>, Value) {
    let (status, answer) = server.get(&format!("/api/v1/chat/search?user={user}&{query}")).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let messages = answer["messages"].as_array().unwrap().iter().map(|m| {
        let text = |key: &str| m[key].as_str().unwrap().to_owned();
        (text("room"), text("id"), m["seq"].as_u64().unwrap())
    });
    (messages.collect(), answer["next_before"].clone())
}

fn ids(found: &[(String, String, u64)]) -> Vec<&str> {
    found.iter().map(|(_, id, _)| id.as_str()).collect()
}

#[tokio::test]
async fn search_finds_what_the_caller_may_read_newest_first_and_never_a_deleted_message() {
    let dir = TempDir::new("search");
    let server = stored_server(&dir).await;
    let body = json!({"name": "secret", "type": "private", "members": ["bob"]});
    assert_eq!(server.post("/api/v1/chat/rooms?user=alice", body).await.0, StatusCode::CREATED);
    let mut alice = server.member("alice", "lobby").await;
    alice.join("secret").await;
    for (room, id, content) in [
        ("lobby", "p1", "the quarterly report is late"),
        ("secret", "s1", "the report's real numbers"),
        ("lobby", "p2", "Report done, see the REPORTS folder"),
        ("lobby", "p3", "an unrelated message"),
        ("lobby", "gone", "report this one is deleted"),
    ] {
        assert_eq!(alice.request(chat(room, id, content)).await["type"], "ack");
    }
    let delete = json!({"type": "delete", "room": "lobby", "id": "d", "data": {"id": "gone"}});
    assert_eq!(alice.request(delete).await["type"], "ack");

    let (bob, _) = found(&server, "bob", "q=report").await;
    assert_eq!(ids(&bob), ["p2", "s1", "p1"], "bob takes part in secret; the deleted one is gone");
    assert_eq!(bob[1], ("secret".into(), "s1".into(), 1), "with its room and seq");
    let (carol, _) = found(&server, "carol", "q=report").await;
    assert_eq!(ids(&carol), ["p2", "p1"], "carol reads public rooms only");
    assert_eq!(ids(&found(&server, "carol", "q=reports%20folder").await.0), ["p2"], "every word");
    assert_eq!(
        ids(&found(&server, "carol", "q=quart").await.0),
        ["p1"],
        "the last word as a prefix"
    );
    assert_eq!(ids(&found(&server, "bob", "q=report&room=secret").await.0), ["s1"]);

    // Paged: the cursor of a full page leads to the next one.
    let (first, next) = found(&server, "bob", "q=report&limit=2").await;
    assert_eq!(ids(&first), ["p2", "s1"]);
    let cursor = next.as_str().expect("a full page has a cursor");
    let (rest, next) = found(&server, "bob", &format!("q=report&limit=2&before={cursor}")).await;
    assert_eq!((ids(&rest), next), (vec!["p1"], Value::Null));

    // An edit is found by its new words, not its old ones.
    let edit = json!({"type": "edit", "room": "lobby", "id": "e", "data": {"id": "p3", "content": "now about the budget"}});
    assert_eq!(alice.request(edit).await["type"], "ack");
    assert_eq!(ids(&found(&server, "carol", "q=budget").await.0), ["p3"]);
    assert!(found(&server, "carol", "q=unrelated").await.0.is_empty());
}

#[tokio::test]
async fn a_bad_search_is_refused_with_a_clear_error() {
    let dir = TempDir::new("search-refused");
    let server = stored_server(&dir).await;
    let body = json!({"name": "secret", "type": "private", "members": []});
    assert_eq!(server.post("/api/v1/chat/rooms?user=alice", body).await.0, StatusCode::CREATED);
    let long = "x".repeat(300);
    for (query, status, code) in [
        ("", StatusCode::BAD_REQUEST, "bad_request"),
        ("q=%20%21%3F", StatusCode::BAD_REQUEST, "bad_request"),
        (&format!("q={long}") as &str, StatusCode::BAD_REQUEST, "bad_request"),
        ("q=x&limit=0", StatusCode::BAD_REQUEST, "bad_request"),
        ("q=x&before=nope", StatusCode::BAD_REQUEST, "bad_request"),
        ("q=x&room=secret", StatusCode::FORBIDDEN, "forbidden"),
        ("q=x&room=nowhere", StatusCode::NOT_FOUND, "not_found"),
    ] {
        let (got, answer) = server.get(&format!("/api/v1/chat/search?user=carol&{query}")).await;
        assert_eq!(
            (got, answer["error"]["code"].as_str()),
            (status, Some(code)),
            "{query}: {answer}"
        );
    }
    let (status, answer) =
        server.get("/api/v1/chat/search?user=carol&q=%22%3B%20DROP%20TABLE%20x").await;
    assert_eq!(status, StatusCode::OK, "operators are words, not syntax: {answer}");
}
