//! The Redis relay: one thread that alone talks to Redis for this instance.
//!
//! Owns: the Redis connections (one multiplexed for commands and publishes, one for subscriptions),
//! the channel subscriptions, and the mirror of local presence (which users are online here, who is in
//! which room) from which subscriptions and Redis presence are rebuilt after any reconnect.
//! May touch: the hub, to fan incoming messages out through `Hub::route` like local ones; the relay
//! counters. Must not: touch a shard's cache, or make a shard or session wait (its inputs are a
//! bounded queue fed with `try_send`, an unbounded queue of presence changes, and questions).
//!
//! While Redis is away the relay keeps draining its inputs: outgoing messages are dropped and counted,
//! changes update the mirror (join/leave are announced locally), questions go unanswered (the asker
//! answers locally, marked partial). It reconnects with backoff and rebuilds everything.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use redis::aio::{MultiplexedConnection, PubSubSink, PubSubStream};

use super::presence::{Lookup, Membership, Presence};
use super::wire::{self, Names};
use super::{LocalChange, Question};
use crate::hub::{Target, WeakHub};
use crate::protocol::{self, PresenceStatus, Room, UserId};

/// Longest any single Redis exchange may take before the connection counts as lost.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(2);
/// How often the relay pings Redis, so a hung server is noticed within a few seconds.
const PING_EVERY: Duration = Duration::from_secs(1);
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// Most presence changes applied in one round of Redis exchanges.
const CHANGE_BATCH: usize = 1024;

/// A message published on this instance, for the others.
#[derive(Debug)]
pub struct Outgoing {
    pub target: Target,
    pub frame: protocol::Frame,
}

/// The relay's inputs.
#[derive(Debug)]
pub struct Inputs {
    pub outgoing: flume::Receiver<Outgoing>,
    pub changes: flume::Receiver<LocalChange>,
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

/// Local presence as the relay last heard it from the shards.
#[derive(Debug, Default)]
struct Mirror {
    users: HashSet<UserId>,
    rooms: HashMap<Room, HashSet<UserId>>,
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
    hub: WeakHub,
    client: redis::Client,
    presence: Presence,
    inputs: Inputs,
    tuning: Tuning,
    mirror: Mirror,
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
        hub: WeakHub,
        client: redis::Client,
        presence: Presence,
        inputs: Inputs,
        tuning: Tuning,
    ) -> Self {
        Self { hub, client, presence, inputs, tuning, mirror: Mirror::default() }
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
        if let Some(hub) = self.hub.upgrade() {
            hub.metrics().relay.redis_up.store(u64::from(now_up), Relaxed);
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
        let conn = within("connect", self.client.get_multiplexed_async_connection()).await?;
        let pubsub = within("connect for subscriptions", self.client.get_async_pubsub()).await?;
        let (sink, messages) = pubsub.split();
        let mut link = Link { conn, sink, subscribed: HashSet::new() };
        within("load scripts", self.presence.load_scripts(&mut link.conn)).await?;
        let mut wanted: Vec<String> = vec![self.names().global_channel()];
        wanted.extend(self.mirror.users.iter().map(|user| self.names().user_channel(user)));
        wanted.extend(self.mirror.rooms.keys().map(|room| self.names().room_channel(room)));
        within("subscribe", link.sink.subscribe(&wanted)).await?;
        link.subscribed.extend(wanted);
        self.register_mirror(&mut link.conn).await?;
        self.heartbeat(&mut link).await?;
        Ok((link, messages))
    }

    /// Writes the mirror to Redis as this instance's whole presence.
    async fn register_mirror(&self, conn: &mut MultiplexedConnection) -> Exchange<()> {
        let users = self.mirror.users.iter().map(|user| user.as_ref());
        let rooms =
            self.mirror.rooms.iter().map(|(room, members)| {
                (room.as_ref(), members.iter().map(|u| u.as_ref()).collect())
            });
        within("register presence", self.presence.register(conn, users, rooms)).await
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
                change = self.inputs.changes.recv_async() => match change {
                    Ok(change) => self.apply_changes(change, &mut link).await,
                    Err(_) => Err(Stop::Finished),
                },
                outgoing = self.inputs.outgoing.recv_async() => match outgoing {
                    Ok(first) => self.publish_batch(first, &mut link.conn).await,
                    Err(_) => Err(Stop::Finished),
                },
                Ok(question) = self.inputs.questions.recv_async() => self.answer(question, &mut link.conn).await,
                _ = beat.tick() => self.heartbeat(&mut link).await,
                _ = ping.tick() => within("ping", redis::cmd("PING").query_async::<()>(&mut link.conn)).await,
            };
            if let Err(stop) = step {
                return stop;
            }
        }
    }

    /// A message from another instance: fanned out here exactly as a local publish is.
    fn on_incoming(&self, channel: &str, payload: &[u8]) {
        let (Some(target), Some((sender, frame))) =
            (self.names().target_of(channel), wire::decode_payload(payload))
        else {
            return tracing::debug!(channel, "ignored a message that is not ours");
        };
        if sender == self.presence.me {
            return;
        }
        if let Some(hub) = self.hub.upgrade() {
            hub.metrics().relay.received.fetch_add(1, Relaxed);
            hub.route(target, frame, Instant::now(), None);
        }
    }

    /// Sends `first` and whatever else arrives within the linger (up to a batch) in one pipeline.
    async fn publish_batch(
        &mut self,
        first: Outgoing,
        conn: &mut MultiplexedConnection,
    ) -> Exchange<()> {
        let mut batch = vec![first];
        let deadline = tokio::time::Instant::now() + self.tuning.linger;
        while batch.len() < self.tuning.batch {
            match self.inputs.outgoing.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) if self.tuning.linger.is_zero() => break,
                Err(_) => {
                    match tokio::time::timeout_at(deadline, self.inputs.outgoing.recv_async()).await
                    {
                        Ok(Ok(next)) => batch.push(next),
                        _ => break,
                    }
                }
            }
        }
        let mut pipe = redis::pipe();
        for Outgoing { target, frame } in &batch {
            let payload = wire::encode_payload(&self.presence.me, frame);
            for channel in self.names().channels_of(target) {
                pipe.publish(channel, &payload).ignore();
            }
        }
        let sent = within("publish", pipe.query_async::<()>(conn)).await;
        if let Some(hub) = self.hub.upgrade() {
            let counter = if sent.is_ok() {
                &hub.metrics().relay.published
            } else {
                &hub.metrics().relay.dropped
            };
            counter.fetch_add(batch.len() as u64, Relaxed);
        }
        sent
    }
}

/// A subscription a change may have made needed or unneeded.
enum Interest {
    User(UserId),
    Room(Room),
}

impl Relay {
    /// Applies `first` and the changes already waiting: subscribes to what became needed, writes the
    /// presence (so another instance that sees a user here knows this instance already listens), then
    /// unsubscribes from what is no longer needed.
    async fn apply_changes(&mut self, first: LocalChange, link: &mut Link) -> Exchange<()> {
        let mut batch = vec![first];
        while batch.len() < CHANGE_BATCH {
            let Ok(next) = self.inputs.changes.try_recv() else {
                break;
            };
            batch.push(next);
        }
        let mut interests = Vec::new();
        let mut users = redis::pipe();
        let mut memberships = Vec::new();
        for change in batch {
            match self.mirror_change(change) {
                Mirrored::User(user, online) => {
                    self.presence.user_command(&mut users, &user, online);
                    interests.push(Interest::User(user));
                }
                Mirrored::Room(membership, room, user) => {
                    interests.push(Interest::Room(room.clone()));
                    memberships.push((membership, room, user));
                }
            }
        }
        let (subscribe, unsubscribe) = self.subscription_changes(&interests, &link.subscribed);
        if !subscribe.is_empty() {
            within("subscribe", link.sink.subscribe(&subscribe)).await?;
            link.subscribed.extend(subscribe);
        }
        send_pipe("user presence", &users, &mut link.conn).await?;
        self.write_memberships(&memberships, &mut link.conn).await?;
        if !unsubscribe.is_empty() {
            within("unsubscribe", link.sink.unsubscribe(&unsubscribe)).await?;
            for channel in &unsubscribe {
                link.subscribed.remove(channel);
            }
        }
        Ok(())
    }

    /// Runs the join/leave scripts; announces here each join or leave that was the first or last in
    /// the cluster (the script already published it to the other instances).
    async fn write_memberships(
        &self,
        memberships: &[(Membership, Room, UserId)],
        conn: &mut MultiplexedConnection,
    ) -> Exchange<()> {
        if memberships.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        let mut frames = Vec::with_capacity(memberships.len());
        for (membership, room, user) in memberships {
            let frame = self.presence_frame(*membership, room, user);
            let payload = frame
                .as_ref()
                .map(|frame| wire::encode_payload(&self.presence.me, frame))
                .unwrap_or_default();
            self.presence.add_change(&mut pipe, membership, room, user, &payload);
            frames.push(frame);
        }
        let firsts: Vec<i64> = within("room presence", pipe.query_async(conn)).await?;
        for ((_, room, _), (frame, first)) in memberships.iter().zip(frames.into_iter().zip(firsts))
        {
            if let (Some(frame), 1) = (frame, first) {
                self.deliver_here(room, frame);
            }
        }
        Ok(())
    }

    fn presence_frame(
        &self,
        membership: Membership,
        room: &str,
        user: &str,
    ) -> Option<protocol::Frame> {
        let status = match membership {
            Membership::Join => PresenceStatus::Join,
            Membership::Leave => PresenceStatus::Leave,
        };
        self.tuning.presence_events.then(|| protocol::presence_event_frame(room, user, status))
    }

    fn deliver_here(&self, room: &Room, frame: protocol::Frame) {
        if let Some(hub) = self.hub.upgrade() {
            hub.route(Target::Room(room.clone()), frame, Instant::now(), None);
        }
    }

    /// Channels to subscribe to and to leave, given what the mirror now needs.
    fn subscription_changes(
        &self,
        interests: &[Interest],
        subscribed: &HashSet<String>,
    ) -> (Vec<String>, Vec<String>) {
        let (mut subscribe, mut unsubscribe) = (Vec::new(), Vec::new());
        for interest in interests {
            let (channel, wanted) = match interest {
                Interest::User(user) => {
                    (self.names().user_channel(user), self.mirror.users.contains(user))
                }
                Interest::Room(room) => {
                    (self.names().room_channel(room), self.mirror.rooms.contains_key(room))
                }
            };
            let listening = subscribed.contains(&channel) || subscribe.contains(&channel);
            if wanted && !listening {
                subscribe.push(channel);
            } else if !wanted && listening && !unsubscribe.contains(&channel) {
                unsubscribe.push(channel);
            }
        }
        (subscribe, unsubscribe)
    }

    /// Updates the mirror with one change.
    fn mirror_change(&mut self, change: LocalChange) -> Mirrored {
        match change {
            LocalChange::UserOnline(user) => {
                self.mirror.users.insert(user.clone());
                Mirrored::User(user, true)
            }
            LocalChange::UserOffline(user) => {
                self.mirror.users.remove(&user);
                Mirrored::User(user, false)
            }
            LocalChange::Joined { room, user } => {
                self.mirror.rooms.entry(room.clone()).or_default().insert(user.clone());
                Mirrored::Room(Membership::Join, room, user)
            }
            LocalChange::Left { room, user } => {
                if let Some(members) = self.mirror.rooms.get_mut(&room) {
                    members.remove(&user);
                    if members.is_empty() {
                        self.mirror.rooms.remove(&room);
                    }
                }
                Mirrored::Room(Membership::Leave, room, user)
            }
        }
    }

    async fn answer(&self, question: Question, conn: &mut MultiplexedConnection) -> Exchange<()> {
        let to_ids = |users: Vec<String>| users.into_iter().map(UserId::from).collect::<Vec<_>>();
        match question {
            Question::OnlineUsers(reply) => {
                let users =
                    within("online users", self.presence.query(conn, Lookup::Online)).await?;
                let _ = reply.send(to_ids(users));
            }
            Question::RoomUsers(room, reply) => {
                let users =
                    within("room users", self.presence.query(conn, Lookup::Room(&room))).await?;
                let _ = reply.send(to_ids(users));
            }
            Question::UserOnline(user, reply) => {
                let found =
                    within("user online", self.presence.query(conn, Lookup::User(&user))).await?;
                let _ = reply.send(!found.is_empty());
            }
        }
        Ok(())
    }

    /// Renews this instance, registers it again if Redis lost it, and announces the users that left
    /// with a reaped instance.
    async fn heartbeat(&mut self, link: &mut Link) -> Exchange<()> {
        let (survived, gone) = within("heartbeat", self.presence.heartbeat(&mut link.conn)).await?;
        if !survived && !self.mirror.users.is_empty() {
            tracing::warn!(instance = %self.presence.me, "redis lost this instance's presence: registering again");
            self.register_mirror(&mut link.conn).await?;
        }
        let mut pipe = redis::pipe();
        for (room, user) in gone {
            let Ok(room) = protocol::validate_room(&room) else {
                continue;
            };
            if let Some(frame) = self.presence_frame(Membership::Leave, &room, &user) {
                pipe.publish(
                    self.names().room_channel(&room),
                    wire::encode_payload(&self.presence.me, &frame),
                )
                .ignore();
                self.deliver_here(&room, frame);
            }
        }
        send_pipe("announce reaped users", &pipe, &mut link.conn).await
    }

    /// Waits `pause` without Redis, still draining the inputs so nothing grows or blocks.
    async fn offline_for(&mut self, pause: Duration) -> Exchange<()> {
        let deadline = tokio::time::Instant::now() + pause;
        loop {
            tokio::select! {
                () = tokio::time::sleep_until(deadline) => return Ok(()),
                change = self.inputs.changes.recv_async() => {
                    let change = change.map_err(|_| Stop::Finished)?;
                    if let Mirrored::Room(membership, room, user) = self.mirror_change(change) {
                        if let Some(frame) = self.presence_frame(membership, &room, &user) {
                            self.deliver_here(&room, frame);
                        }
                    }
                }
                outgoing = self.inputs.outgoing.recv_async() => {
                    outgoing.map_err(|_| Stop::Finished)?;
                    if let Some(hub) = self.hub.upgrade() {
                        hub.metrics().relay.dropped.fetch_add(1, Relaxed);
                    }
                }
                Ok(question) = self.inputs.questions.recv_async() => drop(question),
            }
        }
    }
}

/// What a change did to the mirror.
enum Mirrored {
    User(UserId, bool),
    Room(Membership, Room, UserId),
}
