//! Chaos: 50 clients in 5 rooms of a two-instance cluster keep publishing, and each drops and
//! resumes with `since` at random moments, on either instance. One instance is killed (its clients
//! move to the other); in the second run Redis is restarted too.
//!
//! At the end every client must have every message of each of its rooms once and in seq order, or
//! have been told `recovered:false`; that count must be zero without a Redis restart, and every
//! acked message must have reached every member. `CHAOS_SECONDS` makes it longer
//! (`scripts/chaos.sh`); the summary is printed.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;

use crate::common::{spawn_broker, BrokerProcess, TestServer};
use crate::redis_server::RedisServer;

const CLIENTS: usize = 50;
const ROOMS: usize = 5;
/// How long the final messages may take to reach everyone.
const SETTLE: Duration = Duration::from_secs(20);

mod client;

use client::{client, Report, Shared};

struct Run {
    redis: RedisServer,
    brokers: Vec<(BrokerProcess, TestServer)>,
}

async fn start_cluster() -> Run {
    let redis = RedisServer::start().await;
    let url = redis.url();
    let mut brokers = Vec::new();
    for id in ["a", "b"] {
        let args = [
            "--redis-url",
            &url,
            "--instance-id",
            id,
            "--database-url",
            "none",
            "--recovery-window",
            "1000",
        ];
        let more = ["--rate-limit", "0", "--presence-heartbeat", "1s", "--shards", "2"];
        brokers.push(spawn_broker(&[&args[..], &more[..]].concat()).await);
    }
    for (_, server) in &brokers {
        server.wait_get("/readyz", |status, _| status == 200).await;
    }
    Run { redis, brokers }
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
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} clients, {} messages delivered, {} acked, {} resumes, {} refused while Redis was away, \
             {} not recovered {:?}, {} violations, {} acked messages lost",
            self.clients,
            self.delivered,
            self.acked,
            self.resumes,
            self.refused,
            self.not_recovered,
            self.reasons,
            self.violations.len(),
            self.lost_acked
        )
    }
}

/// Runs the chaos for `seconds`: the second instance is killed at 40 %, Redis restarted at 60 %
/// when asked.
async fn chaos(seconds: u64, restart_redis: bool) -> Summary {
    let mut run = start_cluster().await;
    let live = run.brokers.iter().map(|(_, server)| server.addr).collect();
    let (progress, mut progressed) = tokio::sync::mpsc::unbounded_channel();
    let shared = Arc::new(Shared {
        live: Mutex::new(live),
        publishing: AtomicBool::new(false),
        chaos: AtomicBool::new(true),
        progress,
        ends: Mutex::new(None),
        phase: tokio::sync::watch::Sender::new(0),
    });
    let rooms = |n: usize| {
        vec![format!("room-{}", n % ROOMS), format!("room-{}", (n / ROOMS + n + 1) % ROOMS)]
    };
    let clients: Vec<_> =
        (0..CLIENTS).map(|n| tokio::spawn(client(n, rooms(n), Arc::clone(&shared)))).collect();
    let everyone = async {
        for _ in 0..CLIENTS {
            progressed.recv().await;
        }
    };
    tokio::time::timeout(SETTLE, everyone).await.expect("every client joined its rooms");
    shared.publishing.store(true, SeqCst);
    shared.phase.send_replace(1);
    let duration = Duration::from_secs(seconds);
    tokio::time::sleep(duration * 2 / 5).await;
    shared.live.lock().unwrap().truncate(1);
    let (mut killed, _) = run.brokers.pop().unwrap();
    let _ = killed.0.kill();
    let _ = killed.0.wait();
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
    shared.chaos.store(false, SeqCst);
    shared.phase.send_replace(2);
    let everyone = async {
        for _ in 0..CLIENTS {
            progressed.recv().await;
        }
    };
    tokio::time::timeout(SETTLE, everyone).await.expect("every client connected again");
    let survivor = &run.brokers[0].1;
    let mut ends = Vec::new();
    for room in 0..ROOMS {
        let path = format!("/api/v1/chat/rooms/room-{room}/messages");
        let (status, answer) =
            survivor.post(&path, json!({"type": "chat", "data": {"content": "end"}})).await;
        assert_eq!(status, 202, "the last message of room-{room}: {answer}");
        ends.push(answer["id"].as_str().unwrap().to_owned());
    }
    *shared.ends.lock().unwrap() = Some(ends);
    shared.phase.send_replace(3);
    let mut reports = Vec::new();
    for client in clients {
        reports.push(
            tokio::time::timeout(SETTLE * 2, client).await.expect("a client finished").unwrap(),
        );
    }
    summarize(&reports, &rooms)
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
}
