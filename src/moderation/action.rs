//! The moderation actions as REST and WebSocket ask for them, and what each names (its room,
//! target, reason, end) for the moderation log and the audit log.

use super::{until_after, Refused, SettingsChange};
use crate::protocol::{self, Millis, Room, UserId};
use crate::store::Role;

/// A moderation action, as REST and WebSocket ask for it.
#[derive(Debug, Clone)]
pub enum Action {
    Mute {
        room: Room,
        user: UserId,
        until: Option<Millis>,
        reason: Option<String>,
    },
    Unmute {
        room: Room,
        user: UserId,
    },
    Kick {
        room: Room,
        user: UserId,
        reason: Option<String>,
    },
    Ban {
        room: Room,
        user: UserId,
        until: Option<Millis>,
        reason: Option<String>,
    },
    Unban {
        room: Room,
        user: UserId,
    },
    SetRole {
        room: Room,
        user: UserId,
        role: Role,
    },
    /// The actor, the room's owner, hands the room over to `user`.
    Transfer {
        room: Room,
        user: UserId,
    },
    Settings {
        room: Room,
        change: SettingsChange,
    },
    Archive {
        room: Room,
        reason: Option<String>,
    },
    Report {
        room: Room,
        message: String,
        from: Option<String>,
        reason: String,
    },
    Resolve {
        room: Room,
        report: i64,
        resolution: String,
    },
    Block {
        user: UserId,
    },
    Unblock {
        user: UserId,
    },
    /// Instance-wide, admins only.
    BanUser {
        user: UserId,
        until: Option<Millis>,
        reason: Option<String>,
    },
    UnbanUser {
        user: UserId,
    },
}

impl Action {
    /// Its name in the moderation log and the audit log.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Mute { .. } => "mute",
            Self::Unmute { .. } => "unmute",
            Self::Kick { .. } => "kick",
            Self::Ban { .. } => "ban",
            Self::Unban { .. } => "unban",
            Self::SetRole { .. } => "set_role",
            Self::Transfer { .. } => "transfer",
            Self::Settings { .. } => "settings",
            Self::Archive { .. } => "archive",
            Self::Report { .. } => "report",
            Self::Resolve { .. } => "resolve",
            Self::Block { .. } => "block",
            Self::Unblock { .. } => "unblock",
            Self::BanUser { .. } => "ban_user",
            Self::UnbanUser { .. } => "unban_user",
        }
    }

    pub(super) fn room(&self) -> Option<&Room> {
        match self {
            Self::Mute { room, .. }
            | Self::Unmute { room, .. }
            | Self::Kick { room, .. }
            | Self::Ban { room, .. }
            | Self::Unban { room, .. }
            | Self::SetRole { room, .. }
            | Self::Transfer { room, .. }
            | Self::Settings { room, .. }
            | Self::Archive { room, .. }
            | Self::Report { room, .. }
            | Self::Resolve { room, .. } => Some(room),
            _ => None,
        }
    }

    pub(super) fn target(&self) -> Option<&str> {
        match self {
            Self::Mute { user, .. }
            | Self::Unmute { user, .. }
            | Self::Kick { user, .. }
            | Self::Ban { user, .. }
            | Self::Unban { user, .. }
            | Self::SetRole { user, .. }
            | Self::Transfer { user, .. }
            | Self::Block { user }
            | Self::Unblock { user }
            | Self::BanUser { user, .. }
            | Self::UnbanUser { user } => Some(user),
            Self::Report { message, .. } => Some(message),
            _ => None,
        }
    }

    pub(super) fn reason(&self) -> Option<&str> {
        match self {
            Self::Mute { reason, .. }
            | Self::Kick { reason, .. }
            | Self::Ban { reason, .. }
            | Self::Archive { reason, .. }
            | Self::BanUser { reason, .. } => reason.as_deref(),
            Self::Report { reason, .. } => Some(reason),
            Self::Resolve { resolution, .. } => Some(resolution),
            _ => None,
        }
    }

    pub(super) fn until(&self) -> Option<Millis> {
        match self {
            Self::Mute { until, .. } | Self::Ban { until, .. } | Self::BanUser { until, .. } => {
                *until
            }
            _ => None,
        }
    }
}

/// The action a WebSocket moderation frame in `room` asks for.
pub fn requested(room: Room, request: protocol::Moderate) -> Result<Action, Refused> {
    let until = |duration: Option<i64>| duration.map(until_after).transpose();
    Ok(match request {
        protocol::Moderate::Mute { user, duration, reason } => {
            Action::Mute { room, user, until: until(duration)?, reason }
        }
        protocol::Moderate::Unmute { user } => Action::Unmute { room, user },
        protocol::Moderate::Kick { user, reason } => Action::Kick { room, user, reason },
        protocol::Moderate::Ban { user, duration, reason } => {
            Action::Ban { room, user, until: until(duration)?, reason }
        }
        protocol::Moderate::Unban { user } => Action::Unban { room, user },
        protocol::Moderate::Report { id, from, reason } => {
            Action::Report { room, message: id, from, reason }
        }
    })
}
