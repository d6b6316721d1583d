//! The broker seam: how one instance hears about the others. A [`Broker`] carries published
//! messages, local presence changes and presence questions between instances.
//!
//! Owns: the `Broker` contract and the standalone implementation ([`Standalone`]: one instance, no
//! Redis, everything is local). The Redis implementation lives in `cluster`, which implements this
//! trait and is handed a [`crate::router::Router`] to fan incoming messages out like local ones.
//! Must not: know the hub or the shards; they call the broker, never the other way round. Every
//! method returns at once: no caller blocks or awaits.

use std::time::Duration;

use tokio::sync::oneshot;

use crate::directory::ShardId;
use crate::mailbox::{Delivery, ReplayRequest, Target, ToSequence};
use crate::protocol::{Frame, Room, UserId};

/// A change in the local cache that the cluster must learn. Sent by the shard that owns the user, so
/// the changes of one user arrive in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LocalChange {
    /// The user's first connection on this instance.
    UserOnline(UserId),
    /// The user's last connection on this instance went.
    UserOffline(UserId),
    /// The user's first connection in the room on this instance joined it.
    Joined { room: Room, user: UserId },
    /// The user's last connection in the room on this instance left it.
    Left { room: Room, user: UserId },
}

/// A presence question about the whole cluster. The reply is dropped (the receiver sees an error)
/// when the broker cannot answer now; the caller then answers from local knowledge, marked partial.
#[derive(Debug)]
pub enum Question {
    OnlineUsers(oneshot::Sender<Vec<UserId>>),
    RoomUsers(Room, oneshot::Sender<Vec<UserId>>),
    UserOnline(UserId, oneshot::Sender<bool>),
}

/// Connects this instance to the others.
///
/// Contract:
/// - `publish` is called once per message after local delivery, with the frame already encoded; the
///   broker sends it to every other instance whose connections it may reach, exactly once, and must
///   never deliver it back here. It never waits: when the way out is full or down, the message is
///   dropped for the other instances and counted.
/// - `local_change` must not lose a change: subscriptions and cluster presence follow from them.
/// - With `decides_presence`, shards do not announce join/leave themselves: the broker announces
///   them when a user's first connection anywhere joins a room, or its last one anywhere leaves.
/// - `ask` returns `false` when the broker has no cluster view (standalone): answer locally.
/// - With `numbers_rooms`, a room's seq is decided by the broker, cluster-wide: the room's home shard
///   hands each room message to `stamp` instead of numbering it, and hears back `Stamped`. The broker
///   then delivers every numbered message of a room this instance listens to (its own too) to the
///   room's home shard as `Sequenced`, in seq order, and `StreamReset` before the first one of a
///   fresh subscription. `read_stream` answers a resume with `StreamRead` at the home. A refused
///   `stamp` or `read_stream` (the way out is full) gives its input back, to be refused at once.
/// - `when_subscribed` hands `then` to `shard` once every message published anywhere from now on in
///   the rooms of the changes sent so far reaches this instance; `Some(then)` back: nothing to wait
///   for.
pub trait Broker: Send + Sync + std::fmt::Debug {
    fn publish(&self, target: &Target, frame: &Frame);
    fn local_change(&self, change: LocalChange);
    fn decides_presence(&self) -> bool;
    fn ask(&self, question: Question) -> bool;
    /// Whether the other instances are reachable (for `/readyz`).
    fn is_ready(&self) -> bool;
    fn numbers_rooms(&self) -> bool;
    fn stamp(&self, item: ToSequence, home: ShardId) -> Result<(), ToSequence>;
    fn read_stream(&self, request: ReplayRequest, home: ShardId) -> Result<(), ReplayRequest>;
    fn when_subscribed(&self, shard: ShardId, then: Delivery) -> Option<Delivery>;
    /// The instance is stopping: from now on its users' leaves are held (they stay in cluster
    /// presence), until `finish_handover`.
    fn begin_handover(&self);
    /// After `grace`, the held leaves are applied (announced once, for the users not present on
    /// another instance by then); the receiver hears when that is done (at once standalone).
    fn finish_handover(&self, grace: Duration) -> oneshot::Receiver<()>;
}

/// One instance on its own: there is nobody to tell.
#[derive(Debug, Default)]
pub struct Standalone;

impl Broker for Standalone {
    fn publish(&self, _target: &Target, _frame: &Frame) {}

    fn local_change(&self, _change: LocalChange) {}

    fn decides_presence(&self) -> bool {
        false
    }

    fn ask(&self, _question: Question) -> bool {
        false
    }

    fn is_ready(&self) -> bool {
        true
    }

    fn numbers_rooms(&self) -> bool {
        false
    }

    /// Never called: standalone, a room's home shard numbers its messages itself.
    fn stamp(&self, item: ToSequence, _home: ShardId) -> Result<(), ToSequence> {
        Err(item)
    }

    /// Never called: standalone, a room's home shard answers resumes from its own window.
    fn read_stream(&self, request: ReplayRequest, _home: ShardId) -> Result<(), ReplayRequest> {
        Err(request)
    }

    fn when_subscribed(&self, _shard: ShardId, then: Delivery) -> Option<Delivery> {
        Some(then)
    }

    fn begin_handover(&self) {}

    fn finish_handover(&self, _grace: Duration) -> oneshot::Receiver<()> {
        let (done, handed) = oneshot::channel();
        let _ = done.send(());
        handed
    }
}
