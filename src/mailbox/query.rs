//! The mailbox's reads of a shard's cache: the questions, answered on a oneshot, and their answers
//! (see [`super`]).
//!
//! Owns: those types. Plain data. Must not: import the modules that ask or answer them.

use std::time::{Duration, SystemTime};

use tokio::sync::oneshot;

use super::ConnId;
use crate::protocol::{Room, UserId};

/// Who is online on a shard, and who is in each of its rooms.
#[derive(Debug, Default)]
pub struct LocalPresence {
    pub users: Vec<UserId>,
    pub rooms: Vec<(Room, Vec<UserId>)>,
}

/// A read of a shard's cache, answered on a oneshot.
#[derive(Debug)]
pub enum Query {
    OnlineUsers(oneshot::Sender<Vec<UserId>>),
    /// The shard's online users and each of its rooms with its users (for the cluster's presence).
    Presence(oneshot::Sender<LocalPresence>),
    /// Users in the room, each with whether it is away.
    RoomUsers {
        room: Room,
        reply: oneshot::Sender<Vec<(UserId, bool)>>,
    },
    UserStatus {
        user: UserId,
        reply: oneshot::Sender<UserStatus>,
    },
    UserConnections {
        user: UserId,
        reply: oneshot::Sender<Vec<ConnInfo>>,
    },
    /// Frames waiting in the shard's connections' outboxes.
    Queued(oneshot::Sender<u64>),
}

/// A user as a presence query reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserStatus {
    Online,
    Away,
    Offline,
}

impl UserStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Online => "online",
            Self::Away => "away",
            Self::Offline => "offline",
        }
    }
}

/// A connection's metadata, as reported by the connections query.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    pub conn: ConnId,
    pub connected_at: SystemTime,
    pub idle_for: Duration,
    pub rooms: Vec<Room>,
}
