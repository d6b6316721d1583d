//! The presence seam: who is online, and in which room, across the instances.
//!
//! Owns: the `PresenceManager` contract, the changes and questions it takes, and its standalone
//! implementation. Must not: hold connection state; the shards tell it what changed here.

use std::time::Duration;

use tokio::sync::oneshot;

use super::Standalone;
use crate::protocol::{Room, UserId};

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
    /// None of the user's connections here showed a person there for `--away-after`; `rooms` are
    /// their rooms here, where it is told.
    WentAway { user: UserId, rooms: Vec<Room> },
    /// The user, told away, showed a person there again on this instance.
    CameBack { user: UserId, rooms: Vec<Room> },
}

/// Who tells a room that a user joined, left, went away or came back, after a [`LocalChange`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Announce {
    /// This instance's change is the room's: the shard that made it tells the room's home now.
    Here,
    /// The manager tells the room's home on the instance where the change became the cluster's
    /// (the user's first connection anywhere joined, or its last one anywhere left; it went away
    /// here and is away on every other instance too, or came back here from being away everywhere)
    /// with `Delivery::PresenceChange`; that home publishes it, to every instance.
    ByManager,
}

/// A presence question about the instances' users. The reply is dropped (the receiver sees an
/// error) when the manager cannot answer now; the caller then answers from local knowledge alone,
/// marked partial.
#[derive(Debug)]
pub enum Question {
    OnlineUsers(oneshot::Sender<Vec<UserId>>),
    RoomUsers(Room, oneshot::Sender<Vec<UserId>>),
    UserOnline(UserId, oneshot::Sender<bool>),
}

/// How much of the deployment a presence answer covers.
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

/// Keeps presence across the instances.
///
/// Contract:
/// - `local_change` must not lose a change, and says who announces it ([`Announce`]). Changes of
///   one user are applied in the order they are sent.
/// - `ask` answers with the users the manager knows of beyond this instance's own view (which the
///   caller adds; the Redis manager's answer includes it), or drops the reply; `coverage` says what
///   an answer covers.
/// - After `begin_handover` (the instance is stopping) the users' leaves are held, so they stay
///   present; `finish_handover` applies them after `grace` (announced once, for the users not
///   present on another instance by then) and its receiver hears when that is done.
pub trait PresenceManager: Send + Sync + std::fmt::Debug {
    fn local_change(&self, change: LocalChange) -> Announce;
    fn ask(&self, question: Question);
    fn coverage(&self) -> Coverage;
    fn begin_handover(&self);
    fn finish_handover(&self, grace: Duration) -> oneshot::Receiver<()>;
}

impl PresenceManager for Standalone {
    /// This instance is the whole deployment: its first connection is the user's first anywhere.
    fn local_change(&self, _change: LocalChange) -> Announce {
        Announce::Here
    }

    /// There is no other instance, so nobody on one.
    fn ask(&self, question: Question) {
        let _ = match question {
            Question::OnlineUsers(reply) => reply.send(Vec::new()).map_err(drop),
            Question::RoomUsers(_, reply) => reply.send(Vec::new()).map_err(drop),
            Question::UserOnline(_, reply) => reply.send(false).map_err(drop),
        };
    }

    fn coverage(&self) -> Coverage {
        Coverage::Instance
    }

    /// Nobody else can take the users over: their leaves are announced as they come.
    fn begin_handover(&self) {}

    fn finish_handover(&self, _grace: Duration) -> oneshot::Receiver<()> {
        let (done, handed) = oneshot::channel();
        let _ = done.send(());
        handed
    }
}
