//! The wire contract (docs/protocol.md): the vocabulary both directions share.
//!
//! Owns: the message and error vocabularies, name validation, ids and timestamps. [`inbound`]
//! parses client frames into [`request`]'s forms; [`outbound`] is the one place a server frame is
//! serialized. Pure functions, no I/O. Must not: know about connections, shards or sockets.
//! A frame is encoded once and the resulting [`Frame`] (a refcounted buffer) is shared by every
//! recipient.

mod fields;
mod inbound;
mod mine;
mod moderate;
mod moderation;
mod outbound;
mod presence;
mod request;

pub use fields::{history_page, validate_reaction, Limits};
pub use inbound::{chat_data, parse_client_frame, ChatChecked};
pub use mine::{receipt_frame, room_added_frame, room_removed_frame, unread_frame, Unread};
pub use moderate::Moderate;
pub use moderation::{moderation_frame, room_settings_frame, Moderated, RoomSettings};
pub use outbound::{
    ack_frame, error_frame, errors_made, history_frame, message_frame, message_frame_at,
    refusal_frame, reply_frame, resumed_frame, room_message_frame, room_message_parts,
    token_expiring_frame, Annotations, Next, Published, Resumed, Unrecovered, STAMP_MID,
    STAMP_TAIL,
};
pub use presence::{
    presence_batch_frame, presence_event_frame, presence_list_frame, typing_batch_frame,
    typing_frame, PresenceBatch, PresenceStatus,
};
pub use request::{
    parse_cursor, Action, Chat, ClientFrame, ClientRequest, Page, Since, HISTORY_DEFAULT,
    HISTORY_MAX,
};

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio_tungstenite::tungstenite::Utf8Bytes;

/// A serialized server frame. Cloning it bumps a refcount; the bytes are never copied per recipient.
pub type Frame = Utf8Bytes;
/// What starts and separates a bundle of frames: a character valid JSON never holds raw.
pub const BUNDLE_SEPARATOR: char = '\x1e';

/// Several frames as one outbox item (a replay, which may be larger than a connection's send
/// buffer); the session writes each as its own message.
pub fn bundle(frames: &[Frame]) -> Frame {
    let mut text = String::with_capacity(frames.iter().map(|f| f.len() + 1).sum());
    for frame in frames {
        text.push(BUNDLE_SEPARATOR);
        text.push_str(frame.as_str());
    }
    Frame::from(text)
}

/// Whether `frame` may wait a moment to go out with a frame that is due: a typing event (told
/// per coalescing window already; a quarter of a second later is not seen).
pub fn may_wait(frame: &Frame) -> bool {
    frame.as_str().starts_with(r#"{"type":"typing","#)
}

/// Whether `frame` is a [`bundle`].
pub fn is_bundle(frame: &Frame) -> bool {
    frame.as_str().starts_with(BUNDLE_SEPARATOR)
}

/// The frames of a [`bundle`], in order.
pub fn bundle_parts(bundle: &Frame) -> impl Iterator<Item = &str> {
    bundle.as_str().split(BUNDLE_SEPARATOR).skip(1)
}

/// A validated room name (see [`validate_room`]); shared by every map that names the room.
pub type Room = Arc<str>;
/// A validated user id.
pub type UserId = Arc<str>;

/// The longest room name, user id or client-supplied message id, in characters.
pub const MAX_NAME_CHARS: usize = 128;
/// The deepest nesting of objects and arrays allowed in a message's `data`.
pub const MAX_DATA_DEPTH: usize = 16;

/// The room name that, in the HTTP API, means "every connected client"; its history (reading only)
/// is the stored chats to everyone.
pub const GLOBAL_ROOM: &str = "_global";

/// The history a name reads: a valid room's, or the chats to everyone's (`_global`), which have no
/// seq and so are paged by `before` only.
pub fn history_of(name: &str, page: &Page) -> Result<Room, &'static str> {
    match (name, page) {
        (GLOBAL_ROOM, Page::After(_)) => {
            Err("the chats to everyone have no seq: page their history with before")
        }
        (GLOBAL_ROOM, Page::Before(_)) => Ok(Arc::from(GLOBAL_ROOM)),
        (name, _) => validate_room(name),
    }
}

/// Every `type` a server frame may carry (clients also send `join`, `leave`, `ping`, `refresh`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageType {
    Chat,
    Presence,
    Ack,
    /// A page of stored messages (the answer to `history`).
    History,
    /// A stored message was deleted (a room event, numbered in the room's stream).
    MessageDeleted,
    /// A stored message's content was edited by its author (a room event).
    MessageEdited,
    /// Who started or stopped typing in a room (never stored, never numbered).
    Typing,
    /// A user reacted to a stored message (a room event).
    ReactionAdded,
    /// A user took its reaction back (a room event).
    ReactionRemoved,
    /// The answer to a join without an id that resumed a stream.
    Joined,
    /// To a user: someone else made them a participant of a room (a direct room, a private one).
    RoomAdded,
    /// To a user: it is no longer a participant of a room.
    RoomRemoved,
    /// To a user: a room's unread count or last message changed.
    Unread,
    /// To a small room: a member read it up to a seq.
    Receipt,
    /// To a user: a moderator acted on it (muted, banned, ...); to moderators: a sanction ended.
    Moderation,
    /// To a room: its settings changed (title, topic, slow mode).
    RoomUpdated,
    /// To a room: it was archived; it takes no new messages.
    RoomDeleted,
    Notification,
    System,
    Error,
    Pong,
}

impl MessageType {
    /// The types a back-end service may publish, by name.
    pub fn parse_published(name: &str) -> Option<Self> {
        match name {
            "chat" => Some(Self::Chat),
            "notification" => Some(Self::Notification),
            "system" => Some(Self::System),
            _ => None,
        }
    }

    /// The types a stored row may have: the published ones and the room events.
    pub fn parse_stored(name: &str) -> Option<Self> {
        match name {
            "message_edited" => Some(Self::MessageEdited),
            "message_deleted" => Some(Self::MessageDeleted),
            "reaction_added" => Some(Self::ReactionAdded),
            "reaction_removed" => Some(Self::ReactionRemoved),
            _ => Self::parse_published(name),
        }
    }

    /// Whether a frame of this type changes a message rather than being one (a room event).
    pub fn is_room_event(self) -> bool {
        matches!(
            self,
            Self::MessageEdited
                | Self::MessageDeleted
                | Self::ReactionAdded
                | Self::ReactionRemoved
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Chat => "chat",
            Self::History => "history",
            Self::MessageDeleted => "message_deleted",
            Self::MessageEdited => "message_edited",
            Self::Typing => "typing",
            Self::ReactionAdded => "reaction_added",
            Self::ReactionRemoved => "reaction_removed",
            Self::Joined => "joined",
            Self::RoomAdded => "room_added",
            Self::RoomRemoved => "room_removed",
            Self::Unread => "unread",
            Self::Receipt => "receipt",
            Self::Moderation => "moderation",
            Self::RoomUpdated => "room_updated",
            Self::RoomDeleted => "room_deleted",
            Self::Presence => "presence",
            Self::Ack => "ack",
            Self::Notification => "notification",
            Self::System => "system",
            Self::Error => "error",
            Self::Pong => "pong",
        }
    }
}

/// The `data.code` of an error frame (and of HTTP error bodies).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    BadRequest,
    UnknownType,
    ContentTooLong,
    NotMember,
    Forbidden,
    RateLimited,
    /// A token (in a `refresh`) that does not verify.
    Unauthorized,
    /// The message store cannot take or answer this now; retry later.
    Unavailable,
    NotFound,
    /// The request names something ambiguously (a message id two senders used: name the sender).
    Conflict,
    /// A muted user's chat (the error carries `until`).
    Muted,
    /// A chat within a slow-moded room's interval (the error carries `retry_after_ms`).
    SlowMode,
    /// An upload over `--max-attachment`.
    TooLarge,
    /// An upload over the user's `--upload-quota`.
    QuotaExceeded,
}

impl ErrorCode {
    /// Every code, in declaration order (`code as usize` is its place).
    pub const ALL: [ErrorCode; 14] = [
        Self::BadRequest,
        Self::UnknownType,
        Self::ContentTooLong,
        Self::NotMember,
        Self::Forbidden,
        Self::RateLimited,
        Self::Unauthorized,
        Self::Unavailable,
        Self::NotFound,
        Self::Conflict,
        Self::Muted,
        Self::SlowMode,
        Self::TooLarge,
        Self::QuotaExceeded,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::BadRequest => "bad_request",
            Self::UnknownType => "unknown_type",
            Self::ContentTooLong => "content_too_long",
            Self::NotMember => "not_member",
            Self::Forbidden => "forbidden",
            Self::RateLimited => "rate_limited",
            Self::Unauthorized => "unauthorized",
            Self::Unavailable => "unavailable",
            Self::NotFound => "not_found",
            Self::Conflict => "conflict",
            Self::Muted => "muted",
            Self::SlowMode => "slow_mode",
            Self::TooLarge => "too_large",
            Self::QuotaExceeded => "quota_exceeded",
        }
    }
}

/// A refusal of one client frame: answered with an error frame, the connection stays open.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {message}", code.as_str())]
pub struct Rejection {
    /// The request's `id`, echoed so the client can match the error to its request.
    pub id: Option<String>,
    pub code: ErrorCode,
    pub message: String,
}

impl Rejection {
    pub fn new(id: Option<String>, code: ErrorCode, message: impl Into<String>) -> Self {
        Self { id, code, message: message.into() }
    }

    /// The error frame that answers this rejection.
    pub fn to_frame(&self) -> Frame {
        error_frame(self.id.as_deref(), self.code, &self.message)
    }
}

/// The message of every `unavailable` error about the store, over WebSocket and REST alike.
pub const STORE_UNAVAILABLE: &str = "the message store is unavailable; retry later";

/// Most users in one answer to a presence query; a bigger room's answer comes in pages.
pub const PRESENCE_PAGE: usize = 1000;

/// The two users of a direct room's name, when it is one (`dm:a:b`, sorted, different).
pub fn direct_pair(room: &str) -> Option<(&str, &str)> {
    let (a, b) = room.strip_prefix("dm:")?.split_once(':')?;
    (!a.is_empty() && !b.is_empty() && !b.contains(':') && a < b).then_some((a, b))
}

/// Validates a room name: 1 to 128 characters of `A-Z a-z 0-9 _ - . : @`, not the reserved `_global`.
pub fn validate_room(name: &str) -> Result<Room, &'static str> {
    if name == GLOBAL_ROOM {
        return Err("room name _global is reserved");
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':' | '@');
    if name.is_empty() || name.len() > MAX_NAME_CHARS || !name.chars().all(allowed) {
        return Err("room names are 1-128 characters of A-Z a-z 0-9 _ - . : @");
    }
    Ok(Arc::from(name))
}

/// Validates a user id: 1 to 128 characters, no control characters.
pub fn validate_user(name: &str) -> Result<UserId, &'static str> {
    if name.is_empty()
        || name.chars().count() > MAX_NAME_CHARS
        || name.chars().any(char::is_control)
    {
        return Err("user ids are 1-128 characters without control characters");
    }
    Ok(Arc::from(name))
}

/// A fresh message id (UUID v4).
pub fn new_message_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// A short random name (12 hex digits): a room stream's epoch, an instance id left unset.
pub fn new_short_name() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_owned()
}

/// The current time as RFC 3339 UTC with milliseconds, e.g. `2024-01-15T10:30:00.000Z`.
pub fn now_rfc3339() -> String {
    format_rfc3339(SystemTime::now())
}

pub fn format_rfc3339(time: SystemTime) -> String {
    humantime::format_rfc3339_millis(time).to_string()
}

#[cfg(test)]
mod tests;

/// Milliseconds since the Unix epoch: how the envelope's timestamp, the store and Redis keep a time.
pub type Millis = i64;

/// `time` as [`Millis`].
pub fn millis(time: SystemTime) -> Millis {
    time.duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// [`Millis`] back as a time.
pub fn time_of(millis: Millis) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(u64::try_from(millis).unwrap_or(0))
}
