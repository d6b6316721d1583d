//! The contract suites of the seams between instances (`wsbroker::broker`): one suite per seam,
//! each check run against every implementation, standalone and Redis, as `store.rs` runs the
//! store's against SQLite and PostgreSQL. Each check drives the seam directly, with one shard's
//! inbox standing in for the instance's shards.

mod broker;
mod presence;
mod sequencer;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use serde_json::value::RawValue;
use wsbroker::broker::{Announce, LocalChange, Seams};
use wsbroker::cluster::redis::RedisBroker;
use wsbroker::directory::Transition;
use wsbroker::mailbox::{Delivery, Inbox, Origin, ToSequence};
use wsbroker::metrics::RelayCounters;
use wsbroker::protocol::{MessageType, Room};
use wsbroker::router::Router;
use wsbroker::Config;

use crate::common::WAIT;
use crate::redis_server::RedisServer;

/// Where the instances of a check come from.
pub enum Deployment {
    /// Each instance is on its own.
    Standalone,
    /// The instances share one Redis, so they act as one.
    Redis(RedisServer),
}

impl Deployment {
    pub async fn redis() -> Self {
        Self::Redis(RedisServer::start().await)
    }

    /// Whether two instances made here reach each other.
    pub fn connects_instances(&self) -> bool {
        matches!(self, Self::Redis(_))
    }

    /// A new instance named `name`, with one shard, ready (connected, for Redis).
    pub async fn instance(&self, name: &str) -> Instance {
        let (router, mut inboxes) = Router::new(1);
        let seams = match self {
            Self::Standalone => Seams::standalone(),
            Self::Redis(redis) => {
                let mut config = Config::with_listen("127.0.0.1:0".parse().unwrap());
                config.instance_id = Some(name.to_owned());
                let counters = Arc::new(RelayCounters::default());
                let broker =
                    RedisBroker::start(&config, &redis.url(), router.clone(), counters).unwrap();
                Seams::all_in_one(Arc::new(broker))
            }
        };
        let instance = Instance { seams, router, inbox: inboxes.remove(0), kept: VecDeque::new() };
        let ready = async {
            while !instance.seams.broker.is_ready() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        tokio::time::timeout(WAIT, ready).await.expect("the broker becomes ready");
        instance
    }
}

/// One instance: its seams and its one shard's inbox.
pub struct Instance {
    pub seams: Seams,
    pub router: Router,
    pub inbox: Inbox,
    /// Deliveries that came while another was awaited.
    kept: VecDeque<Delivery>,
}

impl Instance {
    /// `user`'s first connection here joins `room`: the presence manager is told, the directory
    /// lists the shard, and the check goes on once the instance listens to the room.
    /// Returns who announces the join.
    pub async fn join(&mut self, room: &str, user: &str) -> Announce {
        let room = Room::from(room);
        self.router.directory().apply(0, &[Transition { room: room.clone(), present: true }]);
        self.seams.presence.local_change(LocalChange::UserOnline(user.into()));
        let change = LocalChange::Joined { room, user: user.into() };
        let announce = self.seams.presence.local_change(change);
        self.subscribed().await;
        announce
    }

    /// Waits until every message published from now on in the rooms joined so far reaches here.
    pub async fn subscribed(&mut self) {
        if self.seams.broker.when_subscribed(0, Delivery::Shutdown).is_none() {
            self.next(|delivery| matches!(delivery, Delivery::Shutdown)).await;
        }
    }

    /// The next delivery that `wanted` picks; the others are kept, in order, for later asks.
    pub async fn next(&mut self, wanted: impl Fn(&Delivery) -> bool) -> Delivery {
        if let Some(at) = self.kept.iter().position(&wanted) {
            return self.kept.remove(at).unwrap();
        }
        let found = async {
            loop {
                let delivery = self.inbox.deliveries.recv().await.expect("the instance is up");
                if wanted(&delivery) {
                    return delivery;
                }
                self.kept.push_back(delivery);
            }
        };
        tokio::time::timeout(WAIT, found).await.expect("the delivery came")
    }

    /// Every delivery here and not yet picked.
    pub fn drain(&mut self) -> Vec<Delivery> {
        let arrived = std::iter::from_fn(|| self.inbox.deliveries.try_recv().ok());
        self.kept.drain(..).chain(arrived).collect()
    }
}

/// A chat of `sender` in `room`, with message id `id`, to number.
pub fn chat(room: &str, sender: &str, id: &str) -> ToSequence {
    ToSequence {
        room: room.into(),
        id: id.into(),
        sender: sender.into(),
        kind: MessageType::Chat,
        data: RawValue::from_string(format!(r#"{{"content":"{id}"}}"#)).unwrap(),
        at: 1_700_000_000_000,
        origin: Origin::Connection { shard: 0, conn: 1, acked: true, admin: false },
    }
}

/// Runs a check against each implementation: `contract!(name)` makes `name::standalone` and
/// `name::redis` from `async fn name(deployment: Deployment)`.
#[macro_export]
macro_rules! contract {
    ($check:ident) => {
        mod $check {
            use $crate::seams::Deployment;

            #[tokio::test]
            async fn standalone() {
                super::$check(Deployment::Standalone).await;
            }

            #[tokio::test]
            async fn redis() {
                super::$check(Deployment::redis().await).await;
            }
        }
    };
}
