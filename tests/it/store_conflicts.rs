//! Two writers on one PostgreSQL database (two instances of a cluster, or the test standing in for
//! the other) that take the same messages in opposite orders: PostgreSQL aborts one transaction as
//! a deadlock's victim. The writer retries its batch at once, with the store up, so no chat is
//! refused for it. And the writer takes its messages' keys in key order, whatever their order in
//! the room's stream, so that two writers holding the same messages (a chat resent through another
//! instance, numbered again there) never wait for each other in a cycle.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::{start_server_with, Client, TestServer, WAIT};
use crate::postgres_server::PostgresServer;

fn chat(id: &str) -> Value {
    json!({"type": "chat", "room": "r", "id": id, "data": {"content": id}})
}

/// The other writer's own insert of alice's message `id` in room `r`.
fn insert(tx: &mut postgres::Transaction<'_>, id: &str) {
    tx.execute(
        "INSERT INTO chat_messages (id, room, sender, message_type, data, created_at, updated_at) \
         VALUES ($1, 'r', 'alice', 'chat', '{}', 0, 0)",
        &[&id],
    )
    .unwrap();
}

/// How many backends of the database wait for a lock.
fn waiting(client: &mut postgres::Client) -> i64 {
    let waiting = "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'";
    client.query_one(waiting, &[]).unwrap().get(0)
}

/// Waits until a backend of the database waits for a lock (the broker's writer, on `tx`'s row).
fn until_a_writer_waits(client: &mut postgres::Client) {
    let deadline = Instant::now() + WAIT;
    while waiting(client) == 0 {
        assert!(Instant::now() < deadline, "the writer never waited for the other's row");
        std::thread::yield_now();
    }
}

/// A broker on a PostgreSQL of its own whose writer gathers chats 300 ms into one batch, and alice
/// in room `r` with one chat acked (the room and its stream exist).
async fn broker_on_postgres() -> (PostgresServer, String, TestServer, Client) {
    let postgres = PostgresServer::start().await;
    let url = postgres.database("chat").await;
    let server = start_server_with({
        let url = url.clone();
        move |c| {
            c.database_url = url.parse().unwrap();
            c.rate_limit = 0.0;
            c.store_linger = Duration::from_millis(300);
        }
    })
    .await;
    let mut alice = server.member("alice", "r").await;
    assert_eq!(alice.request(chat("before")).await["type"], "ack");
    (postgres, url, server, alice)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_aborted_as_a_deadlocks_victim_is_retried_at_once_and_no_chat_is_refused() {
    // Both chats in one batch: the writer inserts `first`, then `second`.
    let (_postgres, url, server, mut alice) = broker_on_postgres().await;

    // The other writer holds `second`; the broker's writer takes `first` and waits for `second`;
    // then the other asks for `first`: a cycle. Its deadlock_timeout is the longer, so PostgreSQL
    // picks the broker's transaction as the victim; the other's insert goes on, and it rolls back.
    let (go_tx, go) = std::sync::mpsc::channel::<()>();
    let (held_tx, held) = tokio::sync::oneshot::channel();
    let other = tokio::task::spawn_blocking(move || {
        let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
        let mut watcher = postgres::Client::connect(&url, postgres::NoTls).unwrap();
        let mut tx = client.transaction().unwrap();
        tx.execute("SET LOCAL deadlock_timeout = '60s'", &[]).unwrap();
        insert(&mut tx, "second");
        held_tx.send(()).unwrap();
        go.recv().unwrap();
        until_a_writer_waits(&mut watcher);
        insert(&mut tx, "first");
        tx.rollback().unwrap();
    });
    held.await.unwrap();
    alice.send(chat("first")).await;
    alice.send(chat("second")).await;
    go_tx.send(()).unwrap();
    let answer = |f: &Value| f["type"] == "ack" || f["type"] == "error";
    for id in ["first", "second"] {
        let reply = alice.recv_where(answer).await;
        assert_eq!(
            (reply["type"].as_str(), reply["id"].as_str()),
            (Some("ack"), Some(id)),
            "{reply}"
        );
    }
    other.await.unwrap();

    assert_eq!(
        server.metric("wsbroker_store_failures_total").await,
        0,
        "the deadlock was no failure"
    );
    assert!(server.metric("wsbroker_store_conflicts_total").await >= 1, "the deadlock happened");
    let down = r#"wsbroker_unavailable_total{cause="store_down"}"#;
    assert_eq!(server.metric(down).await, 0);
    let page = server.get("/api/v1/chat/rooms/r/messages?limit=10").await.1;
    let ids: Vec<&str> =
        page["messages"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["before", "first", "second"], "each stored once, in order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_writer_takes_its_messages_keys_in_key_order_and_numbers_them_in_stream_order() {
    // Both chats in one batch: `b` first in the stream, `a` first by key.
    let (_postgres, url, server, mut alice) = broker_on_postgres().await;

    // The other writer holds `b`; the broker's writer, given `b` then `a`, takes `a` first and
    // waits for `b`. A probe inserting `a` then waits for the writer: had the writer gone in
    // stream order, it would wait for `b` holding nothing, and the probe would go straight in.
    let (go_tx, go) = std::sync::mpsc::channel::<()>();
    let (held_tx, held) = tokio::sync::oneshot::channel();
    let other = tokio::task::spawn_blocking(move || {
        let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
        let mut watcher = postgres::Client::connect(&url, postgres::NoTls).unwrap();
        let mut tx = client.transaction().unwrap();
        insert(&mut tx, "b");
        held_tx.send(()).unwrap();
        go.recv().unwrap();
        until_a_writer_waits(&mut watcher);
        let probe = std::thread::spawn(move || {
            let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
            let mut tx = client.transaction().unwrap();
            tx.execute(
                "INSERT INTO chat_messages (id, room, sender, message_type, data, created_at, \
                 updated_at) VALUES ('a', 'r', 'alice', 'chat', '{}', 0, 0) \
                 ON CONFLICT (room, sender, id) DO NOTHING",
                &[],
            )
            .unwrap();
            tx.rollback().unwrap();
        });
        let deadline = Instant::now() + WAIT;
        let probe_waited = loop {
            if waiting(&mut watcher) >= 2 {
                break true;
            }
            if probe.is_finished() {
                break false;
            }
            assert!(Instant::now() < deadline, "the probe neither waited nor went in");
            std::thread::yield_now();
        };
        tx.rollback().unwrap();
        probe.join().unwrap();
        probe_waited
    });
    held.await.unwrap();
    alice.send(chat("b")).await;
    alice.send(chat("a")).await;
    go_tx.send(()).unwrap();
    assert!(
        other.await.unwrap(),
        "the probe inserted `a` at once: the writer waited for `b` without having taken `a`"
    );

    let answer = |f: &Value| f["type"] == "ack" || f["type"] == "error";
    for id in ["b", "a"] {
        let reply = alice.recv_where(answer).await;
        assert_eq!((reply["type"].as_str(), reply["id"].as_str()), (Some("ack"), Some(id)));
    }
    let page = server.get("/api/v1/chat/rooms/r/messages?limit=10").await.1;
    let ids: Vec<&str> =
        page["messages"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["before", "b", "a"], "history keeps the stream's order");
}
