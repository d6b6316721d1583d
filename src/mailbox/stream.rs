//! The mailbox's words for a room's stream: a message on its way to be numbered, how it fared, and a
//! resume on its way to the room's home shard (see [`super`]).
//!
//! Owns: those types. Plain data, like the rest of the mailbox. Must not: import the modules that
//! send or receive them.

use std::sync::Arc;

use serde_json::value::RawValue;
use tokio::sync::oneshot;

use super::ConnId;
use crate::directory::ShardId;
use crate::protocol::{Frame, MessageType, Resumed, Room, Since, UserId};

/// A room message on its way to the room's home shard, which alone numbers the room's messages.
#[derive(Debug)]
pub struct ToSequence {
    pub room: Room,
    pub id: String,
    pub sender: UserId,
    pub kind: MessageType,
    pub data: Box<RawValue>,
    /// The envelope `timestamp`, in milliseconds since the Unix epoch.
    pub at: i64,
    pub origin: Origin,
}

/// Why an answer a shard waited for off its thread is missing: the backend asked could not be
/// reached, or did not answer in time (its cause is logged where it happened).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Unanswered {
    #[error("the message store is unavailable")]
    Store,
    #[error("redis is unavailable")]
    Redis,
}

/// A room's stream as the store has it.
#[derive(Debug)]
pub struct LoadedStream {
    /// The epoch and seq of its newest message; `None`: no message yet.
    pub newest: Option<(String, i64)>,
    /// The ids its senders used within `--dedup-window` before this start: (sender, id, seq).
    pub sent: Vec<(String, String, i64)>,
}

/// A room message's place in its room's stream, as the cluster numbered it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stamp {
    pub seq: u64,
    pub epoch: Arc<str>,
    /// A resend of a message already numbered (same sender, room and id within `--dedup-window`,
    /// on any instance): `seq` is the one it got then, and it was not published again.
    pub again: bool,
}

/// A resume, on its way to the room's home shard.
#[derive(Debug)]
pub struct ReplayRequest {
    pub room: Room,
    pub since: Since,
    /// The member's shard and connection, and the join's id.
    pub shard: ShardId,
    pub conn: ConnId,
    pub id: Option<String>,
    /// Cluster mode, while the store is read for what Redis no longer keeps: what it does keep.
    pub kept: Option<Box<StreamSlice>>,
}

/// Cluster mode: what the broker holds of a room's stream after a resume point.
#[derive(Debug)]
pub struct StreamSlice {
    /// The stream's name and last seq (`None`: the room has no stream yet).
    pub stream: Option<(String, u64)>,
    /// The messages after the resume point that the broker still keeps, in seq order.
    pub messages: Vec<(u64, Frame)>,
}

/// What a replay found.
#[derive(Debug)]
pub enum Replay {
    /// Every message after the resume point up to `upto`, in seq order; live messages up to
    /// `upto` that reach the member after the answer are skipped.
    Recovered {
        frames: Vec<Frame>,
        upto: u64,
    },
    NotRecovered(Resumed),
}

/// Who hears how a room message fared.
#[derive(Debug)]
pub enum Origin {
    /// A chat from a connection: its shard is told (`Stored`, or `Refused`); `acked`: the client
    /// gave an id, so it gets an ack; `admin`: its token's, so no room rule holds it back.
    Connection { shard: ShardId, conn: ConnId, acked: bool, admin: bool },
    /// An HTTP publish (an admin's) waits for the message's seq (`None`: refused).
    Reply(oneshot::Sender<Option<u64>>),
}
