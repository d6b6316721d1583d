//! Moderation in the store: roles, room settings, mutes and bans, reports, blocks, and the
//! moderation log, written once over any [`Engine`]: the changes ([`write`]) and the questions
//! ([`read`]).
//!
//! Owns: the SQL of the moderation tables (migration 0009) and what is in force at a time. Must
//! not: decide who may act; [`crate::moderation`] checks that before it writes.

mod read;
mod write;

pub use read::ask;
pub(in crate::store) use read::bar;
pub use write::apply;

use super::Role;
use super::StoreError;
use crate::protocol::Millis;
use crate::rules::RoomRules;

/// A mute or a ban.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Mute,
    Ban,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Mute => "mute",
            Self::Ban => "ban",
        }
    }

    fn parse(name: &str) -> Result<Self, StoreError> {
        match name {
            "mute" => Ok(Self::Mute),
            "ban" => Ok(Self::Ban),
            other => Err(StoreError::Corrupt(format!("sanction kind {other:?}"))),
        }
    }
}

/// A mute or ban: in `room`, or instance-wide (a ban with `room` empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sanction {
    pub room: String,
    pub user: String,
    pub kind: Kind,
    /// `None`: until lifted.
    pub until: Option<Millis>,
    pub reason: Option<String>,
    pub by: String,
    pub at: Millis,
}

/// A line of the moderation log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Logged {
    /// Empty for an instance-wide action.
    pub room: String,
    pub actor: String,
    pub target: Option<String>,
    pub action: String,
    pub reason: Option<String>,
    pub until: Option<Millis>,
    pub at: Millis,
}

/// A room's settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings {
    pub title: Option<String>,
    pub topic: Option<String>,
    pub slow_mode_ms: i64,
    pub archived_at: Option<Millis>,
}

/// A report of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub pos: i64,
    pub room: String,
    pub sender: String,
    pub message: String,
    pub reporter: String,
    pub reason: String,
    pub at: Millis,
    /// (by, resolution, at), once resolved.
    pub resolved: Option<(String, String, Millis)>,
}

/// A moderation change, applied by the writer (with its log line, when the change is made).
#[derive(Debug, Clone)]
pub enum Act {
    /// A participant's role (not to or from owner: that is [`Act::Transfer`]).
    SetRole {
        room: String,
        user: String,
        role: Role,
    },
    /// `to` (a participant) becomes the owner, `from` a moderator.
    Transfer {
        room: String,
        from: String,
        to: String,
    },
    /// A mute or ban, replacing one of the same kind; a room ban also removes the participant.
    Impose(Sanction),
    /// Removes a participant.
    Kick {
        room: String,
        user: String,
    },
    /// Lifts a mute or ban; with `ended`, only one that ended by then (the sweep).
    Lift {
        room: String,
        user: String,
        kind: Kind,
        ended: Option<Millis>,
    },
    Settings {
        room: String,
        settings: Settings,
    },
    Report(Report),
    /// Resolves an open report of `room`.
    Resolve {
        room: String,
        report: i64,
        by: String,
        resolution: String,
        at: Millis,
    },
    Block {
        user: String,
        blocked: String,
        at: Millis,
    },
    Unblock {
        user: String,
        blocked: String,
    },
}

/// A moderation question, answered by a reader.
#[derive(Debug, Clone)]
pub enum Ask {
    /// Everything in force at `now`: sanctions, and the rules of every room that has some.
    InForce {
        now: Millis,
    },
    /// One room's rules at `now` (`None`: it has none).
    Rules {
        room: String,
        now: Millis,
    },
    /// The mutes or bans of `room` in force at `now` (`""`: the instance-wide bans).
    Sanctions {
        room: String,
        kind: Kind,
        now: Millis,
    },
    Settings {
        room: String,
    },
    /// Reports of `room` (every room: `None`), oldest first, open ones only unless `all`.
    Reports {
        room: Option<String>,
        all: bool,
        after: i64,
        limit: i64,
    },
    /// The log of `room`, newest first, before position `before`.
    Log {
        room: String,
        before: i64,
        limit: i64,
    },
    Blocks {
        user: String,
    },
    /// The instance-wide ban of `user` in force at `now`, if any.
    Banned {
        user: String,
        now: Millis,
    },
    /// Timed sanctions that ended by `now` (the sweep lifts them), at most `limit`.
    Ended {
        now: Millis,
        limit: i64,
    },
}

/// What a moderation question found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    InForce {
        sanctions: Vec<Sanction>,
        rooms: Vec<(String, RoomRules)>,
    },
    Rules(Option<Box<RoomRules>>),
    Sanctions(Vec<Sanction>),
    Settings(Option<Settings>),
    Reports(Vec<Report>),
    /// (position, line), newest first.
    Log(Vec<(i64, Logged)>),
    Blocks(Vec<(String, Millis)>),
    Banned(Option<Sanction>),
}
