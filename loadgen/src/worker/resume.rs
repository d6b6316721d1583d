//! Resume mode (`--resume`): connections come back as the client libraries do. A connection the
//! broker closes during the run (its instance restarted) reconnects after a jittered backoff (25
//! ms doubling to 1 s), wherever the URL leads (a load balancer picks), and resumes its room with
//! `since`: the last seq it has and the stream's epoch. A publisher's chats carry ids; every chat
//! without an ack is sent again with its id after a reconnect, a refusal, or 2 s of silence, and
//! the broker's dedup keeps it once.
//!
//! Owns: one connection's place in its room's stream, a publisher's chats without an ack, and the
//! worker's resume counters. A room's deliveries are expected per ack (acked = stored, and to be
//! delivered to every member once); a delivery counts once per seq, a seq at or below the last as
//! a duplicate, one past the next as a gap. Must not: count a close of the broker as a failure.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::time::{Instant, Interval};
use tokio_tungstenite::tungstenite::Message;

use super::{bump, connect_to, Socket, Worker};
use crate::report::ResumeReport;
use crate::wire;

/// The first reconnect waits up to this long; each failed attempt doubles it, up to `MAX_BACKOFF`.
const FIRST_BACKOFF: Duration = Duration::from_millis(25);
const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// A chat without an ack for this long is sent again.
const RESEND_AFTER: Duration = Duration::from_secs(2);

/// The worker's resume counters (see [`ResumeReport`]).
#[derive(Default)]
pub(crate) struct Counters {
    reconnects: Cell<u64>,
    failed_attempts: Cell<u64>,
    longest_away_ms: Cell<u64>,
    unplaced: Cell<u64>,
    not_recovered: Cell<u64>,
    interrupted: Cell<u64>,
    gaps: Cell<u64>,
    refused: Cell<u64>,
    resent: Cell<u64>,
    unacked: Cell<u64>,
    errors: Cell<u64>,
}

impl Counters {
    pub(crate) fn report(&self) -> ResumeReport {
        ResumeReport {
            reconnects: self.reconnects.get(),
            failed_attempts: self.failed_attempts.get(),
            longest_away_ms: self.longest_away_ms.get(),
            unplaced: self.unplaced.get(),
            not_recovered: self.not_recovered.get(),
            interrupted: self.interrupted.get(),
            gaps: self.gaps.get(),
            refused: self.refused.get(),
            resent: self.resent.get(),
            unacked: self.unacked.get(),
            errors: self.errors.get(),
        }
    }
}

/// A publisher's side: its schedule and its chats without an ack (probe seq -> frame, last sent).
struct Chats {
    ticker: Option<Interval>,
    end: Option<Instant>,
    next: u64,
    unacked: BTreeMap<u64, (String, Instant)>,
}

/// One connection through the run.
struct Client {
    worker: Rc<Worker>,
    conn: usize,
    room: usize,
    /// The last seq seen and its epoch; `None` until the first message.
    place: Option<(u64, String)>,
    /// A resume of the room is in flight on this connection: until its answer, the room's live
    /// messages are not taken (they come again in its replay).
    resyncing: bool,
    chats: Option<Chats>,
    rng: u64,
}

/// Serves connection `conn` until the process ends, reconnecting whenever the broker closes it.
pub(super) async fn ride(worker: Rc<Worker>, conn: usize, mut socket: Socket) {
    let chats = worker.plan.is_publisher(conn).then(|| Chats {
        ticker: None,
        end: None,
        next: 0,
        unacked: BTreeMap::new(),
    });
    let room = worker.plan.room_of(conn);
    let rng = 0x9E37_79B9_7F4A_7C15 ^ (conn as u64 + 1).wrapping_mul(0x2545_F491_4F6C_DD1D);
    let mut client = Client { worker, conn, room, place: None, resyncing: false, chats, rng };
    loop {
        client.serve(&mut socket).await;
        let away = Instant::now();
        socket = client.reconnect().await;
        client.resyncing = false;
        let counters = &client.worker.resume;
        bump(&counters.reconnects, 1);
        let away_ms = away.elapsed().as_millis() as u64;
        counters.longest_away_ms.set(counters.longest_away_ms.get().max(away_ms));
        client.resend(&mut socket, Duration::ZERO).await;
    }
}

impl Client {
    /// Reads, publishes and resends on `socket` until it ends.
    async fn serve(&mut self, socket: &mut Socket) {
        let mut go = self.worker.go.clone();
        let mut resend = tokio::time::interval(RESEND_AFTER / 2);
        loop {
            self.schedule();
            let (publishing, waiting) = match &self.chats {
                Some(chats) => (chats.ticker.is_some(), !chats.unacked.is_empty()),
                None => (false, false),
            };
            tokio::select! {
                frame = socket.next() => match frame {
                    Some(Ok(Message::Text(text))) => {
                        if self.on_frame(&text) && !self.rejoin(socket).await {
                            return;
                        }
                    }
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => return,
                },
                _ = go.changed(), if self.chats.as_ref().is_some_and(|c| c.end.is_none()) => {}
                () = tick(&mut self.chats), if publishing => {
                    if !self.publish(socket).await {
                        return;
                    }
                }
                _ = resend.tick(), if waiting => self.resend(socket, RESEND_AFTER).await,
            }
        }
    }

    /// A publisher's ticker starts at `go`, its share of the period in; it stops at the run's end.
    fn schedule(&mut self) {
        let plan = &self.worker.plan;
        let Some(chats) = self.chats.as_mut() else { return };
        if chats.end.is_none() {
            let Some(go_at) = *self.worker.go.borrow() else { return };
            let period = Duration::from_secs_f64(plan.publishers as f64 / plan.rate);
            let offset = period.mul_f64(self.conn as f64 / plan.publishers as f64);
            let mut ticker = tokio::time::interval_at(go_at + offset, period);
            // Chats not sent while away are not sent in a burst after.
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            chats.ticker = Some(ticker);
            chats.end = Some(go_at + Duration::from_secs_f64(plan.duration));
        }
        if chats.end.is_some_and(|end| Instant::now() >= end) {
            chats.ticker = None;
        }
    }

    /// Sends the next chat; `false` when the connection is gone (the chat waits for the next).
    async fn publish(&mut self, socket: &mut Socket) -> bool {
        let worker = Rc::clone(&self.worker);
        let chats = self.chats.as_mut().expect("only publishers publish");
        chats.next += 1;
        let mut text = String::with_capacity(160 + worker.padding.len());
        let room = format!("r{}", self.room);
        let probe = (self.conn as u32, chats.next);
        wire::write_chat_with_id(&mut text, &room, probe, &worker.padding, &worker.plan.run);
        chats.unacked.insert(chats.next, (text.clone(), Instant::now()));
        bump(&worker.counters.sent, 1);
        bump(&worker.resume.unacked, 1);
        socket.send(Message::text(text)).await.is_ok()
    }

    /// Sends again, in order, every chat without an ack sent more than `after` ago.
    async fn resend(&mut self, socket: &mut Socket, after: Duration) {
        let Some(chats) = self.chats.as_mut() else { return };
        for (text, sent) in chats.unacked.values_mut() {
            if sent.elapsed() < after {
                continue;
            }
            *sent = Instant::now();
            bump(&self.worker.resume.resent, 1);
            if socket.send(Message::text(text.clone())).await.is_err() {
                return;
            }
        }
    }

    /// Takes one frame; `true` when the room must be resumed again on this connection.
    fn on_frame(&mut self, text: &str) -> bool {
        let counters = &self.worker.resume;
        if let Some(probe) = wire::parse_probe(text) {
            if !self.resyncing {
                self.on_chat(probe, wire::stream_position(text));
            }
            return false;
        }
        if text.contains(r#""id":"rejoin-"#) {
            self.resyncing = false;
        }
        let told_hole = text.contains(r#""recovered":false"#);
        let joined = text.contains(r#""type":"joined""#);
        if told_hole && text.contains(r#""reason":"interrupted""#) {
            // Redis is away (cluster mode): the stream stands where this client is, so it keeps
            // its place, as the libraries do. A `joined` may be a hole notice: resume again, and
            // the replay fills it (an answer to a resume, resumed again, is answered the same).
            bump(&counters.interrupted, 1);
            return joined && self.place.is_some();
        }
        if told_hole && (joined || text.contains(r#""type":"ack""#)) {
            // The stream goes on from its next message as from a new base.
            bump(&counters.not_recovered, 1);
            self.place = None;
        } else if text.contains(r#""type":"ack""#) {
            self.on_ack(wire::acked_seq(text));
        } else if text.contains(r#""type":"error""#) {
            let refused = text.contains(r#""code":"unavailable""#);
            bump(if refused { &counters.refused } else { &counters.errors }, 1);
            if !refused {
                self.worker.first_error.borrow_mut().get_or_insert_with(|| text.to_owned());
            }
        }
        false
    }

    /// Resumes the room on `socket` from the place this client has; `false` when it is gone.
    async fn rejoin(&mut self, socket: &mut Socket) -> bool {
        let Some((seq, epoch)) = &self.place else { return true };
        let mut text = String::new();
        wire::write_resume(&mut text, &format!("r{}", self.room), (*seq, epoch));
        self.resyncing = true;
        socket.send(Message::text(text)).await.is_ok()
    }

    fn on_chat(&mut self, probe: wire::Probe, position: Option<(u64, &str)>) {
        let worker = &self.worker;
        worker.note_delivery(probe);
        bump(&worker.counters.received, 1);
        let mut rooms = worker.rooms.borrow_mut();
        rooms[self.room].received += 1;
        let Some((seq, epoch)) = position else { return };
        match &self.place {
            Some((last, known)) if known == epoch && seq <= *last => {
                bump(&worker.counters.duplicated, 1);
                rooms[self.room].duplicated += 1;
                return;
            }
            Some((last, known)) if known == epoch && seq > last + 1 => {
                bump(&worker.resume.gaps, seq - last - 1)
            }
            _ => {}
        }
        self.place = Some((seq, epoch.to_owned()));
    }

    /// An ack of one of this publisher's chats: stored, so every member is owed it once.
    fn on_ack(&mut self, seq: Option<u64>) {
        let (Some(chats), Some(seq)) = (self.chats.as_mut(), seq) else { return };
        if chats.unacked.remove(&seq).is_none() {
            return;
        }
        let worker = &self.worker;
        let members = worker.plan.members_of(self.room);
        worker.resume.unacked.set(worker.resume.unacked.get() - 1);
        bump(&worker.counters.expected, members);
        worker.rooms.borrow_mut()[self.room].expected += members;
    }

    /// Opens the connection again after a jittered backoff, resuming from the place it has.
    async fn reconnect(&mut self) -> Socket {
        let worker = Rc::clone(&self.worker);
        let plan = &worker.plan;
        let since = self.place.as_ref().map(|(seq, epoch)| (*seq, epoch.as_str()));
        if since.is_none() {
            bump(&worker.resume.unplaced, 1);
        }
        let url = plan.resume_url_of(self.conn, since);
        let mut ceiling = FIRST_BACKOFF;
        loop {
            tokio::time::sleep(self.jitter(ceiling)).await;
            match connect_to(url.clone(), plan.source_of(self.conn)).await {
                Ok(socket) => return socket,
                Err(_) => bump(&worker.resume.failed_attempts, 1),
            }
            ceiling = (ceiling * 2).min(MAX_BACKOFF);
        }
    }

    /// A wait between half of `ceiling` and all of it (xorshift; spreads a crowd's reconnects).
    fn jitter(&mut self, ceiling: Duration) -> Duration {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        ceiling.mul_f64(0.5 + (self.rng % 1000) as f64 / 2000.0)
    }
}

/// The publisher's next tick (pending for a connection that does not publish now).
async fn tick(chats: &mut Option<Chats>) {
    match chats.as_mut().and_then(|chats| chats.ticker.as_mut()) {
        Some(ticker) => drop(ticker.tick().await),
        None => std::future::pending().await,
    }
}
