//! The broker seam: how one instance hears about the others. A [`Broker`] carries published
//! messages, local presence changes and presence questions between instances.
//!
//! Owns: the `Broker` contract and the standalone implementation ([`Standalone`]: one instance, no
//! Redis, everything is local). The Redis implementation lives in `cluster`, which implements this
//! trait and is handed a [`crate::router::Router`] to fan incoming messages out like local ones.
//! Must not: know the hub or the shards; they call the broker, never the other way round. Every
//! method returns at once: no caller blocks or awaits.

use tokio::sync::oneshot;

use crate::mailbox::Target;
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
pub trait Broker: Send + Sync + std::fmt::Debug {
    fn publish(&self, target: &Target, frame: &Frame);
    fn local_change(&self, change: LocalChange);
    fn decides_presence(&self) -> bool;
    fn ask(&self, question: Question) -> bool;
    /// Whether the other instances are reachable (for `/readyz`).
    fn is_ready(&self) -> bool;
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
}
