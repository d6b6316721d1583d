//! The frames of moderation: what a user is told when a moderator acts on it (and moderators when
//! a sanction ends), and what a room is told when its settings change or it is archived.
//!
//! Owns: those frames' data shapes. Must not: encode an envelope itself ([`super::outbound`] does).

use serde::Serialize;

use super::outbound::data_frame;
use super::{Frame, MessageType};

/// A moderation event's data: `{"action":"mute","user":"bob","by":"alice","until":...,
/// "reason":...}`; the fields an action has no use for are left out.
#[derive(Debug, Default, Serialize)]
pub struct Moderated<'a> {
    pub action: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<&'a str>,
    pub by: &'a str,
    /// RFC 3339; absent: until lifted (or no end applies).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<&'a str>,
}

/// `{"type":"moderation","room":r,"data":{...}}` (no room for an instance-wide action).
pub fn moderation_frame(room: Option<&str>, event: &Moderated<'_>) -> Frame {
    data_frame(MessageType::Moderation, None, room, event)
}

/// A room's settings as members see them.
#[derive(Debug, Serialize)]
pub struct RoomSettings<'a> {
    pub title: Option<&'a str>,
    pub topic: Option<&'a str>,
    pub slow_mode_ms: i64,
    pub archived: bool,
    pub by: &'a str,
}

/// `{"type":"room_updated","room":r,"data":{settings}}`, or `room_deleted` once archived.
pub fn room_settings_frame(room: &str, settings: &RoomSettings<'_>) -> Frame {
    let kind = if settings.archived { MessageType::RoomDeleted } else { MessageType::RoomUpdated };
    data_frame(kind, None, Some(room), settings)
}
