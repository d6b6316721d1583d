//! Away and back, told live: a user none of whose connections showed a person there for
//! `--away-after` is told to its rooms as `away`, once; the next sign of a person (a chat, a join,
//! a leave, a delete, `active`, a new connection) tells them it is `back`.
//!
//! Owns: when the shard looks for users gone idle (every quarter of `--away-after`, so a user is
//! told away at most a quarter late). May touch: the cache's away marks, the presence manager.
//! Must not: keep a list of users of its own (the mark lives on the user's connections, in their
//! padding), or tell anything when presence events are off.

use std::time::{Duration, Instant};

use super::Shard;
use crate::broker::LocalChange;
use crate::mailbox::ConnId;
use crate::protocol::{PresenceStatus, Room, UserId};

/// The shortest time between two looks for idle users.
const MIN_SWEEP: Duration = Duration::from_millis(50);

/// When a shard next looks for users gone idle.
#[derive(Debug)]
pub struct AwaySweep {
    every: Duration,
    next: Instant,
}

impl AwaySweep {
    /// `None` when nobody would be told: presence events off, or `away_after` zero.
    pub fn new(away_after: Duration, presence_events: bool) -> Option<Self> {
        if !presence_events || away_after.is_zero() {
            return None;
        }
        let every = (away_after / 4).max(MIN_SWEEP);
        Some(Self { every, next: Instant::now() + every })
    }

    pub fn next_deadline(&self) -> Instant {
        self.next
    }
}

impl Shard {
    /// A client frame that shows a person there; tells the user's rooms it is back when it was away.
    pub(super) fn shows_presence(&mut self, conn: ConnId) {
        if let Some((user, rooms)) = self.cache.touch(conn, Instant::now()) {
            self.tell_activity(user, rooms, PresenceStatus::Back);
        }
    }

    /// A new connection of `user`, who may have been told away.
    pub(super) fn connected_again(&mut self, user: &UserId) {
        if let Some((user, rooms)) = self.cache.back(user) {
            self.tell_activity(user, rooms, PresenceStatus::Back);
        }
    }

    /// When the sweep is due: tells the rooms of the users who went idle since the last one.
    pub(super) fn away_due(&mut self, now: Instant) {
        let Some(sweep) = self.away_sweep.as_mut().filter(|sweep| sweep.next <= now) else {
            return;
        };
        sweep.next = now + sweep.every;
        let away_after = self.hub.settings().away_after;
        for (user, rooms) in self.cache.newly_away(now, away_after) {
            self.tell_activity(user, rooms, PresenceStatus::Away);
        }
    }

    fn tell_activity(&mut self, user: UserId, rooms: Vec<Room>, status: PresenceStatus) {
        if self.away_sweep.is_none() || rooms.is_empty() {
            return;
        }
        let change = match status {
            PresenceStatus::Away => {
                LocalChange::WentAway { user: user.clone(), rooms: rooms.clone() }
            }
            _ => LocalChange::CameBack { user: user.clone(), rooms: rooms.clone() },
        };
        let announce = self.hub.presence().local_change(change);
        for room in rooms {
            self.announce(room, &user, status, announce);
        }
    }
}
