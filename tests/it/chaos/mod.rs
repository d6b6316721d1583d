//! Chaos: 50 clients in 5 rooms of a two-instance cluster on one PostgreSQL keep publishing, and
//! each drops and resumes with `since` at random moments, on either instance, and resends every
//! chat it has no answer for (same id), wherever it lands. One instance is restarted gracefully
//! (SIGTERM), the other killed (SIGKILL) and started again; in the second run Redis is restarted
//! too.
//!
//! At the end every client must have every message of each of its rooms once and in seq order, or
//! have been told `recovered:false`; that count must be zero without a Redis restart, and every
//! acked message must have reached every member and be stored once. `CHAOS_SECONDS` makes it longer
//! (`scripts/chaos.sh`); the summary is printed.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;

use crate::common::{spawn_broker, BrokerProcess, TestServer};
use crate::postgres_server::PostgresServer;
use crate::redis_server::RedisServer;

const CLIENTS: usize = 50;
const ROOMS: usize = 5;
/// How long the final messages may take to reach everyone.
const SETTLE: Duration = Duration::from_secs(20);

mod client;
pub(crate) mod cluster;
mod failover;
mod rolling;
mod seen;
mod soak;

use client::{client, Report, Shared};

struct Run {
    redis: RedisServer,
    _postgres: PostgresServer,
    database: String,
    brokers: Vec<(BrokerProcess, TestServer)>,
}

/// Instance `id` of the run's cluster, once it is ready.
async fn start_instance(
    redis: &RedisServer,
    database: &str,
    id: &str,
) -> (BrokerProcess, TestServer) {
    let url = redis.url();
    let args = ["--redis-url", &url, "--instance-id", id, "--database-url", database];
    let more = [
        "--recovery-window",
        "1000",
        "--rate-limit",
        "0",
        "--presence-heartbeat",
        "1s",
        "--shards",
        "2",
    ];
    let (process, server) = spawn_broker(&[&args[..], &more[..]].concat()).await;
    server.wait_get("/readyz", |status, _| status == 200).await;
    (process, server)
}

async fn start_cluster() -> Run {
    let (redis, postgres) = (RedisServer::start().await, PostgresServer::start().await);
    let database = postgres.database("chaos").await;
    let mut brokers = Vec::new();
    for id in ["a", "b"] {
        brokers.push(start_instance(&redis, &database, id).await);
    }
    Run { redis, _postgres: postgres, database, brokers }
}

impl Run {
    /// Stops instance `at` (gracefully: SIGTERM and its exit; or SIGKILL), its clients moving to
    /// the others, then starts it again under the same id, where clients may go again.
    async fn restart(&mut self, at: usize, graceful: bool, shared: &Shared) {
        let (mut process, server) = self.brokers.remove(at);
        shared.live.lock().unwrap().retain(|addr| *addr != server.addr);
        if graceful {
            let pid = process.0.id().to_string();
            let status = std::process::Command::new("kill").args(["-TERM", &pid]).status();
            assert!(status.unwrap().success());
        } else {
            let _ = process.0.kill();
        }
        let exited = tokio::task::spawn_blocking(move || process.0.wait());
        let status = tokio::time::timeout(SETTLE, exited).await.expect("the instance exited");
        assert!(!graceful || status.unwrap().unwrap().success(), "a graceful stop exits 0");
        let id = if at == 0 { "a" } else { "b" };
        let started = start_instance(&self.redis, &self.database, id).await;
        shared.live.lock().unwrap().push(started.1.addr);
        self.brokers.insert(at, started);
    }
}

#[derive(Debug)]
struct Summary {
    clients: usize,
    delivered: usize,
    acked: usize,
    resumes: u64,
    refused: u64,
    not_recovered: u64,
    reasons: Vec<(String, u64)>,
    violations: Vec<String>,
    lost_acked: usize,
    /// Acked messages not stored exactly once.
    unstored: usize,
    /// Chats sent again (same id) after a drop.
    resent: u64,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} clients, {} messages delivered, {} acked, {} resumes, {} refused unavailable, \
             {} not recovered {:?}, {} violations, {} acked messages lost, {} resent, \
             {} acked not stored once",
            self.clients,
            self.delivered,
            self.acked,
            self.resumes,
            self.refused,
            self.not_recovered,
            self.reasons,
            self.violations.len(),
            self.lost_acked,
            self.resent,
            self.unstored
        )
    }
}

/// Runs the chaos for `seconds`: the first instance is stopped gracefully and started again at
/// 20 %, the second killed and started again at 40 %, Redis restarted at 60 % when asked.
async fn chaos(seconds: u64, restart_redis: bool) -> Summary {
    let mut run = start_cluster().await;
    let live = run.brokers.iter().map(|(_, server)| server.addr).collect();
    let rooms = |n: usize| {
        vec![format!("room-{}", n % ROOMS), format!("room-{}", (n / ROOMS + n + 1) % ROOMS)]
    };
    let crowd = Crowd::start(live, true, (CLIENTS, CLIENTS), &rooms).await;
    let shared = Arc::clone(&crowd.shared);
    let duration = Duration::from_secs(seconds);
    tokio::time::sleep(duration / 5).await;
    run.restart(0, true, &shared).await;
    tokio::time::sleep(duration / 5).await;
    run.restart(1, false, &shared).await;
    if restart_redis {
        tokio::time::sleep(duration / 5).await;
        run.redis.stop();
        let survivor = &run.brokers[0].1;
        survivor.wait_get("/readyz", |status, _| status == 503).await;
        run.redis.restart().await;
        survivor.wait_get("/readyz", |status, _| status == 200).await;
        tokio::time::sleep(duration * 2 / 5).await;
    } else {
        tokio::time::sleep(duration * 3 / 5).await;
    }
    let survivor = TestServer::attach(run.brokers[0].1.addr);
    crowd.wind_down(&survivor, (&rooms, ROOMS)).await
}

/// Waits until each of `clients` clients has said it got where `what` says.
async fn everyone(
    progressed: &mut tokio::sync::mpsc::UnboundedReceiver<()>,
    clients: usize,
    what: &str,
) {
    let all = async {
        for _ in 0..clients {
            progressed.recv().await;
        }
    };
    tokio::time::timeout(SETTLE, all).await.unwrap_or_else(|_| panic!("every client {what}"));
}

/// A run's clients, with what they share.
struct Crowd {
    shared: Arc<Shared>,
    clients: Vec<tokio::task::JoinHandle<Report>>,
    progressed: tokio::sync::mpsc::UnboundedReceiver<()>,
}

impl Crowd {
    /// `count` clients connecting to `live` (each to `rooms(n)`), dropping at random when `drops`,
    /// the first `publishers` chatting; returns once every one has joined and chats go.
    async fn start(
        live: Vec<SocketAddr>,
        drops: bool,
        (count, publishers): (usize, usize),
        rooms: &dyn Fn(usize) -> Vec<String>,
    ) -> Self {
        let (progress, mut progressed) = tokio::sync::mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            live: Mutex::new(live),
            publishing: AtomicBool::new(false),
            chaos: AtomicBool::new(true),
            drops,
            publishers,
            progress,
            ends: Mutex::new(None),
            phase: tokio::sync::watch::Sender::new(0),
        });
        let clients =
            (0..count).map(|n| tokio::spawn(client(n, rooms(n), Arc::clone(&shared)))).collect();
        everyone(&mut progressed, count, "joined its rooms").await;
        shared.publishing.store(true, SeqCst);
        shared.phase.send_replace(1);
        Self { shared, clients, progressed }
    }

    /// [`wind_down`] of these clients.
    async fn wind_down(
        mut self,
        front: &TestServer,
        rooms: (&dyn Fn(usize) -> Vec<String>, usize),
    ) -> Summary {
        wind_down(&self.shared, self.clients, &mut self.progressed, front, rooms).await
    }
}

/// The end of a run: the chaos stops, every client comes back, each of the `room_count` rooms
/// gets a last message (posted through `front`), and the clients' reports are summed up with what
/// `front` stored.
async fn wind_down(
    shared: &Shared,
    clients: Vec<tokio::task::JoinHandle<Report>>,
    progressed: &mut tokio::sync::mpsc::UnboundedReceiver<()>,
    front: &TestServer,
    (rooms, room_count): (&dyn Fn(usize) -> Vec<String>, usize),
) -> Summary {
    shared.chaos.store(false, SeqCst);
    shared.phase.send_replace(2);
    everyone(progressed, clients.len(), "connected again").await;
    let mut ends = Vec::new();
    for room in 0..room_count {
        let path = format!("/api/v1/chat/rooms/room-{room}/messages");
        let (status, answer) =
            front.post(&path, json!({"type": "chat", "data": {"content": "end"}})).await;
        assert_eq!(status, 202, "the last message of room-{room}: {answer}");
        ends.push(answer["id"].as_str().unwrap().to_owned());
    }
    *shared.ends.lock().unwrap() = Some(ends);
    shared.phase.send_replace(3);
    let mut reports = Vec::new();
    for client in clients {
        let finished = tokio::time::timeout(SETTLE * 2, client).await;
        reports.push(finished.expect("a client finished").unwrap());
    }
    let mut summary = summarize(&reports, rooms);
    summary.unstored = unstored(front, &reports, room_count).await;
    summary
}

/// The ids of every message stored in `room`, over the history API, page by page.
async fn stored_ids(server: &TestServer, room: &str) -> Vec<String> {
    let (mut ids, mut before) = (Vec::new(), None::<String>);
    loop {
        let cursor = before.as_ref().map(|b| format!("&before={b}")).unwrap_or_default();
        let path = format!("/api/v1/chat/rooms/{room}/messages?limit=100{cursor}");
        let (status, page) = server.get(&path).await;
        assert_eq!(status, 200, "{path}: {page}");
        let messages = page["messages"].as_array().unwrap();
        ids.extend(messages.iter().map(|m| m["id"].as_str().unwrap().to_owned()));
        match page["next_before"].as_str() {
            Some(next) => before = Some(next.to_owned()),
            None => return ids,
        }
    }
}

/// How many acked messages are not stored exactly once.
async fn unstored(server: &TestServer, reports: &[Report], room_count: usize) -> usize {
    let acked: HashSet<&(String, String)> = reports.iter().flat_map(|r| r.acked.iter()).collect();
    let mut wrong = 0;
    for room in 0..room_count {
        let room = format!("room-{room}");
        let mut counts: HashMap<String, usize> = HashMap::new();
        for id in stored_ids(server, &room).await {
            *counts.entry(id).or_default() += 1;
        }
        let once = |id: &String| counts.get(id) == Some(&1);
        wrong += acked.iter().filter(|(r, id)| *r == room && !once(id)).count();
    }
    wrong
}

fn summarize(reports: &[Report], rooms: &dyn Fn(usize) -> Vec<String>) -> Summary {
    let acked: HashSet<&(String, String)> = reports.iter().flat_map(|r| r.acked.iter()).collect();
    let mut lost_acked = 0;
    for (n, report) in reports.iter().enumerate() {
        for room in rooms(n) {
            let Some(view) = report.rooms.get(&room) else { continue };
            let missing =
                acked.iter().filter(|(r, id)| *r == room && !view.ids.contains(id)).count();
            if report.not_recovered == 0 {
                lost_acked += missing;
            }
        }
    }
    Summary {
        clients: reports.len(),
        delivered: reports.iter().flat_map(|r| r.rooms.values()).map(|v| v.ids.len()).sum(),
        acked: acked.len(),
        resumes: reports.iter().map(|r| r.resumes).sum(),
        refused: reports.iter().map(|r| r.refused).sum(),
        not_recovered: reports.iter().map(|r| r.not_recovered).sum(),
        reasons: {
            let mut reasons: HashMap<String, u64> = HashMap::new();
            for (reason, count) in reports.iter().flat_map(|r| r.reasons.iter()) {
                *reasons.entry(reason.clone()).or_default() += count;
            }
            let mut reasons: Vec<(String, u64)> = reasons.into_iter().collect();
            reasons.sort();
            reasons
        },
        violations: reports.iter().flat_map(|r| r.violations.iter().cloned()).collect(),
        lost_acked,
        unstored: 0,
        resent: reports.iter().map(|r| r.resent).sum(),
    }
}

fn seconds(default: u64) -> u64 {
    std::env::var("CHAOS_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(default)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_random_resumes_and_a_killed_instance_lose_nothing() {
    let summary = chaos(seconds(6), false).await;
    println!("chaos (instance killed): {summary}");
    assert!(summary.resumes > CLIENTS as u64, "clients dropped and resumed: {summary}");
    assert!(summary.acked > 500, "traffic flowed: {summary}");
    let first: Vec<&String> = summary.violations.iter().take(5).collect();
    assert!(first.is_empty(), "once each, in seq order: {first:?}");
    assert_eq!(summary.not_recovered, 0, "every resume recovered: {summary}");
    assert_eq!(summary.lost_acked, 0, "every acked message reached every member: {summary}");
    assert_eq!(summary.unstored, 0, "every acked message is stored once: {summary}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_with_a_redis_restart_keeps_order_and_says_what_it_could_not_recover() {
    let summary = chaos(seconds(6), true).await;
    println!("chaos (instance killed, redis restarted): {summary}");
    assert!(summary.resumes > CLIENTS as u64, "clients dropped and resumed: {summary}");
    let first: Vec<&String> = summary.violations.iter().take(5).collect();
    assert!(first.is_empty(), "once each, in seq order: {first:?}");
    assert!(summary.not_recovered > 0, "Redis lost the streams, and the clients were told");
    assert_eq!(summary.lost_acked, 0, "clients never told lost nothing acked: {summary}");
    assert_eq!(summary.unstored, 0, "every acked message is stored once: {summary}");
}
