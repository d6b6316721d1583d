//! Reconnect recovery: a member that comes back with `since` gets every message it missed, once
//! each and in seq order, then the live ones; or an explicit `recovered:false` with the reason.

use serde_json::{json, Value};

use crate::common::{start_server_with, Client, TempDir, TestServer};

fn chat(room: &str, n: u64) -> Value {
    json!({"type": "chat", "room": room, "data": {"content": n.to_string()}})
}

fn resume(room: &str, seq: u64, epoch: &str) -> Value {
    json!({"type": "join", "room": room, "id": "resume", "data": {"since": {"seq": seq, "epoch": epoch}}})
}

/// Reads chats of `room` until one with seq `until`; their seqs, in the order they came.
async fn seqs_until(client: &mut Client, room: &str, until: u64) -> Vec<u64> {
    let mut seqs = Vec::new();
    while seqs.last() != Some(&until) {
        let frame = client.recv_where(|f| f["type"] == "chat" && f["room"] == room).await;
        seqs.push(frame["seq"].as_u64().unwrap());
    }
    seqs
}

/// The (seq, epoch) of the next chat `client` gets.
async fn next_chat(client: &mut Client) -> (u64, String) {
    let frame = client.recv_type("chat").await;
    (frame["seq"].as_u64().unwrap(), frame["epoch"].as_str().unwrap().to_owned())
}

async fn quiet(config: impl FnOnce(&mut wsbroker::Config) + Send + 'static) -> TestServer {
    start_server_with(|c| {
        c.rate_limit = 0.0;
        c.shards = Some(3);
        config(c);
    })
    .await
}

#[tokio::test]
async fn a_member_that_comes_back_gets_what_it_missed_once_in_order_then_the_live_ones() {
    let server = quiet(|_| {}).await;
    let mut alice = server.member("alice", "r").await;
    let mut bob = server.member("bob", "r").await;
    alice.send(chat("r", 0)).await;
    let (last, epoch) = next_chat(&mut bob).await;
    drop(bob);
    for n in 1..=5 {
        alice.send(chat("r", n)).await;
    }
    assert_eq!(seqs_until(&mut alice, "r", last + 5).await.last(), Some(&(last + 5)));
    let mut bob = server.connect("/ws?user=bob").await;
    let answer = bob.request(resume("r", last, &epoch)).await;
    assert_eq!(
        (answer["type"].as_str(), &answer["data"]),
        (Some("ack"), &json!({"recovered": true}))
    );
    alice.send(chat("r", 6)).await;
    let expected: Vec<u64> = (last + 1..=last + 6).collect();
    assert_eq!(
        seqs_until(&mut bob, "r", last + 6).await,
        expected,
        "missed ones, then live, no seam"
    );
}

#[tokio::test]
async fn a_resume_while_the_room_is_busy_has_no_gap_and_no_duplicate_at_the_seam() {
    let server = quiet(|c| c.recovery_window = 1_000).await;
    let mut alice = server.member("alice", "busy").await;
    let mut bob = server.member("bob", "busy").await;
    const TOTAL: u64 = 400;
    for n in 0..TOTAL / 2 {
        alice.send(chat("busy", n)).await;
    }
    let before = seqs_until(&mut bob, "busy", 50).await;
    drop(bob);
    let mut bob = server.connect("/ws?user=bob").await;
    let (_, epoch) = next_chat(&mut alice).await;
    bob.send(resume("busy", 50, &epoch)).await;
    for n in TOTAL / 2..TOTAL {
        alice.send(chat("busy", n)).await;
    }
    let answer = bob.recv_where(|f| f["id"] == "resume").await;
    assert_eq!(answer["data"]["recovered"], true, "{answer}");
    let after = seqs_until(&mut bob, "busy", TOTAL).await;
    let all: Vec<u64> = before.into_iter().chain(after).collect();
    assert_eq!(all, (1..=TOTAL).collect::<Vec<_>>(), "every message once, in order");
}

#[tokio::test]
async fn a_resume_that_cannot_be_served_says_why_and_where_the_stream_is() {
    let server = quiet(|c| c.recovery_window = 3).await;
    let mut alice = server.member("alice", "r").await;
    for n in 1..=6 {
        alice.send(chat("r", n)).await;
    }
    let (_, epoch) = next_chat(&mut alice).await;
    seqs_until(&mut alice, "r", 6).await;
    let mut bob = server.connect("/ws?user=bob").await;
    let too_old = bob.request(resume("r", 1, &epoch)).await;
    assert_eq!(
        too_old["data"],
        json!({"recovered": false, "reason": "too_old", "seq": 6, "epoch": epoch})
    );
    let recent = bob.request(resume("r", 4, &epoch)).await;
    assert_eq!(recent["data"]["recovered"], true, "4 is within the window of 3");
    assert_eq!(seqs_until(&mut bob, "r", 6).await, [5, 6]);
    let changed = bob.request(resume("r", 2, "another-epoch")).await;
    assert_eq!(changed["data"]["reason"], "epoch_changed");
    assert_eq!(changed["data"]["epoch"], epoch.as_str());
}

#[tokio::test]
async fn bad_resumes_get_bad_request() {
    let server = quiet(|_| {}).await;
    let mut alice = server.member("alice", "r").await;
    alice.send(chat("r", 1)).await;
    let (seq, epoch) = next_chat(&mut alice).await;
    for bad in [
        json!({"type": "join", "room": "r", "id": "resume", "data": {"since": {"seq": 1, "epoch": 7}}}),
        json!({"type": "join", "room": "r", "id": "resume", "data": {"since": {"seq": -1, "epoch": "e"}}}),
        json!({"type": "join", "room": "r", "id": "resume", "data": {"since": "soon"}}),
    ] {
        let answer = alice.request(bad.clone()).await;
        assert_eq!(
            (answer["type"].as_str(), answer["data"]["code"].as_str()),
            (Some("error"), Some("bad_request")),
            "{bad}"
        );
    }
    let pong = alice.request(json!({"type": "ping", "id": "p"})).await;
    assert_eq!(pong["type"], "pong", "the connection stays open");
    // A place beyond the stream is no error: the stream lost what the client saw (a restored
    // store), and the client takes the stream's place (config_backup tests the restore itself).
    let behind = alice.request(resume("r", seq + 5, &epoch)).await;
    assert_eq!(
        behind["data"],
        json!({"recovered": false, "reason": "behind", "seq": seq, "epoch": epoch})
    );
}

#[tokio::test]
async fn with_a_store_a_resume_beyond_the_window_and_across_a_restart_reads_the_store() {
    let dir = TempDir::new("resume-store");
    let url = dir.sqlite();
    let stored = |url: wsbroker::store::DatabaseUrl| {
        quiet(move |c| {
            c.database_url = url;
            c.recovery_window = 3;
        })
    };
    let mut server = stored(url.clone()).await;
    let mut alice = server.member("alice", "r").await;
    alice.send(json!({"type": "chat", "room": "r", "id": "m0", "data": {}})).await;
    let (first, epoch) = next_chat(&mut alice).await;
    assert_eq!(first, 1);
    for n in 1..=10 {
        let ack = alice
            .request(json!({"type": "chat", "room": "r", "id": format!("m{n}"), "data": {}}))
            .await;
        assert_eq!(ack["seq"], n + 1);
    }
    let mut bob = server.connect("/ws?user=bob").await;
    assert_eq!(bob.request(resume("r", 1, &epoch)).await["data"]["recovered"], true);
    assert_eq!(
        seqs_until(&mut bob, "r", 11).await,
        (2..=11).collect::<Vec<_>>(),
        "8 from the store, 3 from the window"
    );
    drop((alice, bob));
    assert!(server.shutdown().await);

    let server = stored(url).await;
    let mut carol = server.connect("/ws?user=carol").await;
    assert_eq!(
        carol.request(resume("r", 9, &epoch)).await["data"]["recovered"],
        true,
        "the stream outlived the broker"
    );
    assert_eq!(seqs_until(&mut carol, "r", 11).await, [10, 11]);
    let private = json!({"name": "team", "type": "private"});
    server.post("/api/v1/chat/rooms?user=alice", private).await;
    let refused = carol.request(resume("team", 0, "e")).await;
    assert_eq!(refused["data"]["code"], "bad_request", "a since for a room carol may not join");
}

/// A broker on a SQLite file in `dir` with a window of 3, and alice in room `r` with her first
/// message's seq and epoch.
async fn stored_window_of_3(dir: &TempDir) -> (TestServer, Client, u64, String) {
    let url = dir.sqlite();
    let server = quiet(move |c| {
        c.database_url = url;
        c.recovery_window = 3;
    })
    .await;
    let mut alice = server.member("alice", "r").await;
    alice.send(chat("r", 0)).await;
    let (first, epoch) = next_chat(&mut alice).await;
    (server, alice, first, epoch)
}

#[tokio::test]
async fn with_a_store_a_resume_right_after_a_burst_misses_none_not_yet_committed() {
    // Room messages go out before the writer commits them, so when a burst has pushed some out of
    // a window of 3, they may not be in the store yet: the resume must wait for them, not skip them.
    let dir = TempDir::new("resume-burst");
    let (server, mut alice, first, epoch) = stored_window_of_3(&dir).await;
    for round in 1..=20u64 {
        let last = first + round * 300;
        for n in 0..300 {
            alice.send(chat("r", n)).await;
        }
        seqs_until(&mut alice, "r", last).await;
        let mut bob = server.connect("/ws?user=bob").await;
        let since = last - 300;
        assert_eq!(bob.request(resume("r", since, &epoch)).await["data"]["recovered"], true);
        assert_eq!(
            seqs_until(&mut bob, "r", last).await,
            (since + 1..=last).collect::<Vec<_>>(),
            "round {round}: every message after the resume point, in order"
        );
    }
}

#[tokio::test]
async fn a_client_resumes_its_rooms_on_the_connect_url() {
    let server = quiet(|_| {}).await;
    let mut alice = server.member("alice", "dm:alice:bob").await;
    alice.send(chat("dm:alice:bob", 1)).await;
    let (last, epoch) = next_chat(&mut alice).await;
    for n in 2..=4 {
        alice.send(chat("dm:alice:bob", n)).await;
    }
    seqs_until(&mut alice, "dm:alice:bob", last + 3).await;
    let path = format!("/ws?user=bob&since=dm:alice:bob:{last}:{epoch}");
    let mut bob = server.connect(&path).await;
    let joined = bob.recv_type("joined").await;
    assert_eq!(
        (joined["room"].as_str(), &joined["data"]),
        (Some("dm:alice:bob"), &json!({"recovered": true}))
    );
    assert_eq!(
        seqs_until(&mut bob, "dm:alice:bob", last + 3).await,
        [last + 1, last + 2, last + 3]
    );
    assert!(
        server.try_connect("/ws?user=bob&since=r:x:e", None).await.is_err(),
        "a bad since is refused"
    );
}

#[tokio::test]
async fn with_a_store_a_resume_beyond_the_window_while_the_room_is_busy_is_recovered() {
    // While the store is read for the part before the window, the window slides on: the resume
    // must still be served (not `too_old`), every message once and in order.
    let dir = TempDir::new("resume-busy");
    let (server, mut alice, first, epoch) = stored_window_of_3(&dir).await;
    for n in 1..=200 {
        alice.send(chat("r", n)).await;
    }
    let mut last = *seqs_until(&mut alice, "r", first + 200).await.last().unwrap();
    for round in 0..15 {
        let mut bob = server.connect("/ws?user=bob").await;
        let since = last - 150;
        bob.send(resume("r", since, &epoch)).await;
        // A burst behind the resume, so the window slides while the store is read.
        for n in 0..100 {
            alice.send(chat("r", n)).await;
        }
        last += 100;
        let answer = bob.recv_where(|f| f["id"] == "resume").await;
        assert_eq!(answer["data"]["recovered"], true, "round {round}: {answer}");
        assert_eq!(
            seqs_until(&mut bob, "r", last).await,
            (since + 1..=last).collect::<Vec<_>>(),
            "round {round}: every message after the resume point, in order"
        );
        seqs_until(&mut alice, "r", last).await;
    }
}
