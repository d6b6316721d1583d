//! The Redis relay: one thread that alone talks to Redis for this instance.
//!
//! Owns: the Redis connections (one multiplexed for commands and publishes, one for subscriptions),
//! the channel subscriptions, and the mirror of local presence (how many users are online here and
//! in each room) from which subscriptions are rebuilt after any reconnect; Redis presence is
//! rebuilt from what the shards answer then.
//! May touch: the shards only through its [`Router`], to fan incoming messages out like local ones;
//! the relay counters. Must not: touch a shard's cache, or make a shard or session wait (its inputs are a
//! bounded queue fed with `try_send`, an unbounded queue of presence changes, and questions).
//!
//! While Redis is away the relay keeps draining its inputs: outgoing messages are dropped and counted,
//! changes update the mirror (join/leave are announced locally), questions go unanswered (the asker
//! answers locally, marked partial). It reconnects with backoff and rebuilds everything.

mod changes;
mod offline;
mod outgoing;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use redis::aio::{MultiplexedConnection, PubSubSink, PubSubStream};

use super::endpoint::Endpoint;
use super::mirror::Mirror;
use super::presence::Presence;
use super::streams::{RoomStreams, FRAME_SEPARATOR};
use super::wire::{self, Names};
use crate::broker::{LocalChange, Question};
use crate::directory::ShardId;
use crate::mailbox::{Delivery, LocalPresence, Query, ReplayRequest, Target, ToSequence};
use crate::metrics::RelayCounters;
use crate::protocol::{Frame, Room, UserId};
use crate::router::Router;

/// Longest any single Redis exchange may take before the connection counts as lost.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(2);
/// How often the relay pings Redis, so a hung server is noticed within a few seconds.
const PING_EVERY: Duration = Duration::from_secs(1);
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// Most presence changes applied in one round of Redis exchanges.
const CHANGE_BATCH: usize = 1024;

/// What this instance sends out through Redis.
#[derive(Debug)]
pub enum Outgoing {
    /// A message published here, for the other instances.
    Publish { target: Target, frame: crate::protocol::Frame },
    /// A room message to number and publish to every instance (this one too); `home` hears back.
    Stamp { item: Box<ToSequence>, home: ShardId },
}

/// What must follow the local changes in order: a change, or a step that waits for them.
#[derive(Debug)]
pub enum Ordered {
    Change(LocalChange),
    /// Hand `then` to `shard` once the subscriptions of the changes before are confirmed.
    Notify {
        shard: ShardId,
        then: Delivery,
    },
    /// Read a room's stream for a resume (after its subscription), answered to `home`.
    Read {
        request: Box<ReplayRequest>,
        home: ShardId,
    },
    /// A moderation action, for every other instance's shards.
    Notice(Box<crate::rules::Notice>),
    /// The instance is stopping: hold the local changes from now on.
    HoldChanges,
    /// After `grace`, apply the held changes, announcing the leaves, then tell `done`.
    HandOver {
        grace: Duration,
        done: tokio::sync::oneshot::Sender<()>,
    },
}

/// A stopping instance's presence, kept in the cluster for a grace period.
#[derive(Debug, Default)]
struct Handover {
    held: Vec<LocalChange>,
    /// When the held changes are applied, and who waits for it.
    finish: Option<(tokio::time::Instant, tokio::sync::oneshot::Sender<()>)>,
}

/// The relay's inputs.
#[derive(Debug)]
pub struct Inputs {
    pub outgoing: flume::Receiver<Outgoing>,
    /// A tokio queue, not flume's: a connect storm fills it, and its blocks are freed once drained.
    pub changes: tokio::sync::mpsc::UnboundedReceiver<Ordered>,
    pub questions: flume::Receiver<Question>,
}

/// How the relay is tuned (from the flags).
#[derive(Debug, Clone)]
pub struct Tuning {
    pub batch: usize,
    pub linger: Duration,
    pub heartbeat: Duration,
    pub presence_events: bool,
}

/// The connections while Redis is reachable, and what the subscription connection listens to.
struct Link {
    conn: MultiplexedConnection,
    sink: PubSubSink,
    subscribed: HashSet<String>,
}

/// Why the relay stopped serving a connection.
enum Stop {
    Lost(String),
    /// Every sender is gone: the broker shut down.
    Finished,
}

pub struct Relay {
    router: Router,
    counters: Arc<RelayCounters>,
    /// Where the master is (asked again at each connect, so a Sentinel failover is followed).
    endpoint: Endpoint,
    presence: Presence,
    streams: RoomStreams,
    inputs: Inputs,
    tuning: Tuning,
    mirror: Mirror,
    handover: Option<Handover>,
    /// This instance's channel, where messages for its users arrive.
    own_channel: String,
    /// Where moderation actions go to every instance.
    notice_channel: String,
}

type Exchange<T> = Result<T, Stop>;

/// Runs `exchange` within [`EXCHANGE_TIMEOUT`]; any failure means the connection is lost.
async fn within<T>(
    what: &str,
    exchange: impl std::future::Future<Output = redis::RedisResult<T>>,
) -> Exchange<T> {
    match tokio::time::timeout(EXCHANGE_TIMEOUT, exchange).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(err)) => Err(Stop::Lost(format!("{what}: {err}"))),
        Err(_) => Err(Stop::Lost(format!("{what}: no answer within {EXCHANGE_TIMEOUT:?}"))),
    }
}

/// Resolves when a handover's grace period ends (never without one).
async fn handover_due(handover: &Option<Handover>) {
    match handover.as_ref().and_then(|handover| handover.finish.as_ref()) {
        Some((at, _)) => tokio::time::sleep_until(*at).await,
        None => std::future::pending().await,
    }
}

/// Sends a pipeline whose replies are not needed (Redis refuses an empty one, so that is skipped).
async fn send_pipe(
    what: &str,
    pipe: &redis::Pipeline,
    conn: &mut MultiplexedConnection,
) -> Exchange<()> {
    if pipe.is_empty() {
        return Ok(());
    }
    within(what, pipe.query_async::<()>(conn)).await
}

impl Relay {
    pub fn new(
        (router, counters): (Router, Arc<RelayCounters>),
        endpoint: Endpoint,
        (presence, streams): (Presence, RoomStreams),
        inputs: Inputs,
        tuning: Tuning,
    ) -> Self {
        let (mirror, handover) = (Mirror::default(), None);
        let own_channel = presence.names.instance_channel(&presence.me);
        let notice_channel = presence.names.notice_channel();
        Self {
            router,
            counters,
            endpoint,
            presence,
            streams,
            inputs,
            tuning,
            mirror,
            handover,
            own_channel,
            notice_channel,
        }
    }

    fn names(&self) -> &Names {
        &self.presence.names
    }

    /// Connects, serves, and reconnects with backoff, until the broker is dropped.
    pub async fn run(mut self) {
        let mut backoff = MIN_BACKOFF;
        let mut up = None;
        loop {
            let stop = match self.connect().await {
                Ok((link, messages)) => {
                    backoff = MIN_BACKOFF;
                    self.set_up(&mut up, true, "connected");
                    self.serve(link, messages).await
                }
                Err(stop) => stop,
            };
            match stop {
                Stop::Finished => return,
                Stop::Lost(why) => self.set_up(&mut up, false, &why),
            }
            if let Err(Stop::Finished) = self.offline_for(backoff).await {
                return;
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// Records and logs (once per change) whether Redis is reachable.
    fn set_up(&self, up: &mut Option<bool>, now_up: bool, why: &str) {
        self.counters.redis_up.store(u64::from(now_up), Relaxed);
        if now_up && *up == Some(false) {
            // What the other instances did meanwhile may not have reached this one: the
            // moderation sweep reads what is in force again when it sees this move.
            self.counters.reconnects.fetch_add(1, Relaxed);
        }
        if *up != Some(now_up) {
            if now_up {
                tracing::info!(instance = %self.presence.me, "redis relay {why}");
            } else {
                tracing::warn!(instance = %self.presence.me, reason = why, "redis unavailable: serving local traffic only");
            }
            *up = Some(now_up);
        }
    }

    /// Opens both connections, subscribes to everything the mirror needs and registers its presence.
    async fn connect(&mut self) -> Exchange<(Link, PubSubStream)> {
        let client = within("find the master", self.endpoint.resolve()).await?;
        let mut conn = within("connect", client.get_multiplexed_async_connection()).await?;
        // Right after a failover a sentinel may still name the old master, back as a replica.
        let role: Vec<redis::Value> =
            within("ask its role", redis::cmd("ROLE").query_async(&mut conn)).await?;
        if !matches!(role.first(), Some(redis::Value::BulkString(role)) if role == b"master") {
            return Err(Stop::Lost("the server named is not the master (yet)".into()));
        }
        let pubsub = within("connect for subscriptions", client.get_async_pubsub()).await?;
        let (sink, messages) = pubsub.split();
        let mut link = Link { conn, sink, subscribed: HashSet::new() };
        within("load scripts", self.streams.load_scripts(&mut link.conn)).await?;
        within("load scripts", self.presence.load_scripts(&mut link.conn)).await?;
        let wanted = self.mirror.wanted_channels(self.names(), &self.presence.me);
        within("subscribe", link.sink.subscribe(&wanted)).await?;
        link.subscribed.extend(wanted);
        self.register_mirror(&mut link.conn).await?;
        self.heartbeat(&mut link).await?;
        Ok((link, messages))
    }

    /// Writes who the shards have online and in which rooms now to Redis as this instance's whole
    /// presence. The change queue waits meanwhile, and the changes still in it follow, so each user
    /// ends as its last change says. With nobody here as far as the applied changes go, the queued
    /// ones are all there is to say.
    async fn register_mirror(&self, conn: &mut MultiplexedConnection) -> Exchange<()> {
        let nobody = self.mirror.users == 0 && self.mirror.rooms.is_empty();
        let here = if nobody { LocalPresence::default() } else { self.presence_here().await? };
        let users = here.users.iter().map(|user| user.as_ref());
        let rooms = here.rooms.iter().map(|(room, members)| {
            (room.as_ref(), members.iter().map(|user| user.as_ref()).collect())
        });
        within("register presence", self.presence.register(conn, users, rooms)).await
    }

    /// Who is online on this instance and in each of its rooms, from its shards.
    async fn presence_here(&self) -> Exchange<LocalPresence> {
        let asked = (0..self.router.shard_count()).map(|shard| {
            let (reply, answer) = tokio::sync::oneshot::channel();
            self.router.deliver(shard, Delivery::Query(Query::Presence(reply)));
            answer
        });
        let answers = futures_util::future::join_all(asked.collect::<Vec<_>>());
        let answers = tokio::time::timeout(EXCHANGE_TIMEOUT, answers).await;
        let answers =
            answers.map_err(|_| Stop::Lost("the shards did not say who is here".into()))?;
        let mut here = LocalPresence::default();
        let mut rooms: HashMap<Room, Vec<UserId>> = HashMap::new();
        // A shard that has stopped has nobody.
        for answer in answers.into_iter().flatten() {
            here.users.extend(answer.users);
            for (room, users) in answer.rooms {
                rooms.entry(room).or_default().extend(users);
            }
        }
        here.rooms = rooms.into_iter().collect();
        Ok(here)
    }

    async fn serve(&mut self, mut link: Link, mut messages: PubSubStream) -> Stop {
        let mut beat = tokio::time::interval(self.tuning.heartbeat);
        let mut ping = tokio::time::interval(PING_EVERY);
        beat.reset();
        loop {
            let step = tokio::select! {
                biased;
                message = messages.next() => match message {
                    Some(message) => {
                        self.on_incoming(message.get_channel_name(), message.get_payload_bytes());
                        Ok(())
                    }
                    None => Err(Stop::Lost("the subscription connection closed".into())),
                },
                change = self.inputs.changes.recv() => match change {
                    Some(change) => self.apply_changes(change, &mut link).await,
                    None => Err(Stop::Finished),
                },
                outgoing = self.inputs.outgoing.recv_async() => match outgoing {
                    Ok(first) => self.publish_batch(first, &mut link.conn).await,
                    Err(_) => Err(Stop::Finished),
                },
                Ok(question) = self.inputs.questions.recv_async() => self.answer(question, &mut link.conn).await,
                () = handover_due(&self.handover) => self.hand_over(&mut link).await,
                _ = beat.tick() => self.heartbeat(&mut link).await,
                _ = ping.tick() => within("ping", redis::cmd("PING").query_async::<()>(&mut link.conn)).await,
            };
            if let Err(stop) = step {
                return stop;
            }
        }
    }

    /// A message from another instance: fanned out here exactly as a local publish is. A numbered
    /// room message (this instance's own too) goes to the room's home shard, which fans it out.
    fn on_incoming(&self, channel: &str, payload: &[u8]) {
        if channel == self.notice_channel {
            return self.on_notice(payload);
        }
        let (target, payload) = if channel == self.own_channel {
            wire::decode_addressed(payload).map_or((None, payload), |(t, rest)| (Some(t), rest))
        } else {
            (self.names().target_of(channel), payload)
        };
        let (Some(target), Some((header, frame))) = (target, wire::decode_payload(payload)) else {
            return tracing::debug!(channel, "ignored a message that is not ours");
        };
        if let (Target::Room(room), Some((sender, first, epoch))) =
            (&target, wire::decode_numbered(header))
        {
            let (epoch, home) = (Arc::<str>::from(epoch), self.router.home_of(room));
            for (frame, seq) in frame.as_str().split(FRAME_SEPARATOR).zip(first..) {
                if sender != self.presence.me {
                    self.counters.received.fetch_add(1, Relaxed);
                }
                let (room, epoch, frame) = (room.clone(), Arc::clone(&epoch), Frame::from(frame));
                self.router.deliver(home, Delivery::Sequenced { room, seq, epoch, frame });
            }
            return;
        }
        if header == self.presence.me {
            return;
        }
        self.counters.received.fetch_add(1, Relaxed);
        self.router.route(target, frame, Instant::now(), None);
    }
}

impl Relay {
    /// A moderation action from another instance, for the shard that enforces it here.
    fn on_notice(&self, payload: &[u8]) {
        let Some((sender, json)) = wire::decode_payload(payload) else { return };
        if sender == self.presence.me {
            return;
        }
        match serde_json::from_str::<crate::rules::Notice>(json.as_str()) {
            Ok(notice) => self.router.enforce(notice),
            Err(err) => tracing::warn!(%err, "ignored a moderation notice that does not parse"),
        }
    }
}
