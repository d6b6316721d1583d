//! Chaos: 50 clients in 5 rooms of a two-instance cluster keep publishing, and each drops and
//! resumes with `since` at random moments, on either instance. One instance is killed (its clients
//! move to the other); in the second run Redis is restarted too.
//!
//! At the end every client must have every message of each of its rooms once and in seq order, or
//! have been told `recovered:false`; that count must be zero without a Redis restart, and every
//! acked message must have reached every member. `CHAOS_SECONDS` makes it longer
//! (`scripts/chaos.sh`); the summary is printed.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use crate::common::{spawn_broker, BrokerProcess, TestServer};
use crate::redis_server::RedisServer;

const CLIENTS: usize = 50;
const ROOMS: usize = 5;
/// How long the final messages may take to reach everyone.
const SETTLE: Duration = Duration::from_secs(20);

/// The clients' common knowledge: where to connect, and which phase the run is in.
struct Shared {
    live: Mutex<Vec<SocketAddr>>,
    /// Set once every client has joined its rooms: they publish from then on.
    publishing: AtomicBool,
    /// Clients keep dropping and publishing while set.
    chaos: AtomicBool,
    /// Each client says when it has joined its rooms, and when it is connected again after the
    /// chaos.
    progress: tokio::sync::mpsc::UnboundedSender<()>,
    /// The last message of each room (its id), published once every client is back.
    ends: Mutex<Option<Vec<String>>>,
    /// Changes whenever the phase does (publishing, chaos over, last messages out).
    phase: tokio::sync::watch::Sender<u8>,
}

/// What one client saw of one room.
#[derive(Default)]
struct View {
    epoch: Option<String>,
    last: u64,
    /// After a `recovered:false`: the next message starts a new base.
    rebase: bool,
    /// A resume of this room is in flight: its live messages come again in the replay.
    resyncing: bool,
    /// The resume of the current connection was answered.
    answered: bool,
    ids: HashSet<String>,
}

#[derive(Default)]
struct Report {
    rooms: HashMap<String, View>,
    /// The room of each chat sent, by id, until acked.
    sent: HashMap<String, String>,
    acked: Vec<(String, String)>,
    not_recovered: u64,
    reasons: HashMap<String, u64>,
    violations: Vec<String>,
    resumes: u64,
    refused: u64,
}

/// A small xorshift, seeded per client: no dependency for a coin toss.
struct Coin(u64);

impl Coin {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

impl Report {
    fn on_frame(&mut self, frame: &Value) {
        let room = frame["room"].as_str().unwrap_or_default().to_owned();
        match frame["type"].as_str().unwrap_or_default() {
            "chat" => self.on_chat(room, frame),
            "joined" | "ack" if frame["data"]["recovered"].is_boolean() => {
                let view = self.rooms.entry(room).or_default();
                view.resyncing = false;
                view.answered = true;
                if frame["data"]["recovered"] == false {
                    self.not_recovered += 1;
                    let reason = frame["data"]["reason"].as_str().unwrap_or_default();
                    *self.reasons.entry(reason.to_owned()).or_default() += 1;
                    view.rebase = true;
                }
            }
            "ack" => {
                if let Some((id, room)) =
                    frame["id"].as_str().and_then(|id| self.sent.remove_entry(id))
                {
                    self.acked.push((room, id));
                }
            }
            "error" if frame["data"]["code"] == "unavailable" => {
                self.refused += 1;
                frame["id"].as_str().map(|id| self.sent.remove(id));
            }
            "error" => self.violations.push(format!("error {frame}")),
            _ => {}
        }
    }

    fn on_chat(&mut self, room: String, frame: &Value) {
        let (seq, epoch) = (frame["seq"].as_u64().unwrap_or(0), frame["epoch"].as_str());
        let view = self.rooms.entry(room.clone()).or_default();
        if view.resyncing {
            return;
        }
        let same_epoch = view.epoch.as_deref() == epoch;
        if view.rebase || (view.epoch.is_none() && seq == 1) {
            view.rebase = false;
        } else if !same_epoch {
            self.violations.push(format!("{room}: epoch {epoch:?} without notice at {seq}"));
        } else if seq != view.last + 1 {
            self.violations.push(format!("{room}: seq {seq} after {}", view.last));
        }
        view.epoch = epoch.map(str::to_owned);
        view.last = seq;
        if let Some(id) = frame["id"].as_str() {
            view.ids.insert(id.to_owned());
        }
    }

    /// The connect URL: a fresh join of each room, or a resume where a place is known.
    fn url(&self, addr: SocketAddr, user: &str, rooms: &[String]) -> String {
        let mut url = format!("ws://{addr}/ws?user={user}");
        for room in rooms {
            match self.rooms.get(room).and_then(|v| v.epoch.as_ref().map(|e| (v.last, e))) {
                Some((last, epoch)) if !self.rooms[room].rebase => {
                    url.push_str(&format!("&since={room}:{last}:{epoch}"))
                }
                _ => url.push_str(&format!("&room={room}")),
            }
        }
        url
    }
}

/// Whether the client has a place in the stream of each of its rooms (it may drop then).
fn placed(report: &Report, rooms: &[String]) -> bool {
    rooms.iter().all(|room| report.rooms.get(room).is_some_and(|v| v.epoch.is_some()))
}

/// Whether the client has the last message of each of its rooms.
fn finished(report: &Report, rooms: &[String], shared: &Shared) -> bool {
    let ends = shared.ends.lock().unwrap();
    let Some(ends) = ends.as_ref() else { return false };
    ends.iter().enumerate().all(|(i, end)| {
        let room = format!("room-{i}");
        !rooms.contains(&room) || report.rooms.get(&room).is_some_and(|v| v.ids.contains(end))
    })
}

/// Joins the rooms on the first connection, each acked once the instance listens to it.
async fn join_all<S>(ws: &mut S, report: &mut Report, rooms: &[String]) -> bool
where
    S: SinkExt<Message>
        + StreamExt<Item = Result<Message, tokio_tungstenite::tungstenite::Error>>
        + Unpin,
{
    for room in rooms {
        let join = json!({"type": "join", "room": room, "id": format!("join-{room}")});
        if ws.send(Message::text(join.to_string())).await.is_err() {
            return false;
        }
    }
    let mut acks = 0;
    while acks < rooms.len() {
        match tokio::time::timeout(SETTLE, ws.next()).await {
            Ok(Some(Ok(Message::Text(text)))) => {
                let frame: Value = serde_json::from_str(&text).expect("server frames are JSON");
                if frame["type"] == "ack"
                    && frame["id"].as_str().is_some_and(|id| id.starts_with("join-"))
                {
                    acks += 1;
                } else {
                    report.on_frame(&frame);
                }
            }
            Ok(Some(Ok(_))) => {}
            _ => return false,
        }
    }
    true
}

/// One client: joins, publishes, drops and resumes until the chaos ends, then stays until it has
/// the last message of each of its rooms.
async fn client(n: usize, rooms: Vec<String>, shared: Arc<Shared>) -> Report {
    let (mut report, user) = (Report::default(), format!("c{n}"));
    let mut coin = Coin(0x9E37_79B9 + n as u64 * 7919);
    let mut phase = shared.phase.subscribe();
    let (mut sent, mut joined, mut settled) = (0u64, false, false);
    loop {
        let addrs = shared.live.lock().unwrap().clone();
        let addr = addrs[coin.below(addrs.len() as u64) as usize];
        let url = if joined {
            report.url(addr, &user, &rooms)
        } else {
            format!("ws://{addr}/ws?user={user}")
        };
        let connecting = tokio_tungstenite::connect_async(url);
        let Ok(Ok((mut ws, _))) = tokio::time::timeout(Duration::from_secs(5), connecting).await
        else {
            continue;
        };
        if !joined {
            if !join_all(&mut ws, &mut report, &rooms).await {
                continue;
            }
            joined = true;
            let _ = shared.progress.send(());
        } else {
            report.resumes += 1;
            for room in &rooms {
                let view = report.rooms.entry(room.clone()).or_default();
                view.answered = false;
            }
        }
        let chaos = shared.chaos.load(SeqCst);
        if !chaos && !settled {
            settled = true;
            let _ = shared.progress.send(());
        }
        let lifetime = Duration::from_millis(200 + coin.below(1_300));
        let started = Instant::now();
        let mut tick = tokio::time::interval(Duration::from_millis(40 + coin.below(40)));
        loop {
            if finished(&report, &rooms, &shared) {
                return report;
            }
            let may_drop = placed(&report, &rooms) && started.elapsed() > lifetime;
            if chaos && (may_drop || !shared.chaos.load(SeqCst)) {
                break;
            }
            let publishing = shared.publishing.load(SeqCst) && shared.chaos.load(SeqCst);
            tokio::select! {
                message = tokio::time::timeout(SETTLE, ws.next()) => match message {
                    Ok(Some(Ok(Message::Text(text)))) => {
                        let frame: Value = serde_json::from_str(&text).expect("server frames are JSON");
                        if frame["type"] == "joined" && frame["data"]["reason"] == "interrupted" {
                            resync(&mut ws, &mut report, frame["room"].as_str().unwrap()).await;
                        } else {
                            report.on_frame(&frame);
                        }
                    }
                    Ok(Some(Ok(_))) => {}
                    Ok(_) => break,
                    Err(_) => {
                        let views: Vec<String> = report
                            .rooms
                            .iter()
                            .map(|(room, v)| format!("{room}@{}:{:?} rebase {} resync {} answered {}", v.last, v.epoch, v.rebase, v.resyncing, v.answered))
                            .collect();
                        report.violations.push(format!("{user} on {addr}: nothing for {SETTLE:?}: {views:?}"));
                        return report;
                    }
                },
                _ = phase.changed() => {}
                _ = tick.tick(), if publishing => {
                    let room = rooms[coin.below(rooms.len() as u64) as usize].clone();
                    sent += 1;
                    let id = format!("{user}-{sent}");
                    let chat = json!({"type": "chat", "id": id, "room": room, "data": {"content": sent.to_string()}});
                    report.sent.insert(id, room);
                    let _ = ws.send(Message::text(chat.to_string())).await;
                }
            }
        }
        let _ = ws.close(None).await;
    }
}

/// The room's stream had a hole here: resume it with `since` on the same connection.
async fn resync<S>(ws: &mut S, report: &mut Report, room: &str)
where
    S: SinkExt<Message> + Unpin,
{
    let view = report.rooms.entry(room.to_owned()).or_default();
    let Some(epoch) = view.epoch.clone() else { return };
    view.resyncing = true;
    let since = json!({"seq": view.last, "epoch": epoch});
    let join = json!({"type": "join", "room": room, "id": format!("resync-{room}"), "data": {"since": since}});
    let _ = ws.send(Message::text(join.to_string())).await;
}

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
