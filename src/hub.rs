//! The hub: a cloneable handle that reaches every shard, and the routing rules between them.
//!
//! Owns: the shards' inbox senders, the room directory, the metrics and the settings, all fixed at
//! start-up and shared read-only. It answers "which shards must see this?" and scatter-gathers queries.
//! May touch: shard inboxes (commands with backpressure, deliveries without waiting). Must not: hold
//! connection state; every answer about connections comes from the shards that own them.

use std::collections::BTreeSet;
use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::cluster::{Broker, Question, Standalone};
use crate::config::Config;
use crate::directory::{RoomDirectory, ShardId, ShardSet};
use crate::metrics::{Metrics, RelayCounters};
use crate::protocol::{Frame, Room, UserId};
use crate::shard::cache::{ConnInfo, UserStatus};
use crate::shard::{Command, Delivery, Inbox, Query, Registration};

/// Who a publish is for.
#[derive(Debug, Clone)]
pub enum Target {
    Room(Room),
    /// Every connection (device) of one user.
    User(UserId),
    /// Every connection of each listed user.
    Users(Vec<UserId>),
    /// Every connection.
    All,
}

/// The sending ends of one shard's inboxes.
#[derive(Debug)]
struct ShardLink {
    commands: flume::Sender<Command>,
    deliveries: flume::Sender<Delivery>,
}

#[derive(Debug)]
struct HubInner {
    shards: Box<[ShardLink]>,
    directory: RoomDirectory,
    metrics: Metrics,
    settings: Config,
    /// The other instances (or nobody, standalone).
    broker: Box<dyn Broker>,
}

/// A cheap handle (one `Arc`) to the shards.
#[derive(Debug, Clone)]
pub struct Hub(Arc<HubInner>);

/// A handle that does not keep the hub alive (held by the relay thread, which the hub owns).
#[derive(Debug, Clone)]
pub struct WeakHub(Weak<HubInner>);

impl WeakHub {
    pub fn upgrade(&self) -> Option<Hub> {
        self.0.upgrade().map(Hub)
    }
}

/// How much of the cluster a presence answer covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coverage {
    /// A single instance: the answer is complete.
    Instance,
    /// Every live instance.
    Cluster,
    /// Cluster mode, but Redis did not answer: only this instance's connections.
    Partial,
}

impl Coverage {
    /// The `partial` field of an HTTP answer: absent for a single instance.
    pub fn partial(self) -> Option<bool> {
        match self {
            Self::Instance => None,
            Self::Cluster => Some(false),
            Self::Partial => Some(true),
        }
    }
}

/// How long a presence question waits for Redis before answering locally.
const QUESTION_TIMEOUT: Duration = Duration::from_secs(2);

/// Capacity of a shard's command inbox: how far sessions may run ahead of their shard.
const COMMAND_INBOX: usize = 4096;

impl Hub {
    /// A standalone hub (no other instances) and the inboxes its shards will read.
    pub fn new(settings: Config) -> (Self, Vec<Inbox>) {
        Self::with_broker(settings, Box::new(Standalone), Arc::default())
    }

    /// A hub whose publishes and presence also go through `broker`, which counts into `relay`.
    pub fn with_broker(
        settings: Config,
        broker: Box<dyn Broker>,
        relay: Arc<RelayCounters>,
    ) -> (Self, Vec<Inbox>) {
        let count = settings.shard_count();
        let (links, inboxes): (Vec<ShardLink>, Vec<Inbox>) = (0..count)
            .map(|_| {
                let (commands, commands_rx) = flume::bounded(COMMAND_INBOX);
                let (deliveries, deliveries_rx) = flume::unbounded();
                (
                    ShardLink { commands, deliveries },
                    Inbox { commands: commands_rx, deliveries: deliveries_rx },
                )
            })
            .unzip();
        let (metrics, directory) = (Metrics::new(count, relay), RoomDirectory::new());
        let inner =
            HubInner { shards: links.into_boxed_slice(), directory, metrics, settings, broker };
        (Self(Arc::new(inner)), inboxes)
    }

    pub fn settings(&self) -> &Config {
        &self.0.settings
    }

    pub fn metrics(&self) -> &Metrics {
        &self.0.metrics
    }

    pub fn broker(&self) -> &dyn Broker {
        self.0.broker.as_ref()
    }

    pub fn downgrade(&self) -> WeakHub {
        WeakHub(Arc::downgrade(&self.0))
    }

    pub fn directory(&self) -> &RoomDirectory {
        &self.0.directory
    }

    pub fn shard_count(&self) -> usize {
        self.0.shards.len()
    }

    /// The shard that owns every connection of `user`: a stable hash, the same on every instance.
    pub fn shard_of_user(&self, user: &str) -> ShardId {
        let hash = BuildHasherDefault::<DefaultHasher>::default().hash_one(user);
        (hash % self.shard_count() as u64) as ShardId
    }

    /// Registers a connection with its user's shard; `false` when refused (shutting down).
    pub async fn register(&self, registration: Registration) -> bool {
        let (registered, answer) = oneshot::channel();
        let shard = self.shard_of_user(&registration.user);
        self.command(shard, Command::Register(Box::new(registration), registered)).await
            && answer.await.unwrap_or(false)
    }

    /// Sends a command, waiting while the shard's inbox is full; `false` once the shard has stopped.
    pub async fn command(&self, shard: ShardId, command: Command) -> bool {
        self.0.shards[shard].commands.send_async(command).await.is_ok()
    }

    fn deliver(&self, shard: ShardId, delivery: Delivery) {
        // An unbounded send fails only once the shard has stopped, when nobody is left to deliver to.
        let _ = self.0.shards[shard].deliveries.send(delivery);
    }

    /// Sends a publish to every shard that may hold a recipient, except `skip` (which served its own).
    pub fn route(&self, target: Target, frame: Frame, accepted_at: Instant, skip: Option<ShardId>) {
        let without_skipped = |shards: ShardSet| skip.map_or(shards, |s| shards.without(s));
        let candidates = match target {
            Target::Users(users) => {
                return self.route_users(
                    users,
                    frame,
                    accepted_at,
                    without_skipped(self.all_shards()),
                )
            }
            Target::Room(ref room) => self.directory().shards_of(room),
            Target::User(ref user) => ShardSet::default().with(self.shard_of_user(user)),
            Target::All => self.all_shards(),
        };
        for shard in without_skipped(candidates).iter() {
            self.deliver(
                shard,
                Delivery::Publish { target: target.clone(), frame: frame.clone(), accepted_at },
            );
        }
    }

    fn route_users(
        &self,
        users: Vec<UserId>,
        frame: Frame,
        accepted_at: Instant,
        allowed: ShardSet,
    ) {
        let mut per_shard: Vec<Vec<UserId>> = vec![Vec::new(); self.shard_count()];
        let unique: BTreeSet<UserId> = users.into_iter().collect();
        for user in unique {
            per_shard[self.shard_of_user(&user)].push(user);
        }
        for (shard, users) in per_shard.into_iter().enumerate() {
            if !users.is_empty() && allowed.contains(shard) {
                self.deliver(
                    shard,
                    Delivery::Publish {
                        target: Target::Users(users),
                        frame: frame.clone(),
                        accepted_at,
                    },
                );
            }
        }
    }

    fn all_shards(&self) -> ShardSet {
        (0..self.shard_count()).fold(ShardSet::default(), ShardSet::with)
    }

    /// Publishes from outside any shard (the HTTP API): every shard with recipients gets it, and
    /// the other instances.
    pub fn publish(&self, target: Target, frame: Frame) {
        self.broker().publish(&target, &frame);
        self.route(target, frame, Instant::now(), None);
    }

    /// Asks the cluster; `Err` says how much the local answer covers instead.
    async fn ask_cluster<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Question,
    ) -> Result<T, Coverage> {
        let (reply, answer) = oneshot::channel();
        if !self.broker().ask(make(reply)) {
            return Err(Coverage::Instance);
        }
        match tokio::time::timeout(QUESTION_TIMEOUT, answer).await {
            Ok(Ok(value)) => Ok(value),
            _ => Err(Coverage::Partial),
        }
    }

    /// Asks every shard the same question and gathers the answers.
    async fn ask_all<T>(&self, make: impl Fn(oneshot::Sender<T>) -> Query) -> Vec<T> {
        let mut answers = Vec::with_capacity(self.shard_count());
        for shard in 0..self.shard_count() {
            let (reply, answer) = oneshot::channel();
            self.deliver(shard, Delivery::Query(make(reply)));
            answers.push(answer);
        }
        let mut gathered = Vec::with_capacity(answers.len());
        for answer in answers {
            if let Ok(value) = answer.await {
                gathered.push(value);
            }
        }
        gathered
    }

    async fn ask_owner<T>(
        &self,
        user: &UserId,
        make: impl FnOnce(oneshot::Sender<T>) -> Query,
    ) -> Option<T> {
        let (reply, answer) = oneshot::channel();
        self.deliver(self.shard_of_user(user), Delivery::Query(make(reply)));
        answer.await.ok()
    }

    /// Every online user (in the cluster, when there is one), sorted.
    pub async fn online_users(&self) -> (Vec<UserId>, Coverage) {
        let local: Vec<UserId> =
            self.ask_all(Query::OnlineUsers).await.into_iter().flatten().collect();
        let (mut users, coverage) = match self.ask_cluster(Question::OnlineUsers).await {
            Ok(cluster) => (local.into_iter().chain(cluster).collect(), Coverage::Cluster),
            Err(coverage) => (local, coverage),
        };
        users.sort_unstable();
        users.dedup();
        (users, coverage)
    }

    /// The users in `room` (in the cluster, when there is one), sorted, each with whether it is away
    /// (known for this instance's users only).
    pub async fn room_users(&self, room: &Room) -> (Vec<(UserId, bool)>, Coverage) {
        let ask = |reply| Query::RoomUsers { room: room.clone(), reply };
        let mut users: Vec<(UserId, bool)> =
            self.ask_all(ask).await.into_iter().flatten().collect();
        let coverage =
            match self.ask_cluster(|reply| Question::RoomUsers(room.clone(), reply)).await {
                Ok(cluster) => {
                    users.extend(cluster.into_iter().map(|user| (user, false)));
                    Coverage::Cluster
                }
                Err(coverage) => coverage,
            };
        // Sorted with `away` first for each user, so the local answer wins over the cluster's `false`.
        users.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
        users.dedup_by(|next, kept| next.0 == kept.0);
        (users, coverage)
    }

    /// This instance's status of `user`; offline here but online elsewhere counts as online.
    pub async fn user_status(&self, user: &UserId) -> (UserStatus, Coverage) {
        let ask = |reply| Query::UserStatus { user: user.clone(), reply };
        let local = self.ask_owner(user, ask).await.unwrap_or(UserStatus::Offline);
        if local != UserStatus::Offline && self.broker().decides_presence() {
            return (local, Coverage::Cluster);
        }
        match self.ask_cluster(|reply| Question::UserOnline(user.clone(), reply)).await {
            Ok(true) => (UserStatus::Online, Coverage::Cluster),
            Ok(false) => (local, Coverage::Cluster),
            Err(coverage) => (local, coverage),
        }
    }

    pub async fn user_connections(&self, user: &UserId) -> Vec<ConnInfo> {
        let ask = |reply| Query::UserConnections { user: user.clone(), reply };
        self.ask_owner(user, ask).await.unwrap_or_default()
    }

    /// Tells every shard to close its connections with 1001 and stop.
    pub fn shutdown(&self) {
        for shard in 0..self.shard_count() {
            self.deliver(shard, Delivery::Shutdown);
        }
    }
}
