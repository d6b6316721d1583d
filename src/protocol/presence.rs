//! Presence and typing frames: a room's joins, leaves, aways and backs (one change, or a window's
//! batch), the answer to a presence query, and who started or stopped typing.
//!
//! Owns: those frames' data shapes. Must not: encode an envelope itself ([`super::outbound`] does).

use serde::Serialize;

use super::outbound::{data_frame, encode, Envelope};
use super::{now_rfc3339, Frame, MessageType, UserId};

/// Whether a user came into a room or went from it, or, staying, went away or came back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PresenceStatus {
    Join,
    Leave,
    /// None of the user's connections showed a person there for `--away-after`.
    Away,
    /// The user, away, showed they are there again.
    Back,
}

/// `{"type":"presence","room":r,"data":{"user":u,"status":"join|leave|away|back"}}`, sent to the room.
pub fn presence_event_frame(room: &str, user: &str, status: PresenceStatus) -> Frame {
    #[derive(Serialize)]
    struct EventData<'a> {
        user: &'a str,
        status: PresenceStatus,
    }
    presence_frame(None, room, EventData { user, status })
}

/// The changes of one coalescing window, each list sorted; a user is in at most one of `joined`
/// and `left`, and of `away` and `back`.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct PresenceBatch {
    pub joined: Vec<UserId>,
    pub left: Vec<UserId>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub away: Vec<UserId>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub back: Vec<UserId>,
}

/// `{"type":"presence","room":r,"data":{"event":"batch","joined":[...],"left":[...]}}` (with
/// `"away"` and `"back"` when not empty): one coalescing window's changes, sent to the room.
pub fn presence_batch_frame(room: &str, batch: &PresenceBatch) -> Frame {
    #[derive(Serialize)]
    struct BatchData<'a> {
        event: &'static str,
        #[serde(flatten)]
        batch: &'a PresenceBatch,
    }
    presence_frame(None, room, BatchData { event: "batch", batch })
}

/// `{"type":"typing","room":r,"data":{"user":u,"typing":true|false}}`, sent to the room.
pub fn typing_frame(room: &str, user: &str, typing: bool) -> Frame {
    #[derive(Serialize)]
    struct Change<'a> {
        user: &'a str,
        typing: bool,
    }
    data_frame(MessageType::Typing, None, Some(room), Change { user, typing })
}

/// `{"type":"typing","room":r,"data":{"event":"batch","started":[...],"stopped":[...]}}`: one
/// coalescing window's typing changes.
pub fn typing_batch_frame(room: &str, started: &[UserId], stopped: &[UserId]) -> Frame {
    #[derive(Serialize)]
    struct Batch<'a> {
        event: &'static str,
        started: &'a [UserId],
        stopped: &'a [UserId],
    }
    data_frame(MessageType::Typing, None, Some(room), Batch { event: "batch", started, stopped })
}

/// `{"type":"presence","room":r,"data":{"users":[...],"away":[...]}}`, the answer to a presence query.
/// With `next_after` when more users follow: ask again with `"data":{"after":<it>}`.
pub fn presence_list_frame(
    id: Option<&str>,
    room: &str,
    (users, away): (&[UserId], &[UserId]),
    next_after: Option<&str>,
) -> Frame {
    #[derive(Serialize)]
    struct ListData<'a> {
        users: &'a [UserId],
        away: &'a [UserId],
        #[serde(skip_serializing_if = "Option::is_none")]
        next_after: Option<&'a str>,
    }
    presence_frame(id, room, ListData { users, away, next_after })
}

/// A `presence` frame of `room`, stamped now.
fn presence_frame<D: Serialize>(id: Option<&str>, room: &str, data: D) -> Frame {
    let (kind, room, timestamp) = (MessageType::Presence, Some(room), Some(now_rfc3339()));
    let timestamp = timestamp.as_deref();
    encode(&Envelope {
        id,
        kind,
        room,
        from: None,
        data: Some(data),
        timestamp,
        edited_at: None,
        reactions: None,
        thread: None,
        quote: None,
        seq: None,
        epoch: None,
    })
}
