//! "alice is typing": never stored, never numbered, told to a room as its typers change.
//!
//! Owns: on a user's shard, when each user last started typing (a start within [`MIN_INTERVAL`]
//! of the previous is dropped: the per-user limit); on a room's home shard, the
//! room's typers with when each stops unless renewed (`--typing-timeout`), and the room's
//! coalescing window. Must not: tell rooms above `--presence-max-members` (the presence coalescer
//! knows their size) or anything with presence events off.
//!
//! A start from a user not typing is told (`{"user":u,"typing":true}`), a renewal only moves the
//! user's end; a stop, the end passing, a leave or a disconnect tells `"typing":false`. Like presence,
//! the first change of a window (`--typing-coalesce`) goes out at once and the rest at its end as
//! one `batch` frame
//! (`started`/`stopped`); one who starts and stops inside a window is in neither. In cluster mode
//! the home of the instance the typer is on tells every instance, like any room publish.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap};
use std::time::{Duration, Instant};

use super::Shard;
use crate::mailbox::{Delivery, Target};
use crate::protocol::{self, Room, UserId};

/// The least time between two `typing` frames of a user that are acted on.
pub const MIN_INTERVAL: Duration = Duration::from_millis(250);

/// What a room is told about its typers.
#[derive(Debug, PartialEq, Eq)]
pub enum TypingTold {
    Change(UserId, bool),
    Batch { started: Vec<UserId>, stopped: Vec<UserId> },
}

#[derive(Debug, Default)]
struct RoomTyping {
    /// Each typer and when it stops unless renewed.
    typers: HashMap<UserId, Instant>,
    open_until: Option<Instant>,
    started: BTreeSet<UserId>,
    stopped: BTreeSet<UserId>,
}

/// The typers of the rooms homed on one shard.
#[derive(Debug)]
pub struct Typers {
    timeout: Duration,
    window: Duration,
    rooms: HashMap<Room, RoomTyping>,
    /// Window ends and typers' ends, per room (a stale one finds nothing to do).
    deadlines: BinaryHeap<Reverse<(Instant, Room)>>,
}

impl Typers {
    pub fn new(timeout: Duration, window: Duration) -> Self {
        Self { timeout, window, rooms: HashMap::new(), deadlines: BinaryHeap::new() }
    }

    /// `user` started (or renewed) or stopped typing in `room`; what to tell now, if anything.
    pub fn change(
        &mut self,
        room: &Room,
        user: &UserId,
        typing: bool,
        now: Instant,
    ) -> Option<TypingTold> {
        let entry = self.rooms.entry(room.clone()).or_default();
        let changed = if typing {
            self.deadlines.push(Reverse((now + self.timeout, room.clone())));
            entry.typers.insert(user.clone(), now + self.timeout).is_none()
        } else {
            entry.typers.remove(user).is_some()
        };
        if !changed {
            return None;
        }
        self.tell(room, user, typing, now)
    }

    fn tell(
        &mut self,
        room: &Room,
        user: &UserId,
        typing: bool,
        now: Instant,
    ) -> Option<TypingTold> {
        let entry = self.rooms.get_mut(room)?;
        if entry.open_until.is_some_and(|until| until > now) {
            let (undone, added) = if typing {
                (&mut entry.stopped, &mut entry.started)
            } else {
                (&mut entry.started, &mut entry.stopped)
            };
            if !undone.remove(user) {
                added.insert(user.clone());
            }
            return None;
        }
        if !self.window.is_zero() {
            entry.open_until = Some(now + self.window);
            self.deadlines.push(Reverse((now + self.window, room.clone())));
        }
        Some(TypingTold::Change(user.clone(), typing))
    }

    /// The typers whose end passed stop; the windows that ended send their batch.
    pub fn due(&mut self, now: Instant) -> Vec<(Room, TypingTold)> {
        let mut rooms = Vec::new();
        while let Some(Reverse((at, _))) = self.deadlines.peek() {
            if *at > now {
                break;
            }
            let Some(Reverse((_, room))) = self.deadlines.pop() else { break };
            rooms.push(room);
        }
        rooms.sort_unstable();
        rooms.dedup();
        let mut told = Vec::new();
        for room in rooms {
            // The ended window's batch first: the stops found now come after what it holds.
            told.extend(self.batch(&room, now).map(|t| (room.clone(), t)));
            let Some(entry) = self.rooms.get_mut(&room) else { continue };
            let ended: Vec<UserId> = entry
                .typers
                .iter()
                .filter(|(_, end)| **end <= now)
                .map(|(u, _)| u.clone())
                .collect();
            entry.typers.retain(|_, end| *end > now);
            for user in ended {
                told.extend(self.tell(&room, &user, false, now).map(|t| (room.clone(), t)));
            }
        }
        told
    }

    /// A room's window ended: its batch, if it has changes (which opens a new window).
    fn batch(&mut self, room: &Room, now: Instant) -> Option<TypingTold> {
        let entry = self.rooms.get_mut(room)?;
        if entry.open_until.is_some_and(|until| until > now) {
            return None;
        }
        entry.open_until = None;
        if entry.started.is_empty() && entry.stopped.is_empty() {
            if entry.typers.is_empty() {
                self.rooms.remove(room);
            }
            return None;
        }
        let started = std::mem::take(&mut entry.started).into_iter().collect();
        let stopped = std::mem::take(&mut entry.stopped).into_iter().collect();
        entry.open_until = Some(now + self.window);
        self.deadlines.push(Reverse((now + self.window, room.clone())));
        Some(TypingTold::Batch { started, stopped })
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.peek().map(|Reverse((at, _))| *at)
    }
}

impl Shard {
    /// A member's `typing`: to the room's home; a start that follows the user's last one too
    /// closely is dropped (a stop never is).
    pub(super) fn typing(&mut self, user: UserId, room: Room, typing: bool) {
        let settings = self.hub.settings();
        if !settings.presence_events || typing && !self.limits.allow_typing(&user, Instant::now()) {
            return;
        }
        let home = self.hub.router().home_of(&room);
        self.hub.router().deliver(home, Delivery::Typing { room, user, typing });
    }

    /// A user who typed lately leaves `room` (or goes): the room's home stops it there.
    pub(super) fn stop_typing(&mut self, user: &UserId, room: &Room) {
        if self.limits.typed_lately(user, Instant::now(), self.hub.settings().typing_timeout) {
            let (home, room, user) = (self.hub.router().home_of(room), room.clone(), user.clone());
            self.hub.router().deliver(home, Delivery::Typing { room, user, typing: false });
        }
    }

    /// At the room's home: a typer's change, told now or kept for the window's batch.
    pub(super) fn on_typing(&mut self, room: Room, user: UserId, typing: bool) {
        if self.presence.members(&room) > self.hub.settings().presence_max_members {
            return;
        }
        if let Some(told) = self.typers.change(&room, &user, typing, Instant::now()) {
            self.tell_typing(room, told);
        }
    }

    pub(super) fn typing_due(&mut self) {
        for (room, told) in self.typers.due(Instant::now()) {
            self.tell_typing(room, told);
        }
    }

    fn tell_typing(&mut self, room: Room, told: TypingTold) {
        let frame = match told {
            TypingTold::Change(user, typing) => protocol::typing_frame(&room, &user, typing),
            TypingTold::Batch { started, stopped } => {
                protocol::typing_batch_frame(&room, &started, &stopped)
            }
        };
        self.publish(Target::Room(room), frame);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMEOUT: Duration = Duration::from_secs(5);
    const WINDOW: Duration = Duration::from_millis(100);

    fn ids(users: &[&str]) -> Vec<UserId> {
        users.iter().map(|u| UserId::from(*u)).collect()
    }

    #[test]
    fn a_start_is_told_once_renewals_are_not_and_the_end_stops_it() {
        let (mut typers, room, t0) =
            (Typers::new(TIMEOUT, WINDOW), Room::from("r"), Instant::now());
        let told = typers.change(&room, &"a".into(), true, t0);
        assert_eq!(told, Some(TypingTold::Change("a".into(), true)));
        assert_eq!(typers.change(&room, &"a".into(), true, t0 + WINDOW * 2), None, "a renewal");
        assert!(typers.due(t0 + TIMEOUT).is_empty(), "renewed: not ended yet");
        let ended = typers.due(t0 + WINDOW * 2 + TIMEOUT);
        assert_eq!(ended, vec![(room.clone(), TypingTold::Change("a".into(), false))]);
        assert_eq!(typers.change(&room, &"a".into(), false, t0 + TIMEOUT * 2), None, "not typing");
    }

    #[test]
    fn changes_within_a_window_go_in_one_batch() {
        let (mut typers, room, t0) =
            (Typers::new(TIMEOUT, WINDOW), Room::from("r"), Instant::now());
        assert!(typers.change(&room, &"a".into(), true, t0).is_some());
        for (user, typing) in [("b", true), ("c", true), ("c", false), ("a", false)] {
            assert_eq!(typers.change(&room, &user.into(), typing, t0), None);
        }
        let batch = typers.due(t0 + WINDOW);
        let expected = TypingTold::Batch { started: ids(&["b"]), stopped: ids(&["a"]) };
        assert_eq!(batch, vec![(room, expected)], "c started and stopped: in neither");
    }
}
