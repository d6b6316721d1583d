//! Many clients joining, leaving, reconnecting and publishing at once, spread over more shards than
//! cores. Afterwards: every connection got every message it was surely a member for, exactly once and
//! in each publisher's order, and the cache (users, rooms, directory) is empty.
//!
//! "Surely a member" for a message M: the connection's join was acked before M was sent, and it did not
//! ask to leave (or disconnect) before M was acked. Around those edges delivery may go either way, but
//! never twice.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::sync::Barrier;
use tokio::time::Instant;

use crate::common::{start_server_with, Client, Rng, TestServer};

const USERS: usize = 32;
const ROOMS: usize = 4;
const ACTIONS: usize = 250;
const COORDINATOR: &str = "coordinator";

fn room_name(room: usize) -> String {
    format!("room{room}")
}

/// One connection's lifetime: `(user, nth connection of that user)`.
type ConnKey = (usize, usize);

#[derive(Debug)]
struct Sent {
    publisher: usize,
    seq: u64,
    room: usize,
    sent_at: Instant,
    acked_at: Instant,
}

#[derive(Debug)]
struct Window {
    conn: ConnKey,
    room: usize,
    joined_at: Instant,
    left_at: Option<Instant>,
}

/// A chat frame as received: `(publisher, seq, room)`; the coordinator's markers use publisher `USERS`.
type Receipt = (usize, u64, usize);

#[derive(Debug, Default)]
struct Log {
    sent: Vec<Sent>,
    windows: Vec<Window>,
    received: HashMap<ConnKey, Vec<Receipt>>,
}

/// Parses a chat frame's content `"publisher:seq"` and room.
fn receipt(frame: &Value) -> Option<Receipt> {
    if frame["type"] != "chat" {
        return None;
    }
    let (publisher, seq) = frame["data"]["content"].as_str()?.split_once(':')?;
    let room = frame["room"].as_str()?.strip_prefix("room")?.parse().ok()?;
    Some((publisher.parse().ok()?, seq.parse().ok()?, room))
}

enum Step {
    Publish,
    Join,
    Leave,
    Ping,
    Disconnect,
}

struct UserRun {
    user: usize,
    rng: Rng,
    client: Option<(ConnKey, Client)>,
    connections: usize,
    open: HashMap<usize, usize>,
    seq: u64,
    log: Log,
}

impl UserRun {
    /// Sends `request` and records every chat frame until the reply with its id.
    async fn request(&mut self, request: Value) -> Value {
        let id = request["id"].as_str().unwrap().to_owned();
        let (conn, client) = self.client.as_mut().unwrap();
        client.send(request).await;
        loop {
            let frame = client.recv().await;
            if let Some(receipt) = receipt(&frame) {
                self.log.received.entry(*conn).or_default().push(receipt);
            }
            if frame["id"] == id.as_str() && frame["type"] != "chat" {
                return frame;
            }
        }
    }

    /// The next action: publish 45 %, join 25 %, leave 18 %, ping 6 %, disconnect 6 % (publish and
    /// leave only while in a room).
    fn pick(&mut self, in_a_room: bool) -> Step {
        match self.rng.below(100) {
            roll if roll < 45 && in_a_room => Step::Publish,
            roll if roll < 70 => Step::Join,
            roll if roll < 88 && in_a_room => Step::Leave,
            roll if roll < 94 => Step::Ping,
            _ => Step::Disconnect,
        }
    }

    async fn step(&mut self, server: &TestServer) {
        if self.client.is_none() {
            self.connections += 1;
            let client = server.connect(&format!("/ws?user=u{}", self.user)).await;
            self.client = Some(((self.user, self.connections), client));
        }
        let conn = self.client.as_ref().unwrap().0;
        let joined: Vec<usize> = self.open.keys().copied().collect();
        match self.pick(!joined.is_empty()) {
            Step::Publish => {
                let room = joined[self.rng.below(joined.len())];
                self.seq += 1;
                let content = format!("{}:{}", self.user, self.seq);
                let id = format!("m-{}-{}", self.user, self.seq);
                let sent_at = Instant::now();
                let chat = json!({"type": "chat", "room": room_name(room), "id": id, "data": {"content": content}});
                assert_eq!(self.request(chat).await["type"], "ack");
                let (publisher, seq) = (self.user, self.seq);
                self.log.sent.push(Sent {
                    publisher,
                    seq,
                    room,
                    sent_at,
                    acked_at: Instant::now(),
                });
            }
            Step::Join => {
                let room = self.rng.below(ROOMS);
                if self.open.contains_key(&room) {
                    return;
                }
                let join = json!({"type": "join", "room": room_name(room), "id": format!("j{}", self.seq)});
                assert_eq!(self.request(join).await["type"], "ack");
                self.open.insert(room, self.log.windows.len());
                self.log.windows.push(Window {
                    conn,
                    room,
                    joined_at: Instant::now(),
                    left_at: None,
                });
            }
            Step::Leave => {
                let room = joined[self.rng.below(joined.len())];
                let window = self.open.remove(&room).unwrap();
                self.log.windows[window].left_at = Some(Instant::now());
                let leave = json!({"type": "leave", "room": room_name(room), "id": format!("l{}", self.seq)});
                assert_eq!(self.request(leave).await["type"], "ack");
            }
            Step::Ping => {
                let pong = self.request(json!({"type": "ping", "id": "p"})).await;
                assert_eq!(pong["type"], "pong");
            }
            Step::Disconnect => self.disconnect().await,
        }
    }

    /// Closes the connection. Frames still queued for a client when it closes are dropped, so the
    /// membership windows end before a ping round trip: its pong comes after everything routed to
    /// this connection's shard before the ping (the shard drains its deliveries before a command).
    async fn disconnect(&mut self) {
        let now = Instant::now();
        for (_, window) in self.open.drain() {
            self.log.windows[window].left_at = Some(now);
        }
        let pong = self.request(json!({"type": "ping", "id": "bye"})).await;
        assert_eq!(pong["type"], "pong");
        let (conn, mut client) = self.client.take().unwrap();
        client.ws.close(None).await.unwrap();
        while let Some(Ok(message)) = client.ws.next().await {
            let frame = message.into_text().ok().and_then(|t| serde_json::from_str(&t).ok());
            if let Some(receipt) = frame.as_ref().and_then(receipt) {
                self.log.received.entry(conn).or_default().push(receipt);
            }
        }
    }

    /// After every publisher is done: read until the coordinator's marker of every joined room.
    async fn drain_until_markers(&mut self) {
        let mut missing: HashSet<usize> = self.open.keys().copied().collect();
        while !missing.is_empty() {
            let (conn, client) = self.client.as_mut().unwrap();
            let frame = client.recv().await;
            if let Some(receipt) = receipt(&frame) {
                self.log.received.entry(*conn).or_default().push(receipt);
                if receipt.0 == USERS {
                    missing.remove(&receipt.2);
                }
            }
        }
        if self.client.is_some() {
            self.disconnect().await;
        }
    }
}

/// Waits at the barrier, but not forever: a task that panicked never arrives.
async fn wait_for_everyone(barrier: &Barrier) {
    tokio::time::timeout(crate::common::WAIT * 12, barrier.wait())
        .await
        .expect("every user reached the barrier");
}

async fn run_user(server: Arc<TestServer>, user: usize, barrier: Arc<Barrier>) -> Log {
    let rng = Rng(0x9E37_79B9_7F4A_7C15 ^ ((user as u64 + 1) * 0x1000_0001));
    let mut run = UserRun {
        user,
        rng,
        client: None,
        connections: 0,
        open: HashMap::new(),
        seq: 0,
        log: Log::default(),
    };
    for _ in 0..ACTIONS {
        run.step(&server).await;
    }
    wait_for_everyone(&barrier).await;
    run.drain_until_markers().await;
    run.log
}

/// The coordinator is in every room for the whole run; it reads continuously and, once all users
/// are done publishing, sends one marker per room.
async fn coordinate(client: Client, barrier: Arc<Barrier>) -> Vec<Receipt> {
    let (mut sink, mut stream) = client.ws.split();
    let reader = tokio::spawn(async move {
        let mut receipts = Vec::new();
        let mut markers = 0;
        while markers < ROOMS {
            let message = tokio::time::timeout(crate::common::WAIT * 6, stream.next())
                .await
                .unwrap()
                .unwrap()
                .unwrap();
            let Ok(text) = message.into_text() else {
                continue;
            };
            if let Some(receipt) = serde_json::from_str(&text).ok().as_ref().and_then(receipt) {
                markers += usize::from(receipt.0 == USERS);
                receipts.push(receipt);
            }
        }
        receipts
    });
    wait_for_everyone(&barrier).await;
    for room in 0..ROOMS {
        let marker = json!({"type": "chat", "room": room_name(room), "data": {"content": format!("{USERS}:{room}")}});
        sink.send(marker.to_string().into()).await.unwrap();
    }
    let receipts = reader.await.unwrap();
    sink.close().await.unwrap();
    receipts
}

fn check_exactly_once_in_order(conn: &str, receipts: &[Receipt]) {
    let mut seen = HashSet::new();
    let mut last_seq: HashMap<usize, u64> = HashMap::new();
    for &(publisher, seq, room) in receipts {
        assert!(seen.insert((publisher, seq)), "{conn} got {publisher}:{seq} twice");
        if publisher < USERS {
            let last = last_seq.insert(publisher, seq).unwrap_or(0);
            assert!(
                seq > last,
                "{conn} got {publisher}:{seq} after {publisher}:{last} (room {room})"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_churn_delivers_exactly_once_in_order_and_leaves_the_cache_empty() {
    let server = Arc::new(
        start_server_with(|c| {
            c.shards = Some(4);
            c.send_buffer = 16_384;
            c.rate_limit = 0.0;
        })
        .await,
    );
    let mut coordinator = server.connect(&format!("/ws?user={COORDINATOR}")).await;
    for room in 0..ROOMS {
        coordinator.join(&room_name(room)).await;
    }
    let barrier = Arc::new(Barrier::new(USERS + 1));
    let users: Vec<_> = (0..USERS)
        .map(|u| tokio::spawn(run_user(Arc::clone(&server), u, Arc::clone(&barrier))))
        .collect();
    let coordinator = coordinate(coordinator, barrier).await;
    let mut log = Log::default();
    for user in users {
        let user_log = user.await.unwrap();
        log.sent.extend(user_log.sent);
        log.windows.extend(user_log.windows);
        log.received.extend(user_log.received);
    }

    check_exactly_once_in_order(COORDINATOR, &coordinator);
    let coordinator: HashSet<(usize, u64)> = coordinator.iter().map(|r| (r.0, r.1)).collect();
    for sent in &log.sent {
        assert!(
            coordinator.contains(&(sent.publisher, sent.seq)),
            "the coordinator missed {sent:?}"
        );
    }
    for (conn, receipts) in &log.received {
        check_exactly_once_in_order(&format!("{conn:?}"), receipts);
    }
    let received: HashMap<ConnKey, HashSet<(usize, u64)>> = log
        .received
        .iter()
        .map(|(conn, r)| (*conn, r.iter().map(|r| (r.0, r.1)).collect()))
        .collect();
    let mut expected = 0;
    for sent in &log.sent {
        let surely_members = log.windows.iter().filter(|w| {
            w.room == sent.room
                && w.joined_at < sent.sent_at
                && w.left_at.is_none_or(|left| left > sent.acked_at)
        });
        for window in surely_members {
            expected += 1;
            let got =
                received.get(&window.conn).is_some_and(|r| r.contains(&(sent.publisher, sent.seq)));
            assert!(got, "{:?} was a member of room{} but missed {sent:?}", window.conn, sent.room);
        }
    }
    eprintln!("STATS sent={} checked={} windows={}", log.sent.len(), expected, log.windows.len());
    assert!(
        log.sent.len() > 300 && expected > 1000,
        "too little traffic: {} sent, {expected} checked",
        log.sent.len()
    );

    server.wait_metric("wsbroker_connections_open", 0).await;
    server.wait_metric("wsbroker_rooms", 0).await;
    assert_eq!(server.get("/api/v1/chat/online").await.1, json!({"users": []}));
    for room in 0..ROOMS {
        let (_, online) =
            server.get(&format!("/api/v1/chat/rooms/{}/online", room_name(room))).await;
        assert_eq!(online["users"], json!([]));
    }
    assert_eq!(server.metric("wsbroker_slow_consumer_evictions_total").await, 0);
}
