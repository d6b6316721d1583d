//! The hub: a cloneable handle to everything a shard, a session or the HTTP API reaches beyond
//! itself: the router to the shards, the broker to the other instances, the metrics and the settings.
//!
//! Owns: nothing that changes; all of it is fixed at start-up and shared read-only. It publishes from
//! outside any shard and scatter-gathers the presence queries (shards, then the cluster).
//! May touch: shard inboxes through the router, the broker. Must not: hold connection state; every
//! answer about connections comes from the shards that own them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::broker::{Broker, Coverage, PresenceManager, Question, Seams, Sequencer};
use crate::config::Config;
use crate::directory::{RoomDirectory, ShardId};
use crate::mailbox::{
    Command, ConnInfo, Delivery, Enrolment, Inbox, Origin, Query, Registration, Target, ToSequence,
    UserStatus,
};
use crate::metrics::Metrics;
use crate::protocol::{Frame, Room, UserId};
use crate::router::Router;
use crate::rules::Notice;
use crate::store::Store;

#[derive(Debug)]
struct HubInner {
    router: Router,
    metrics: Metrics,
    settings: Config,
    /// The other instances (or nobody, standalone): fan-out, presence, numbering.
    seams: Seams,
    /// `None` with `--database-url none`.
    store: Option<Store>,
}

/// What a hub is made of, built by the server (or a test) before the hub.
#[derive(Debug)]
pub struct Parts {
    pub settings: Config,
    pub router: Router,
    pub seams: Seams,
    pub store: Option<Store>,
    pub metrics: Metrics,
}

/// A cheap handle (one `Arc`) to the shards, the broker, the metrics and the settings.
#[derive(Debug, Clone)]
pub struct Hub(Arc<HubInner>);

/// How long a presence question waits for Redis before answering locally.
const QUESTION_TIMEOUT: Duration = Duration::from_secs(2);

impl Hub {
    /// A standalone hub (no other instances) and the inboxes its shards will read.
    pub fn new(settings: Config) -> (Self, Vec<Inbox>) {
        let (router, inboxes) = Router::new(settings.shard_count());
        let metrics = Metrics::new(router.shard_count());
        let parts = Parts { settings, router, seams: Seams::standalone(), store: None, metrics };
        (Self::from_parts(parts), inboxes)
    }

    pub fn from_parts(parts: Parts) -> Self {
        let Parts { settings, router, seams, store, metrics } = parts;
        Self(Arc::new(HubInner { router, metrics, settings, seams, store }))
    }

    pub fn settings(&self) -> &Config {
        &self.0.settings
    }

    pub fn metrics(&self) -> &Metrics {
        &self.0.metrics
    }

    /// Carries publishes to the other instances.
    pub fn broker(&self) -> &dyn Broker {
        self.0.seams.broker.as_ref()
    }

    /// Presence across the instances.
    pub fn presence(&self) -> &dyn PresenceManager {
        self.0.seams.presence.as_ref()
    }

    /// Numbers each room's messages.
    pub fn sequencer(&self) -> &dyn Sequencer {
        self.0.seams.sequencer.as_ref()
    }

    /// The message store (`None` without persistence).
    pub fn store(&self) -> Option<&Store> {
        self.0.store.as_ref()
    }

    pub fn router(&self) -> &Router {
        &self.0.router
    }

    pub fn directory(&self) -> &RoomDirectory {
        self.router().directory()
    }

    /// Registers a connection with its shard, which accepts or refuses it.
    pub async fn register(&self, shard: ShardId, registration: Registration) -> Enrolment {
        let (registered, answer) = oneshot::channel();
        let command = Command::Register(Box::new(registration), registered);
        if !self.router().command(shard, command).await {
            return Enrolment::ShuttingDown;
        }
        answer.await.unwrap_or(Enrolment::ShuttingDown)
    }

    /// Publishes from outside any shard (the HTTP API): every shard with recipients gets it, then
    /// the other instances.
    pub fn publish(&self, target: Target, frame: Frame) {
        self.router().route(target.clone(), frame.clone(), Instant::now(), None);
        self.broker().publish(&target, &frame);
    }

    /// Puts a moderation action in force: on the shard of this instance that enforces it, then on
    /// the other instances.
    pub fn enforce(&self, notice: Notice) {
        self.broker().notify(&notice);
        self.router().enforce(notice);
    }

    /// Publishes into a room from outside any shard (the HTTP API): the room's home numbers,
    /// encodes, stores and fans it out, as a member's chat. Answers its seq once it is in (`None`:
    /// the home refused it).
    pub async fn publish_in_room(&self, item: impl FnOnce(Origin) -> ToSequence) -> Option<u64> {
        let (reply, seq) = oneshot::channel();
        let item = item(Origin::Reply(reply));
        let home = self.router().home_of(&item.room);
        self.router().deliver(home, Delivery::Sequence(Box::new(item)));
        seq.await.ok().flatten()
    }

    /// Asks the presence manager about the other instances; `Err`: it did not answer in time.
    async fn ask_cluster<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Question,
    ) -> Result<T, Coverage> {
        let (reply, answer) = oneshot::channel();
        self.presence().ask(make(reply));
        match tokio::time::timeout(QUESTION_TIMEOUT, answer).await {
            Ok(Ok(value)) => Ok(value),
            _ => Err(Coverage::Partial),
        }
    }

    /// Asks every shard the same question and gathers the answers.
    async fn ask_all<T>(&self, make: impl Fn(oneshot::Sender<T>) -> Query) -> Vec<T> {
        let mut answers = Vec::with_capacity(self.router().shard_count());
        for shard in 0..self.router().shard_count() {
            let (reply, answer) = oneshot::channel();
            self.router().deliver(shard, Delivery::Query(make(reply)));
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
        self.router().deliver(self.router().shard_of_user(user), Delivery::Query(make(reply)));
        answer.await.ok()
    }

    /// Frames waiting in this instance's connections' outboxes, over every shard.
    pub async fn queued_frames(&self) -> u64 {
        self.ask_all(Query::Queued).await.into_iter().sum()
    }

    /// Every online user (in the cluster, when there is one), sorted.
    pub async fn online_users(&self) -> (Vec<UserId>, Coverage) {
        let local: Vec<UserId> =
            self.ask_all(Query::OnlineUsers).await.into_iter().flatten().collect();
        let (mut users, coverage) = match self.ask_cluster(Question::OnlineUsers).await {
            Ok(cluster) => (local.into_iter().chain(cluster).collect(), self.presence().coverage()),
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
                    self.presence().coverage()
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
        if local != UserStatus::Offline {
            return (local, self.presence().coverage());
        }
        match self.ask_cluster(|reply| Question::UserOnline(user.clone(), reply)).await {
            Ok(true) => (UserStatus::Online, self.presence().coverage()),
            Ok(false) => (local, self.presence().coverage()),
            Err(coverage) => (local, coverage),
        }
    }

    pub async fn user_connections(&self, user: &UserId) -> Vec<ConnInfo> {
        let ask = |reply| Query::UserConnections { user: user.clone(), reply };
        self.ask_owner(user, ask).await.unwrap_or_default()
    }

    /// Tells every shard to take no new chat; completes once each has acked every chat it took.
    pub async fn quiesce(&self) {
        let mut settled = Vec::new();
        for shard in 0..self.router().shard_count() {
            let (reply, answer) = oneshot::channel();
            self.router().deliver(shard, Delivery::Quiesce(reply));
            settled.push(answer);
        }
        for answer in settled {
            let _ = answer.await;
        }
    }

    /// Tells every shard to close its connections with 1001 and stop.
    pub fn shutdown(&self) {
        for shard in 0..self.router().shard_count() {
            self.router().deliver(shard, Delivery::Shutdown);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;
    use crate::broker::Standalone;
    use crate::directory::ShardId;

    /// A broker that records whether the shard already had the message when it was handed over.
    #[derive(Debug)]
    struct AfterLocal {
        inbox: Arc<std::sync::Mutex<crate::mailbox::Inbox>>,
        local_first: Arc<AtomicBool>,
    }

    impl Broker for AfterLocal {
        fn publish(&self, _target: &Target, _frame: &Frame) {
            let delivered = !self.inbox.lock().unwrap().deliveries.is_empty();
            self.local_first.store(delivered, Ordering::SeqCst);
        }
        fn is_ready(&self) -> bool {
            true
        }
        fn when_subscribed(&self, _shard: ShardId, then: Delivery) -> Option<Delivery> {
            Some(then)
        }
        fn notify(&self, _notice: &Notice) {}
    }

    #[test]
    fn an_http_publish_reaches_the_local_shards_before_the_other_instances() {
        let mut config = Config::with_listen("127.0.0.1:0".parse().unwrap());
        config.shards = Some(1);
        let (router, mut inboxes) = Router::new(1);
        let local_first = Arc::new(AtomicBool::new(false));
        let inbox = Arc::new(std::sync::Mutex::new(inboxes.remove(0)));
        let broker = Arc::new(AfterLocal { inbox, local_first: Arc::clone(&local_first) });
        let standalone = Arc::new(Standalone);
        let seams = Seams { broker, presence: standalone.clone(), sequencer: standalone };
        let metrics = Metrics::new(1);
        let hub = Hub::from_parts(Parts { settings: config, router, seams, store: None, metrics });
        hub.publish(
            Target::All,
            crate::protocol::reply_frame(crate::protocol::MessageType::Ack, None),
        );
        assert!(local_first.load(Ordering::SeqCst), "routed locally, then handed to the broker");
    }
}
