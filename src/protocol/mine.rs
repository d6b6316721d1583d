//! The frames of a user's own stream, sent to every connection of the user whether or not it joined
//! the room: a room added for it, a room it was removed from, a room's unread count changing; and
//! the read receipts a small room's members see.
//!
//! Owns: those frames' data shapes. Must not: encode an envelope itself ([`super::outbound`] does).

use serde::Serialize;
use serde_json::value::RawValue;

use super::outbound::data_frame;
use super::{Frame, MessageType};

/// `{"type":"room_added","room":r,"data":{"type":"direct","by":"alice"}}`, sent to a user made a
/// participant of `room` (by someone else, or by itself on another connection).
pub fn room_added_frame(room: &str, kind: &str, by: &str) -> Frame {
    #[derive(Serialize)]
    struct Added<'a> {
        #[serde(rename = "type")]
        kind: &'a str,
        by: &'a str,
    }
    data_frame(MessageType::RoomAdded, None, Some(room), Added { kind, by })
}

/// `{"type":"room_removed","room":r,"data":{"by":"alice"}}`, sent to a user that is no longer a
/// participant of `room` (removed by its owner, or it left on another connection).
pub fn room_removed_frame(room: &str, by: &str) -> Frame {
    #[derive(Serialize)]
    struct Removed<'a> {
        by: &'a str,
    }
    data_frame(MessageType::RoomRemoved, None, Some(room), Removed { by })
}

/// Where a room stands for one user: what its `unread` event says.
#[derive(Debug, Clone, Copy)]
pub struct Unread<'a> {
    pub unread: i64,
    pub last_seq: i64,
    pub last_read: i64,
    /// The room's newest message (as history shows it), when it changed.
    pub last_message: Option<&'a RawValue>,
}

/// `{"type":"unread","room":r,"data":{"unread":3,"last_seq":45,"last_read":42,"last_message":{..}}}`,
/// sent to a participant when the room's count or last message changed (a message, a read of its
/// own on another connection).
pub fn unread_frame(room: &str, unread: &Unread<'_>) -> Frame {
    #[derive(Serialize)]
    struct Data<'a> {
        unread: i64,
        last_seq: i64,
        last_read: i64,
        #[serde(skip_serializing_if = "Option::is_none")]
        last_message: Option<&'a RawValue>,
    }
    let Unread { unread, last_seq, last_read, last_message } = *unread;
    data_frame(
        MessageType::Unread,
        None,
        Some(room),
        Data { unread, last_seq, last_read, last_message },
    )
}

/// `{"type":"receipt","room":r,"data":{"user":u,"seq":42}}`, sent to a small room's members when
/// one of them read it up to `seq`.
pub fn receipt_frame(room: &str, user: &str, seq: i64) -> Frame {
    #[derive(Serialize)]
    struct Receipt<'a> {
        user: &'a str,
        seq: i64,
    }
    data_frame(MessageType::Receipt, None, Some(room), Receipt { user, seq })
}
