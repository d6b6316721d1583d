//! The sequencing seam: who numbers a room's messages, and reads a room's stream for a resume.
//!
//! Owns: the `Sequencer` contract and its standalone implementation. Must not: hold a stream; the
//! room's home shard keeps what it has numbered or heard.

use super::Standalone;
use crate::directory::ShardId;
use crate::mailbox::{ReplayRequest, ToSequence};

/// A sequencer's answer to a message to number or a stream to read.
#[derive(Debug)]
pub enum Numbering<T> {
    /// The home shard does it from its own stream (it sees every message of the room).
    Here(T),
    /// Taken: the answer comes to the home shard later.
    Taken,
    /// The way there is full or gone: given back, to be refused at once.
    Refused(T),
}

/// Numbers each room's messages, once for the whole deployment.
///
/// Contract:
/// - `stamp` takes a message of a room homed on `home`. `Taken`: its seq comes back to `home` as
///   `Stamped` (a resend within the dedup window gets its first seq, marked `again`), and every
///   numbered message of a room this instance listens to (its own too) comes to the room's home as
///   `Sequenced`, in seq order with no gap, after `StreamReset` when a subscription starts afresh.
/// - `read_stream` answers a resume at the room's home: `Taken`, then `StreamRead` with what the
///   sequencer keeps after the resume point.
/// - A sequencer answers `Here` for every message and read, or for none.
pub trait Sequencer: Send + Sync + std::fmt::Debug {
    fn stamp(&self, item: ToSequence, home: ShardId) -> Numbering<ToSequence>;
    fn read_stream(&self, request: ReplayRequest, home: ShardId) -> Numbering<ReplayRequest>;
}

impl Sequencer for Standalone {
    /// One instance: the room's home shard sees every message of the room, so numbers it.
    fn stamp(&self, item: ToSequence, _home: ShardId) -> Numbering<ToSequence> {
        Numbering::Here(item)
    }

    /// The home keeps the room's recent messages and reads the store for older ones.
    fn read_stream(&self, request: ReplayRequest, _home: ShardId) -> Numbering<ReplayRequest> {
        Numbering::Here(request)
    }
}
