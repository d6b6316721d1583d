//! What moderation puts in force, as the shards enforce it: a room's rules (mutes, slow mode,
//! archived) and the notices that carry a moderation action to the shards of every instance.
//!
//! Owns: the rules' values and the one check a chat passes ([`RoomRules::check`]), pure and
//! tested here; the notices' cluster form (JSON). Must not: read the store or hold state; the
//! store says what is in force ([`crate::store::moderation`]), a room's home shard keeps its
//! room's rules, a user's shard its instance ban.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::protocol::{self, ErrorCode, Frame, Millis};

/// What a room's home shard checks before it numbers a chat. A room with no rule has none.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomRules {
    /// A member may send one chat per this many milliseconds (0: off).
    pub slow_mode_ms: i64,
    /// Who slow mode does not hold back: the room's owners and moderators.
    pub exempt: HashSet<String>,
    /// Muted users, each until when (`None`: until unmuted).
    pub muted: HashMap<String, Option<Millis>>,
    /// No new messages.
    pub archived: bool,
}

/// Why a chat was refused by its room's rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    Muted {
        until: Option<Millis>,
    },
    /// Slow mode: the next chat may come in this many milliseconds.
    SlowMode {
        wait_ms: i64,
    },
    Archived,
}

impl RoomRules {
    /// Whether these rules change anything (a room with none needs no entry).
    pub fn is_empty(&self) -> bool {
        self.slow_mode_ms == 0 && self.muted.is_empty() && !self.archived
    }

    /// Whether `user` may send a chat at `now`, its previous one (in slow mode) sent at `last`.
    pub fn check(&self, user: &str, now: Millis, last: Option<Millis>) -> Result<(), Refusal> {
        if self.archived {
            return Err(Refusal::Archived);
        }
        if let Some(until) = self.muted.get(user) {
            if until.is_none_or(|until| until > now) {
                return Err(Refusal::Muted { until: *until });
            }
        }
        match last {
            Some(last) if self.slow(user) && now - last < self.slow_mode_ms => {
                Err(Refusal::SlowMode { wait_ms: self.slow_mode_ms - (now - last) })
            }
            _ => Ok(()),
        }
    }

    /// Whether slow mode holds `user` back.
    pub fn slow(&self, user: &str) -> bool {
        self.slow_mode_ms > 0 && !self.exempt.contains(user)
    }
}

impl Refusal {
    /// The error code its frame carries.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Muted { .. } => ErrorCode::Muted,
            Self::SlowMode { .. } => ErrorCode::SlowMode,
            Self::Archived => ErrorCode::Forbidden,
        }
    }

    /// The error frame a refused chat's sender gets.
    pub fn frame(&self, id: Option<&str>, room: &str) -> Frame {
        match self {
            Self::Muted { until } => {
                let until = until.map(|until| protocol::format_rfc3339(protocol::time_of(until)));
                let message = match &until {
                    Some(until) => format!("you are muted in {room} until {until}"),
                    None => format!("you are muted in {room}"),
                };
                protocol::refusal_frame(id, ErrorCode::Muted, &message, until.as_deref(), None)
            }
            Self::SlowMode { wait_ms } => {
                let message = format!("{room} is in slow mode: wait {wait_ms} ms");
                protocol::refusal_frame(id, ErrorCode::SlowMode, &message, None, Some(*wait_ms))
            }
            Self::Archived => {
                let message = format!("{room} is archived: it takes no new messages");
                protocol::error_frame(id, ErrorCode::Forbidden, &message)
            }
        }
    }
}

/// A moderation action, for the shards that enforce it on every instance (in cluster mode it
/// travels through Redis as JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "notice", rename_all = "snake_case")]
pub enum Notice {
    /// `room`'s rules are now these (`None`: none): for its home shard.
    Rules {
        room: String,
        rules: Option<Box<RoomRules>>,
    },
    /// `user`'s connections leave `room` (kicked, banned, or blocked in a direct room): for the
    /// user's shard.
    Kick {
        room: String,
        user: String,
    },
    /// `user` is banned from the instance until `until` (`None`: until unbanned): its connections
    /// close and new ones are refused. For the user's shard.
    Ban {
        user: String,
        until: Option<Millis>,
    },
    Unban {
        user: String,
    },
}

impl Notice {
    /// The room whose home shard takes it, or else the user whose shard does.
    pub fn addressee(&self) -> Addressee<'_> {
        match self {
            Self::Rules { room, .. } => Addressee::Room(room),
            Self::Kick { user, .. } | Self::Ban { user, .. } | Self::Unban { user } => {
                Addressee::User(user)
            }
        }
    }
}

/// Everything in force, as the store has it: every room's rules and every instance ban. Each shard
/// keeps its part (the rooms homed on it, its users) in place of what it had.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InForce {
    pub rooms: Vec<(String, RoomRules)>,
    pub bans: Vec<(String, Option<Millis>)>,
}

/// Which shard takes a [`Notice`].
pub enum Addressee<'a> {
    Room(&'a str),
    User(&'a str),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> RoomRules {
        RoomRules {
            slow_mode_ms: 10_000,
            exempt: ["mod".to_owned()].into(),
            muted: [("loud".to_owned(), Some(5_000)), ("gone".to_owned(), None)].into(),
            archived: false,
        }
    }

    #[test]
    fn a_mute_holds_until_it_ends() {
        let rules = rules();
        assert_eq!(rules.check("loud", 4_999, None), Err(Refusal::Muted { until: Some(5_000) }));
        assert_eq!(rules.check("loud", 5_000, None), Ok(()));
        assert_eq!(rules.check("gone", i64::MAX, None), Err(Refusal::Muted { until: None }));
    }

    #[test]
    fn slow_mode_spaces_members_out_but_not_moderators() {
        let rules = rules();
        assert_eq!(rules.check("amy", 1_000, None), Ok(()));
        assert_eq!(
            rules.check("amy", 4_000, Some(1_000)),
            Err(Refusal::SlowMode { wait_ms: 7_000 })
        );
        assert_eq!(rules.check("amy", 11_000, Some(1_000)), Ok(()));
        assert_eq!(rules.check("mod", 1_001, Some(1_000)), Ok(()));
    }

    #[test]
    fn an_archived_room_takes_nothing() {
        let rules = RoomRules { archived: true, ..RoomRules::default() };
        assert_eq!(rules.check("anyone", 0, None), Err(Refusal::Archived));
        assert!(RoomRules::default().is_empty());
    }

    #[test]
    fn notices_travel_as_json() {
        let notice = Notice::Rules { room: "lobby".into(), rules: Some(Box::new(rules())) };
        let json = serde_json::to_string(&notice).unwrap();
        assert_eq!(serde_json::from_str::<Notice>(&json).unwrap(), notice);
        let ban: Notice =
            serde_json::from_str(r#"{"notice":"ban","user":"x","until":null}"#).unwrap();
        assert_eq!(ban, Notice::Ban { user: "x".into(), until: None });
    }
}
