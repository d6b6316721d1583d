//! A shard task: the single owner of its slice of the connection cache.
//!
//! Owns: a [`LocalCache`] (connections, users, room memberships, metadata) and this shard's bit in the
//! room directory. Everyone else talks to it through two inboxes: `commands` from its reader and sessions
//! (bounded: a flooding client is slowed by TCP backpressure) and `deliveries` from other shards and
//! the HTTP API (unbounded: shards never wait on each other, so they cannot deadlock).
//! May touch: the directory (its own bit), the outboxes of its own connections (`try_send` only), the
//! other shards' delivery inboxes. Must not: await anything but its inboxes, or touch another shard's
//! connections.
//!
//! Ordering rules:
//! - Before a command is handled, every delivery already waiting is handled, so a message routed here
//!   before a member asked to leave reaches that member.
//! - Commands are taken in batches. Room transitions of a batch are committed to the directory once,
//!   at its end; any output produced after the batch's first transition is held until that commit, so a
//!   client never learns it joined (ack, presence event, 101 response) before publishers can find it.

mod away;
pub mod cache;
mod coalesce;
mod dedup;
mod deliveries;
mod ending;
mod enforce;
mod enrol;
mod everyone;
mod fanout;
mod join;
mod limits;
pub mod offload;
mod order;
mod output;
mod relayed;
mod replies;
mod requests;
mod resume;
mod sent;
mod stream;
pub mod thread;
mod typing;
mod unheard;
mod unread;

use std::time::Instant;

use crate::broker::{Announce, LocalChange};
use crate::close;
use crate::directory::{ShardId, Transition};
use crate::hub::Hub;
use crate::mailbox::{Command, ConnId, Delivery, Enrolment, Inbox, Target};
use crate::metrics::{self, ShardCounters, UnavailableCause};
use crate::protocol::{Frame, PresenceStatus, Room, UserId};
use crate::store::WriteRefusal;
use away::AwaySweep;
use cache::LocalCache;
use coalesce::Coalescer;
use dedup::Dedup;
use enforce::Enforced;
use limits::{Policy, RateLimits};
use order::InOrder;
use output::{Held, Output};
use resume::Resuming;
use stream::Streams;
use typing::Typers;
use unheard::Unheard;
use unread::UnreadWindows;

/// The most inbox messages handled before the batch is committed and flushed.
const BATCH: usize = 256;

/// One message taken from an inbox, or a deadline reached (a presence window that ended, an
/// answer that waited its longest for its message to be heard, a look for users gone away, a
/// typer's end).
enum Step {
    Delivery(Delivery),
    Command(Command),
    Due,
}

pub struct Shard {
    id: ShardId,
    hub: Hub,
    cache: LocalCache,
    out: Output,
    limits: RateLimits,
    /// Room transitions of the current batch, not yet in the directory.
    pending: Vec<Transition>,
    /// The chat ids its users sent recently (idempotent send, with a store).
    dedup: Dedup,
    /// The streams of the rooms homed on this shard (their seq).
    streams: Streams,
    /// Connections with an answer or a chat in flight, and the requests they hold back.
    order: InOrder,
    /// Connections whose resume of a room is in flight: their live room messages are dropped.
    resuming: Resuming,
    /// The presence windows of the rooms homed on this shard.
    presence: Coalescer,
    /// When it next looks for users gone away (`None`: nobody is told).
    away_sweep: Option<AwaySweep>,
    /// The typers of the rooms homed on this shard.
    typers: Typers,
    /// The unread windows of the rooms homed on this shard.
    unread: UnreadWindows,
    /// Cluster mode: answers to senders waiting for their message to be heard here.
    unheard: Unheard,
    /// The rules of the rooms homed here and the instance bans of this shard's users.
    enforced: Enforced,
    shutting_down: bool,
    /// A graceful shutdown's first step is under way: new chats are refused.
    quiescing: bool,
    /// Told once no chat of this shard's connections waits for its ack any more.
    settled: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Shard {
    pub fn new(id: ShardId, hub: Hub) -> Self {
        let settings = hub.settings();
        let policy = Policy {
            rate: settings.rate_limit,
            burst: f64::from(settings.rate_burst),
            flood_close_after: settings.flood_close_after,
        };
        let (cache, out, limits) =
            (LocalCache::default(), Output::default(), RateLimits::new(policy));
        let dedup = Dedup::new(settings.dedup_window);
        let pending = Vec::new();
        let (streams, resuming) = (Streams::default(), Resuming::default());
        let presence = Coalescer::new(settings.presence_coalesce, settings.presence_max_members);
        let away_sweep = AwaySweep::new(settings.away_after, settings.presence_events);
        let typers = Typers::new(settings.typing_timeout, settings.typing_coalesce);
        let unread = UnreadWindows::new(settings.unread_coalesce);
        let shutting_down = false;
        Self {
            id,
            hub,
            cache,
            out,
            limits,
            pending,
            dedup,
            streams,
            order: InOrder::default(),
            resuming,
            presence,
            away_sweep,
            typers,
            unread,
            unheard: Unheard::default(),
            enforced: Enforced::default(),
            shutting_down,
            quiescing: false,
            settled: None,
        }
    }

    fn counters(&self) -> &ShardCounters {
        self.hub.metrics().shard(self.id)
    }

    /// Counts a message refused `unavailable` for `cause`.
    fn count_unavailable(&self, cause: UnavailableCause) {
        self.counters().labelled.unavailable(cause);
    }

    /// Counts a message the store refused, by the reason it gave.
    fn count_store_refusal(&self, why: WriteRefusal) {
        self.count_unavailable(match why {
            WriteRefusal::Down => UnavailableCause::StoreDown,
            WriteRefusal::Full => UnavailableCause::StoreFull,
        });
    }

    /// Runs until shut down and every connection is gone.
    pub async fn run(mut self, mut inbox: Inbox) {
        loop {
            let away = self.away_sweep.as_ref().map(AwaySweep::next_deadline);
            let deadline = [
                self.presence.next_deadline(),
                self.unheard.next_deadline(),
                away,
                self.typers.next_deadline(),
                self.unread.next_deadline(),
                self.out.next_deferred(),
            ];
            let deadline = deadline.into_iter().flatten().min();
            let window_end = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            let first = tokio::select! {
                biased;
                Some(delivery) = inbox.deliveries.recv() => Step::Delivery(delivery),
                Ok(command) = inbox.commands.recv_async() => Step::Command(command),
                () = window_end => Step::Due,
                else => break,
            };
            self.run_batch(first, &mut inbox);
            if self.shutting_down && self.cache.is_empty() {
                break;
            }
        }
    }

    /// Handles `first` and whatever else is waiting (up to a batch), then commits and flushes.
    fn run_batch(&mut self, first: Step, inbox: &mut Inbox) {
        let mut next = Some(first);
        for _ in 0..BATCH {
            match next.take() {
                Some(Step::Delivery(delivery)) => self.on_delivery(delivery),
                Some(Step::Due) => {
                    self.presence_due();
                    self.release_overdue();
                    self.away_due(Instant::now());
                    self.typing_due();
                    self.unread_due();
                }
                Some(Step::Command(command)) => {
                    self.drain_deliveries(inbox);
                    self.on_command(command);
                }
                None => break,
            }
            self.drain_deliveries(inbox);
            next = inbox.commands.try_recv().ok().map(Step::Command);
        }
        if let Some(Step::Command(command)) = next {
            self.drain_deliveries(inbox);
            self.on_command(command);
        }
        self.finish_batch();
    }

    fn drain_deliveries(&mut self, inbox: &mut Inbox) {
        while let Ok(delivery) = inbox.deliveries.try_recv() {
            self.on_delivery(delivery);
        }
    }

    fn on_command(&mut self, command: Command) {
        match command {
            Command::Register(registration, registered) => self.register(*registration, registered),
            Command::Request { conn, request } => self.on_request(conn, request),
            Command::Reauthorize { conn, id, permissions } => {
                self.reauthorize(conn, id.as_deref(), permissions)
            }
            Command::Unregister { conn } => self.remove(conn, None),
        }
    }

    /// Delivers to the local recipients, then routes to every other shard that has some, and hands
    /// it to the other instances.
    fn publish(&mut self, target: Target, frame: Frame) {
        let accepted_at = Instant::now();
        self.deliver_local(&target, &frame, accepted_at);
        self.hub.broker().publish(&target, &frame);
        self.route_after_commit(target, frame, accepted_at);
    }

    fn join(&mut self, conn: ConnId, room: Room) {
        let Some(joined) = self.cache.join(conn, &room) else {
            return;
        };
        if joined.room_new_here {
            self.pending.push(Transition { room: room.clone(), present: true });
            self.out.start_holding();
        }
        if joined.user_joined {
            let user = self
                .cache
                .get(conn)
                .map(|c| c.user.clone())
                .expect("a joined connection is cached");
            let change = LocalChange::Joined { room: room.clone(), user: user.clone() };
            let announce = self.hub.presence().local_change(change);
            self.announce(room, &user, PresenceStatus::Join, announce);
        }
    }

    fn leave(&mut self, conn: ConnId, room: &Room) {
        if !self.resuming.is_empty() {
            self.forget_resumes_in(conn, Some(room));
        }
        let user = self.cache.get(conn).map(|c| c.user.clone());
        if let (Some(left), Some(user)) = (self.cache.leave(conn, room), user) {
            self.after_leave(left, &user);
        }
    }

    fn after_leave(&mut self, left: cache::Left, user: &UserId) {
        if left.user_left {
            self.stop_typing(user, &left.room);
        }
        if left.room_empty_here {
            self.pending.push(Transition { room: left.room.clone(), present: false });
            self.out.start_holding();
        }
        if left.user_left {
            let change = LocalChange::Left { room: left.room.clone(), user: user.clone() };
            let announce = self.hub.presence().local_change(change);
            self.announce(left.room, user, PresenceStatus::Leave, announce);
        }
    }

    /// Tells the room that `user` came or went (unless presence events are off, or the presence
    /// manager tells it because the user may be in the room on another instance too).
    fn announce(&mut self, room: Room, user: &UserId, status: PresenceStatus, by: Announce) {
        if !self.hub.settings().presence_events || by == Announce::ByManager {
            return;
        }
        self.send_presence(room, user.clone(), status);
    }

    /// Commits the batch's transitions, flushes held output, then evicts whoever was found full,
    /// until nothing is left to do (an eviction can empty a room and so need another commit), and
    /// writes the lanes it pushed to.
    fn finish_batch(&mut self) {
        self.dedup.sweep(Instant::now());
        loop {
            if !self.pending.is_empty() {
                self.hub.directory().apply(self.id, &self.pending);
                self.pending.clear();
            }
            self.release_held();
            let full = self.out.take_full();
            if full.is_empty() && self.pending.is_empty() {
                let counters = self.hub.metrics().shard(self.id);
                self.out.write_lanes(counters);
                self.out.write_deferred(Instant::now(), counters);
                return self.tell_if_settled();
            }
            for conn in full {
                if self.cache.get(conn).is_some() {
                    metrics::incr(&self.counters().slow_consumer_evictions);
                    self.remove(conn, Some(&close::SLOW_CONSUMER));
                }
            }
        }
    }

    fn release_held(&mut self) {
        for held in self.out.release() {
            match held {
                Held::Local { conn, frame } => {
                    if let Some(connection) = self.cache.get(conn) {
                        let counters = self.hub.metrics().shard(self.id);
                        self.out.push_now(conn, &connection.outbox, frame, counters);
                    }
                }
                Held::Route { target, frame, accepted_at, from } => {
                    self.hub.router().route(target, frame, accepted_at, Some(from))
                }
                Held::Registered(registered) => drop(registered.send(Enrolment::Accepted)),
                Held::Deliver { shard, delivery } if shard == self.id => self.on_delivery(delivery),
                Held::Deliver { shard, delivery } => self.hub.router().deliver(shard, delivery),
                Held::Numbered { reply, seq } => drop(reply.send(Some(seq))),
            }
        }
    }
}

impl std::fmt::Debug for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shard")
            .field("id", &self.id)
            .field("connections", &self.cache.len())
            .finish()
    }
}

#[cfg(test)]
mod tests;
