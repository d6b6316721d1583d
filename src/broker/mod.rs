//! The seams between instances, as centrifuge cuts them: a [`Broker`] carries published messages
//! to the other instances, a [`PresenceManager`] keeps who is online and in which room across them,
//! and a [`Sequencer`] numbers each room's messages. Each has a standalone implementation (one
//! instance, no Redis) and a Redis one (`cluster`); [`Seams`] holds the three that a hub uses.
//!
//! Owns: the three contracts and their standalone implementations. Must not: know the hub or the
//! shards; they call the seams, never the other way round. Every method returns at once: no caller
//! blocks or awaits. `tests/it/seams/` is the contract suite, run against both implementations.

mod presence;
mod sequencer;

use std::sync::Arc;

pub use presence::{Announce, Coverage, LocalChange, PresenceManager, Question};
pub use sequencer::{Numbering, Sequencer};

use crate::directory::ShardId;
use crate::mailbox::{Delivery, Target};
use crate::protocol::Frame;
use crate::rules::Notice;

/// Carries published messages between instances.
///
/// Contract:
/// - `publish` is called once per message after local delivery, with the frame already encoded; the
///   broker sends it to every other instance whose connections it may reach, exactly once, and must
///   never deliver it back here. It never waits: when the way out is full or down, the message is
///   dropped for the other instances and counted.
/// - An instance listens to the rooms its users are in: the presence manager's `local_change`s of
///   rooms joined and left are its subscriptions.
/// - `when_subscribed` hands `then` to `shard` once every message published anywhere from now on in
///   the rooms of the changes sent so far reaches this instance; `Some(then)` back: nothing to wait
///   for.
pub trait Broker: Send + Sync + std::fmt::Debug {
    fn publish(&self, target: &Target, frame: &Frame);
    /// Whether the other instances are reachable (for `/readyz`).
    fn is_ready(&self) -> bool;
    fn when_subscribed(&self, shard: ShardId, then: Delivery) -> Option<Delivery>;
    /// Carries a moderation action to every other instance, whose shards enforce it as this
    /// instance's do (the caller delivers it here). In order, never dropped while the others are
    /// reachable.
    fn notify(&self, notice: &Notice);
}

/// One instance on its own: nobody else to reach, the presence of this instance is everybody's,
/// and a room's home shard numbers its messages.
#[derive(Debug, Default)]
pub struct Standalone;

impl Broker for Standalone {
    /// There is no other instance: a message is delivered once, locally, by its caller.
    fn publish(&self, _target: &Target, _frame: &Frame) {}

    fn is_ready(&self) -> bool {
        true
    }

    /// Every message published from now on is local, so already reaches this instance.
    fn when_subscribed(&self, _shard: ShardId, then: Delivery) -> Option<Delivery> {
        Some(then)
    }

    /// There is no other instance.
    fn notify(&self, _notice: &Notice) {}
}

/// The three seams a hub uses, each shared by the shards, the sessions and the HTTP API.
#[derive(Debug, Clone)]
pub struct Seams {
    pub broker: Arc<dyn Broker>,
    pub presence: Arc<dyn PresenceManager>,
    pub sequencer: Arc<dyn Sequencer>,
}

impl Seams {
    /// One instance on its own.
    pub fn standalone() -> Self {
        Self::all_in_one(Arc::new(Standalone))
    }

    /// The three seams served by one value (as the Redis relay serves them).
    pub fn all_in_one<T: Broker + PresenceManager + Sequencer + 'static>(all: Arc<T>) -> Self {
        Self { broker: all.clone(), presence: all.clone(), sequencer: all }
    }
}
