//! One chaos client: connects to a live instance, joins its rooms, publishes, drops and resumes with
//! `since` at random, and records what it saw of each room (and what breaks the rules).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use super::seen::Seen;
use super::SETTLE;
use crate::common::Rng;

/// The clients' common knowledge: where to connect, and which phase the run is in.
pub(super) struct Shared {
    pub(super) live: Mutex<Vec<SocketAddr>>,
    /// Set once every client has joined its rooms: they publish from then on.
    pub(super) publishing: AtomicBool,
    /// Clients keep publishing (and dropping, with `drops`) while set.
    pub(super) chaos: AtomicBool,
    /// Clients drop their connections at random moments (else only when an instance goes).
    pub(super) drops: bool,
    /// Clients `0..publishers` chat; the others only listen.
    pub(super) publishers: usize,
    /// Each client says when it has joined its rooms, and when it is connected again after the
    /// chaos.
    pub(super) progress: tokio::sync::mpsc::UnboundedSender<()>,
    /// The last message of each room (its id), published once every client is back.
    pub(super) ends: Mutex<Option<Vec<String>>>,
    /// Changes whenever the phase does (publishing, chaos over, last messages out).
    pub(super) phase: tokio::sync::watch::Sender<u8>,
}

/// What one client saw of one room.
#[derive(Default)]
pub(super) struct View {
    pub(super) epoch: Option<String>,
    pub(super) last: u64,
    /// After a `recovered:false`: the next message starts a new base.
    pub(super) rebase: bool,
    /// A resume of this room is in flight: its live messages come again in the replay.
    pub(super) resyncing: bool,
    /// The resume of the current connection was answered.
    pub(super) answered: bool,
    /// The id of each message seen, with the epoch it came in.
    pub(super) ids: Seen,
}

#[derive(Default)]
pub(super) struct Report {
    pub(super) rooms: HashMap<String, View>,
    /// The room of each chat sent, by id, until acked.
    pub(super) sent: HashMap<String, String>,
    pub(super) acked: Vec<(String, String)>,
    pub(super) not_recovered: u64,
    pub(super) reasons: HashMap<String, u64>,
    pub(super) violations: Vec<String>,
    pub(super) resumes: u64,
    pub(super) refused: u64,
    /// Chats sent again with the same id after a drop, for want of an answer.
    pub(super) resent: u64,
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
                // `interrupted` (Redis away) is no loss: the stream stands where the client
                // left it, and a hole after it is told before the next message.
                if frame["data"]["recovered"] == false && frame["data"]["reason"] != "interrupted" {
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
            // Twice in one stream is a duplicate; a stream that started again (told) may carry a
            // resend that Redis no longer recognised.
            if view.ids.insert(id, view.epoch.as_deref()) {
                self.violations.push(format!("{room}: {id} twice (seq {seq})"));
            }
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
pub(super) fn placed(report: &Report, rooms: &[String]) -> bool {
    rooms.iter().all(|room| report.rooms.get(room).is_some_and(|v| v.epoch.is_some()))
}

/// Whether the client has the last message of each of its rooms.
pub(super) fn finished(report: &Report, rooms: &[String], shared: &Shared) -> bool {
    let ends = shared.ends.lock().unwrap();
    let Some(ends) = ends.as_ref() else { return false };
    ends.iter().enumerate().all(|(i, end)| {
        let room = format!("room-{i}");
        !rooms.contains(&room) || report.rooms.get(&room).is_some_and(|v| v.ids.contains(end))
    })
}

/// Joins the rooms on the first connection, each acked once the instance listens to it.
pub(super) async fn join_all<S>(ws: &mut S, report: &mut Report, rooms: &[String]) -> bool
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
pub(super) async fn client(n: usize, rooms: Vec<String>, shared: Arc<Shared>) -> Report {
    let (mut report, user) = (Report::default(), format!("c{n}"));
    let mut coin = Rng(0x9E37_79B9 + n as u64 * 7919);
    let mut phase = shared.phase.subscribe();
    let (mut sent, mut joined, mut settled) = (0u64, false, false);
    // A failed connect waits a jittered backoff before the next, as the client libraries do: 25
    // ms doubling to 1 s (a client that retries at once turns a load balancer's 502 into a storm).
    let mut failures = 0u32;
    loop {
        if failures > 0 {
            let ceiling = (25u64 << failures.min(6)).min(1_000);
            tokio::time::sleep(Duration::from_millis(
                ceiling / 2 + coin.below(ceiling as usize / 2) as u64,
            ))
            .await;
        }
        failures += 1;
        let addrs = shared.live.lock().unwrap().clone();
        let addr = addrs[coin.below(addrs.len())];
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
            failures = 0;
            joined = true;
            let _ = shared.progress.send(());
        } else {
            failures = 0;
            report.resumes += 1;
            for room in &rooms {
                let view = report.rooms.entry(room.clone()).or_default();
                view.answered = false;
            }
            // Every chat without an answer goes again, with its id, on whatever instance this is.
            let unanswered: Vec<(String, String)> =
                report.sent.iter().map(|(id, room)| (id.clone(), room.clone())).collect();
            for (id, room) in unanswered {
                let content = id.rsplit('-').next().unwrap_or_default().to_owned();
                let chat =
                    json!({"type": "chat", "id": id, "room": room, "data": {"content": content}});
                report.resent += 1;
                let _ = ws.send(Message::text(chat.to_string())).await;
            }
        }
        let chaos = shared.chaos.load(SeqCst);
        if !chaos && !settled {
            settled = true;
            let _ = shared.progress.send(());
        }
        let lifetime = Duration::from_millis(200 + coin.below(1_300) as u64);
        let started = Instant::now();
        let mut tick = tokio::time::interval(Duration::from_millis(40 + coin.below(40) as u64));
        loop {
            if finished(&report, &rooms, &shared) {
                return report;
            }
            let may_drop = shared.drops && placed(&report, &rooms) && started.elapsed() > lifetime;
            if chaos && (may_drop || !shared.chaos.load(SeqCst)) {
                break;
            }
            let publishing = n < shared.publishers
                && shared.publishing.load(SeqCst)
                && shared.chaos.load(SeqCst);
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
                    let room = rooms[coin.below(rooms.len())].clone();
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
pub(super) async fn resync<S>(ws: &mut S, report: &mut Report, room: &str)
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
