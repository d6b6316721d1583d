//! What moderation puts in force on this shard: the rules of the rooms homed here, checked before
//! a chat is numbered (so a refused chat uses no seq), and the instance bans of this shard's users.
//!
//! Owns: per room homed here, its [`RoomRules`] and, in slow mode, when each member last sent; per
//! user of this shard, the instance ban in force. Both are loaded from the store at start-up and
//! follow [`Notice`]s (from this instance, or through Redis from the others). May touch: the
//! cache (a kicked or banned user's connections). Must not: read the store; the moderation
//! service reads what is in force and sends the notices.

use std::collections::HashMap;
use std::time::SystemTime;

use super::Shard;
use crate::close;
use crate::mailbox::{Delivery, Enrolment, Origin, ToSequence};
use crate::protocol::{millis, MessageType, Millis, Room, UserId};
use crate::rules::{InForce, Notice, Refusal, RoomRules};

#[derive(Debug, Default)]
pub struct Enforced {
    rooms: HashMap<Room, Box<RoomRules>>,
    /// Slow mode: when each user last sent a chat in a room that has it.
    last_sent: HashMap<(Room, UserId), Millis>,
    banned: HashMap<UserId, Option<Millis>>,
}

impl Enforced {
    /// Whether `item` may be numbered; a chat let through in slow mode is remembered.
    fn check(&mut self, item: &ToSequence) -> Result<(), Refusal> {
        if self.rooms.is_empty() || item.kind != MessageType::Chat {
            return Ok(());
        }
        // Nobody moderates an admin (a connection with an admin token, or an HTTP publish).
        if matches!(item.origin, Origin::Reply(_) | Origin::Connection { admin: true, .. }) {
            return Ok(());
        }
        let Some(rules) = self.rooms.get(&item.room) else { return Ok(()) };
        let now = millis(SystemTime::now());
        let key = (item.room.clone(), item.sender.clone());
        rules.check(&item.sender, now, self.last_sent.get(&key).copied())?;
        if rules.slow(&item.sender) {
            self.last_sent.insert(key, now);
        }
        Ok(())
    }

    fn set_rules(&mut self, room: Room, rules: Option<Box<RoomRules>>) {
        match rules {
            Some(rules) => {
                if rules.slow_mode_ms == 0 {
                    self.last_sent.retain(|(slow, _), _| *slow != room);
                }
                self.rooms.insert(room, rules);
            }
            None => {
                self.rooms.remove(&room);
                self.last_sent.retain(|(slow, _), _| *slow != room);
            }
        }
    }

    /// The instance ban of `user` in force now, if any (an ended one is forgotten).
    pub fn ban_of(&mut self, user: &str) -> Option<Option<Millis>> {
        let until = *self.banned.get(user)?;
        if until.is_some_and(|until| until <= millis(SystemTime::now())) {
            self.banned.remove(user);
            return None;
        }
        Some(until)
    }
}

impl Shard {
    /// Checks a room message against its room's rules, at its home, before it is numbered;
    /// `Err`: refused (its sender is told).
    pub(super) fn enforce(&mut self, item: ToSequence) -> Result<ToSequence, ()> {
        match self.enforced.check(&item) {
            Ok(()) => Ok(item),
            Err(refusal) => {
                self.refuse_because(item, Some(refusal));
                Err(())
            }
        }
    }

    /// A refusal of the room's home (its rules, or the store) back to the sender.
    pub(super) fn refuse_because(&mut self, item: ToSequence, why: Option<Refusal>) {
        match item.origin {
            Origin::Connection { shard, conn, .. } => {
                let (user, room, id, why) = (item.sender, item.room, item.id, why.map(Box::new));
                self.tell_sender(shard, Delivery::Refused { conn, user, room, id, why });
            }
            Origin::Reply(reply) => drop(reply.send(None)),
        }
    }

    /// Hands `refused` to the sender's shard: this one, or another.
    pub(super) fn tell_sender(&mut self, shard: usize, refused: Delivery) {
        if shard == self.id {
            self.on_delivery(refused);
        } else {
            self.hub.router().deliver(shard, refused);
        }
    }

    pub(super) fn on_notice(&mut self, notice: Notice) {
        match notice {
            Notice::Rules { room, rules } => match crate::protocol::validate_room(&room) {
                Ok(room) => self.enforced.set_rules(room, rules),
                Err(_) => tracing::debug!(room, "rules of a room that cannot be named"),
            },
            Notice::Kick { room, user } => {
                if let (Ok(room), Ok(user)) =
                    (crate::protocol::validate_room(&room), crate::protocol::validate_user(&user))
                {
                    self.kick(&user, &room);
                }
            }
            Notice::Ban { user, until } => {
                let Ok(user) = crate::protocol::validate_user(&user) else { return };
                self.enforced.banned.insert(user.clone(), until);
                self.close_user(&user, &close::BANNED);
            }
            Notice::Unban { user } => {
                self.enforced.banned.remove(user.as_str());
            }
        }
    }

    /// Everything in force: this shard's part replaces what it had (a notice Redis lost while it
    /// was away is so made good).
    pub(super) fn on_in_force(&mut self, in_force: &InForce) {
        let router = self.hub.router();
        let mine = |room: &str| router.home_of(room) == self.id;
        let rooms: HashMap<Room, Box<RoomRules>> = in_force
            .rooms
            .iter()
            .filter(|(room, _)| mine(room))
            .filter_map(|(room, rules)| {
                let room = crate::protocol::validate_room(room).ok()?;
                Some((room, Box::new(rules.clone())))
            })
            .collect();
        let banned: HashMap<UserId, Option<Millis>> = in_force
            .bans
            .iter()
            .filter(|(user, _)| router.shard_of_user(user) == self.id)
            .filter_map(|(user, until)| Some((crate::protocol::validate_user(user).ok()?, *until)))
            .collect();
        let newly: Vec<(UserId, Option<Millis>)> = banned
            .iter()
            .filter(|(user, _)| !self.enforced.banned.contains_key(*user))
            .map(|(user, until)| (user.clone(), *until))
            .collect();
        let slow = |room: &Room| rooms.get(room).is_some_and(|rules| rules.slow_mode_ms > 0);
        self.enforced.last_sent.retain(|(room, _), _| slow(room));
        self.enforced.rooms = rooms;
        self.enforced.banned = banned;
        // A ban made while Redis was away closes the user's connections here now.
        for (user, _) in newly {
            self.close_user(&user, &close::BANNED);
        }
    }

    /// A registration of a banned user is refused.
    pub(super) fn ban_refusal(&mut self, user: &str) -> Option<Enrolment> {
        self.enforced.ban_of(user).map(Enrolment::Banned)
    }
}
