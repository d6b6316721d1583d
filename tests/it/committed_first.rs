//! A message with no room (a chat to everyone, an HTTP publish to a user) reaches nobody before it
//! is committed, as a room message does not: with the writer's insert held by a lock, nobody gets
//! it; once the lock goes, everyone does, and its sender gets the ack after. So nobody sees a
//! message that history lacks.

use hyper::StatusCode;
use serde_json::{json, Value};

use crate::common::{start_server_with, Client, TestServer, WAIT};
use crate::postgres_server::PostgresServer;

/// Holds `LOCK TABLE chat_messages` until told to let go: the writer's next insert waits for it.
struct HeldTable {
    release: std::sync::mpsc::Sender<()>,
    holder: tokio::task::JoinHandle<()>,
}

impl HeldTable {
    async fn hold(url: &str) -> Self {
        let url = url.to_owned();
        let (release, released) = std::sync::mpsc::channel::<()>();
        let (held_tx, held) = tokio::sync::oneshot::channel();
        let holder = tokio::task::spawn_blocking(move || {
            let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
            let mut tx = client.transaction().unwrap();
            tx.execute("LOCK TABLE chat_messages IN SHARE MODE", &[]).unwrap();
            held_tx.send(()).unwrap();
            released.recv().unwrap();
            tx.commit().unwrap();
        });
        held.await.unwrap();
        Self { release, holder }
    }

    /// Waits until a backend waits for a lock: the broker's writer, on this table.
    async fn until_the_writer_waits(&self, url: &str) {
        let url = url.to_owned();
        tokio::task::spawn_blocking(move || {
            let mut watcher = postgres::Client::connect(&url, postgres::NoTls).unwrap();
            let deadline = std::time::Instant::now() + WAIT;
            let waiting = "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'";
            while watcher.query_one(waiting, &[]).unwrap().get::<_, i64>(0) == 0 {
                assert!(std::time::Instant::now() < deadline, "the writer never waited");
                std::thread::yield_now();
            }
        })
        .await
        .unwrap();
    }

    async fn release(self) {
        self.release.send(()).unwrap();
        self.holder.await.unwrap();
    }
}

async fn server_on(url: &str) -> TestServer {
    let url = url.to_owned();
    start_server_with(move |c| {
        c.database_url = url.parse().unwrap();
        c.rate_limit = 0.0;
    })
    .await
}

/// Asks `client`'s shard for a pong: every frame its shard had for it comes first. None of them
/// may carry `content`.
async fn nothing_with(client: &mut Client, ping: &str, content: &str) {
    client.send(json!({"type": "ping", "id": ping})).await;
    loop {
        let frame = client.recv().await;
        assert_ne!(frame["data"]["content"], content, "seen before its commit: {frame}");
        if frame["type"] == "pong" && frame["id"] == ping {
            return;
        }
    }
}

/// How many rows the store holds of message `id`.
async fn stored_times(url: &str, id: &str) -> i64 {
    let (url, id) = (url.to_owned(), id.to_owned());
    tokio::task::spawn_blocking(move || {
        let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
        let count = "SELECT count(*) FROM chat_messages WHERE id = $1";
        client.query_one(count, &[&id]).unwrap().get::<_, i64>(0)
    })
    .await
    .unwrap()
}

fn to_everyone(id: &str) -> Value {
    json!({"type": "chat", "id": id, "data": {"content": id}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chat_to_everyone_goes_out_only_once_committed_and_is_acked_after() {
    let postgres = PostgresServer::start().await;
    let url = postgres.database("chat").await;
    let server = server_on(&url).await;
    let mut alice = server.connect("/ws?user=alice").await;
    let mut bob = server.connect("/ws?user=bob").await;
    assert_eq!(alice.request(to_everyone("before")).await["type"], "ack");
    bob.recv_where(|f| f["data"]["content"] == "before").await;

    let held = HeldTable::hold(&url).await;
    alice.send(to_everyone("held")).await;
    held.until_the_writer_waits(&url).await;
    // Alice's pong: her shard is done with the chat. Bob's: his shard had anything it was sent
    // for him before his ping, and so any fan-out of it.
    nothing_with(&mut alice, "a1", "held").await;
    nothing_with(&mut bob, "b1", "held").await;

    held.release().await;
    let got = bob.recv_where(|f| f["data"]["content"] == "held").await;
    assert_eq!((got["type"].as_str(), got.get("room")), (Some("chat"), None), "{got}");
    let first = alice.recv_where(|f| f["id"] == "held").await;
    assert_eq!(first["type"], "chat", "its sender gets it before its ack: {first}");
    let ack = alice.recv_where(|f| f["id"] == "held").await;
    assert_eq!(ack["type"], "ack", "{ack}");
    assert_eq!(stored_times(&url, "held").await, 1, "stored once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_publish_to_a_user_goes_out_only_once_committed() {
    let postgres = PostgresServer::start().await;
    let url = postgres.database("chat").await;
    let server = std::sync::Arc::new(server_on(&url).await);
    let mut bob = server.connect("/ws?user=bob").await;
    let notification = json!({"from": "system", "type": "notification", "data": {"content": "n"}});

    let held = HeldTable::hold(&url).await;
    let publishing = {
        let server = std::sync::Arc::clone(&server);
        tokio::spawn(
            async move { server.post("/api/v1/chat/users/bob/messages", notification).await },
        )
    };
    held.until_the_writer_waits(&url).await;
    nothing_with(&mut bob, "b1", "n").await;
    assert!(!publishing.is_finished(), "answered before its commit");

    held.release().await;
    let (status, body) = publishing.await.unwrap();
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let got = bob.recv_type("notification").await;
    assert_eq!(
        (got["id"].as_str(), got["data"]["content"].as_str()),
        (body["id"].as_str(), Some("n"))
    );
}
