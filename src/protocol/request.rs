//! The parsed forms of client requests: what a frame asked for ([`Action`]), a chat as the session
//! accepted it, where a resume starts, which page of history.
//!
//! Owns: those types and their small rules (what shows presence, a chat's frame without a seq, the
//! history cursor). Must not: parse frames ([`super::inbound`] does) or know about connections.

use serde_json::value::RawValue;

use super::moderate::Moderate;
use super::{message_frame_at, time_of, Frame, MessageType, Room, UserId};

/// A client frame that passed validation, ready for the connection's shard.
#[derive(Debug)]
pub struct ClientRequest {
    /// The client's `id`, echoed in the ack or error.
    pub id: Option<String>,
    pub action: Action,
}

/// What a client asked for.
#[derive(Debug)]
pub enum Action {
    /// Publish an already encoded chat (boxed: it is larger than every other request).
    Chat(Box<Chat>),
    Join(Room),
    Leave(Room),
    /// Who is in the room, and who of them is away: the first [`super::PRESENCE_PAGE`] users after
    /// `after` (in id order).
    Presence {
        room: Room,
        after: Option<UserId>,
    },
    /// Join `room` and get every message after `since` first (reconnect recovery).
    Resume {
        room: Room,
        since: Since,
    },
    /// A page of the room's stored messages (see [`Page`]).
    History {
        room: Room,
        limit: i64,
        page: Page,
    },
    /// Soft-delete a stored message (`from`: its sender, where two senders used the id).
    Delete {
        room: Room,
        id: String,
        from: Option<String>,
    },
    /// Replace the content of one's own stored message.
    Edit {
        room: Room,
        id: String,
        content: String,
    },
    Ping,
    /// The person is there (typing, looking at the page): marks the user present, not away.
    Active,
    /// The user started (or goes on) typing in the room, or stopped.
    Typing {
        room: Room,
        typing: bool,
    },
    /// The user read the room up to `seq`.
    Read {
        room: Room,
        seq: u64,
    },
    /// Add (or, `remove`, take back) the user's reaction `emoji` to message `id` (by `from`, when
    /// two senders used the id).
    React {
        room: Room,
        id: String,
        from: Option<String>,
        emoji: String,
        remove: bool,
    },
    /// A moderation request in the room (boxed: rare).
    Moderate {
        room: Room,
        request: Box<Moderate>,
    },
}

impl Action {
    /// Whether the frame means a person is there: what it does, not a query or a heartbeat. Only
    /// these count against `--away-after` (docs/protocol.md, "presence").
    pub fn shows_presence(&self) -> bool {
        !matches!(self, Self::Presence { .. } | Self::History { .. } | Self::Ping)
    }
}

/// A chat as the session accepted it: encoded once for every recipient, and what the store keeps.
#[derive(Debug)]
pub struct Chat {
    /// `None`: to everyone.
    pub room: Option<Room>,
    /// The envelope `id`: the client's, or a UUID the server assigned.
    pub id: String,
    /// The envelope `data`, as the client sent it.
    pub data: Box<RawValue>,
    /// The envelope `timestamp`, in milliseconds since the Unix epoch.
    pub at: i64,
    /// The frame, encoded once, for a chat to everyone; a room chat is encoded by the room's home
    /// shard, with its seq ([`Chat::frame`] encodes it without one).
    pub frame: Option<Frame>,
    /// `data.reply_to`: the message of the room it replies to (checked before it is sent on).
    pub reply_to: Option<String>,
}

impl Chat {
    /// The chat's frame as `from` sent it, without a seq.
    pub fn frame(&self, from: &str) -> Frame {
        self.frame.clone().unwrap_or_else(|| {
            let at = time_of(self.at);
            let room = self.room.as_deref();
            message_frame_at(MessageType::Chat, &self.id, room, from, &self.data, at)
        })
    }
}

/// Where a client left a room's stream: the last seq it got, in which epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Since {
    pub seq: u64,
    pub epoch: String,
}

/// Which page of a room's history: the newest `limit` before a cursor (`None`: the newest of
/// all), or the oldest `limit` after a seq.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Page {
    Before(Option<i64>),
    After(i64),
}

/// The most messages one history page holds, and the page size when none is asked for.
pub const HISTORY_MAX: i64 = 100;
pub const HISTORY_DEFAULT: i64 = 50;

/// A history cursor (`before`, `next_before`): the position of a stored message, as a string.
pub fn parse_cursor(cursor: &str) -> Result<i64, &'static str> {
    cursor
        .parse::<i64>()
        .ok()
        .filter(|pos| *pos > 0)
        .ok_or("before must be a cursor from next_before")
}

/// A parsed client frame: a request for the shard, or a token refresh, which the session verifies.
#[derive(Debug)]
pub enum ClientFrame {
    Request(ClientRequest),
    Refresh { id: Option<String>, token: String },
}
