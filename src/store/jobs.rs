//! The store's job vocabulary: a write and who to tell when it is committed, a read and where its
//! answer goes. The handle sends these; the writer and the read pool take them.
//!
//! Owns: the types only. Must not: import the handle, the writer or the read pool (they import this).

use tokio::sync::oneshot;

use super::ops::{Answer, Outcome, Read, Write};
use super::StoreError;
use crate::directory::ShardId;
use crate::mailbox::ConnId;
use crate::protocol::{Frame, Room, UserId};

/// What happens once a write is committed.
#[derive(Debug)]
pub enum Completion {
    /// A chat: `shard` is told (`Delivery::Committed`). For a room message that is the room's home,
    /// which passes the ack on to the sender's shard only after its own fan-out of the message, so
    /// the ack cannot overtake the delivery.
    Shard {
        shard: ShardId,
        conn: ConnId,
        user: UserId,
        room: Option<Room>,
        id: String,
        seq: Option<u64>,
    },
    /// An HTTP publish into a room waits for its seq, answered by the room's home (`home`) after its
    /// fan-out of the message.
    Sequenced { home: ShardId, room: Room, reply: oneshot::Sender<Option<u64>>, seq: u64 },
    /// A chat to everyone (it has no room, so no seq): its sender's `shard` publishes `frame` once
    /// it is committed, then acks it when it has an id (`acked`: its connection, sender and id).
    Everyone { shard: ShardId, frame: Frame, acked: Option<(ConnId, UserId, String)> },
    /// A room message nobody waits for: its room's home publishes it (`Delivery::RoomCommitted`).
    Room { home: ShardId, room: Room, seq: u64 },
    /// A caller waits for the outcome.
    Reply(oneshot::Sender<Result<Outcome, StoreError>>),
    /// Nobody waits (presence, rooms created by being joined).
    None,
}

/// A write and who to tell when it is committed.
#[derive(Debug)]
pub struct Job {
    pub write: Write,
    pub done: Completion,
}

/// A read and where its answer goes.
#[derive(Debug)]
pub struct ReadJob {
    pub read: Read,
    pub reply: oneshot::Sender<Result<Answer, StoreError>>,
}
