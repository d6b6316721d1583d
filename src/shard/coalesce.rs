//! Presence events, coalesced per room on the room's home shard, so a room that fills or empties
//! at once (a deploy, a reconnect storm, a wave of evictions) sends a few frames, not one per change
//! to every member.
//!
//! Owns: per room homed here, its member count as presence sees it (users, not connections) and its
//! coalescing window. Must not: send anything itself; the shard publishes what it returns.
//!
//! The first change in a window goes out at once, as a `join`/`leave`/`away`/`back` event. The
//! further ones within `--presence-coalesce` go out at the window's end as one `batch` frame (and a
//! new window opens); a user who joins and leaves (or goes away and comes back) inside one window
//! appears in neither list, and one who leaves is in neither `away` nor `back`. Rooms with more than
//! `--presence-max-members` members send no events.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap};
use std::time::{Duration, Instant};

use super::Shard;
use crate::mailbox::{Delivery, Target};
use crate::protocol::{self, PresenceBatch, PresenceStatus, Room, UserId};

/// What a room's members are told.
#[derive(Debug, PartialEq, Eq)]
pub enum Told {
    Event(UserId, PresenceStatus),
    Batch(PresenceBatch),
}

#[derive(Debug, Default)]
struct RoomPresence {
    members: usize,
    open_until: Option<Instant>,
    joined: BTreeSet<UserId>,
    left: BTreeSet<UserId>,
    away: BTreeSet<UserId>,
    back: BTreeSet<UserId>,
}

impl RoomPresence {
    /// Keeps a change for the window's batch: one that undoes a kept change cancels it.
    fn keep(&mut self, user: &UserId, status: PresenceStatus) {
        let (undone, added) = match status {
            PresenceStatus::Join => (&mut self.left, &mut self.joined),
            PresenceStatus::Leave => (&mut self.joined, &mut self.left),
            PresenceStatus::Away => (&mut self.back, &mut self.away),
            PresenceStatus::Back => (&mut self.away, &mut self.back),
        };
        if !undone.remove(user) {
            added.insert(user.clone());
        }
        if status == PresenceStatus::Leave {
            // Gone from the room: whether it was there says nothing any more.
            self.away.remove(user);
            self.back.remove(user);
        }
    }

    fn is_quiet(&self) -> bool {
        [&self.joined, &self.left, &self.away, &self.back].iter().all(|set| set.is_empty())
    }

    fn clear(&mut self) {
        for set in [&mut self.joined, &mut self.left, &mut self.away, &mut self.back] {
            set.clear();
        }
    }

    fn take(&mut self) -> PresenceBatch {
        let take = |set: &mut BTreeSet<UserId>| std::mem::take(set).into_iter().collect();
        PresenceBatch {
            joined: take(&mut self.joined),
            left: take(&mut self.left),
            away: take(&mut self.away),
            back: take(&mut self.back),
        }
    }
}

/// The coalescing windows of the rooms homed on one shard.
#[derive(Debug)]
pub struct Coalescer {
    window: Duration,
    max_members: usize,
    rooms: HashMap<Room, RoomPresence>,
    deadlines: BinaryHeap<Reverse<(Instant, Room)>>,
}

impl Coalescer {
    pub fn new(window: Duration, max_members: usize) -> Self {
        let (rooms, deadlines) = (HashMap::new(), BinaryHeap::new());
        Self { window, max_members, rooms, deadlines }
    }

    /// `user` joined, left, went away from or came back to `room` (`members`: the room's size after
    /// it, when the caller knows it better than the count kept here). What to tell now, if anything.
    pub fn change(
        &mut self,
        room: &Room,
        user: &UserId,
        status: PresenceStatus,
        members: Option<usize>,
        now: Instant,
    ) -> Option<Told> {
        let presence = self.rooms.entry(room.clone()).or_default();
        let before = presence.members;
        presence.members = members.unwrap_or(match status {
            PresenceStatus::Join => before + 1,
            PresenceStatus::Leave => before.saturating_sub(1),
            PresenceStatus::Away | PresenceStatus::Back => before,
        });
        if before.max(presence.members) > self.max_members {
            presence.clear();
            return None;
        }
        match presence.open_until {
            Some(until) if until > now => {
                presence.keep(user, status);
                None
            }
            _ => {
                if !self.window.is_zero() {
                    presence.open_until = Some(now + self.window);
                    self.deadlines.push(Reverse((now + self.window, room.clone())));
                }
                Some(Told::Event(user.clone(), status))
            }
        }
    }

    /// The windows that ended by `now`: a batch for each with changes (which opens a new window).
    pub fn due(&mut self, now: Instant) -> Vec<(Room, Told)> {
        let mut told = Vec::new();
        while let Some(Reverse((at, _))) = self.deadlines.peek() {
            if *at > now {
                break;
            }
            let Some(Reverse((at, room))) = self.deadlines.pop() else { break };
            let Some(presence) = self.rooms.get_mut(&room) else { continue };
            if presence.open_until != Some(at) {
                continue;
            }
            if presence.is_quiet() {
                presence.open_until = None;
                if presence.members == 0 {
                    self.rooms.remove(&room);
                }
                continue;
            }
            let batch = presence.take();
            presence.open_until = Some(now + self.window);
            self.deadlines.push(Reverse((now + self.window, room.clone())));
            told.push((room, Told::Batch(batch)));
        }
        told
    }

    /// How many members `room` has, as presence counts them (0 for a room it knows nothing of).
    pub fn members(&self, room: &str) -> usize {
        self.rooms.get(room).map_or(0, |presence| presence.members)
    }

    /// When the next window ends, if one is open.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.peek().map(|Reverse((at, _))| *at)
    }
}

impl Shard {
    /// Hands a presence change to the room's home shard (this one, or another); after the batch's
    /// directory commit when one is pending, so the event reaches the joiner too.
    pub(super) fn send_presence(&mut self, room: Room, user: UserId, status: PresenceStatus) {
        let home = self.hub.router().home_of(&room);
        self.deliver_after_commit(
            home,
            Delivery::PresenceChange { room, user, status, members: None },
        );
    }

    /// At the room's home: a change, told now or kept for the window's batch.
    pub(super) fn on_presence(
        &mut self,
        room: Room,
        user: UserId,
        status: PresenceStatus,
        members: Option<usize>,
    ) {
        if let Some(told) = self.presence.change(&room, &user, status, members, Instant::now()) {
            self.tell(room, told);
        }
    }

    /// The windows that ended: their batches go out.
    pub(super) fn presence_due(&mut self) {
        for (room, told) in self.presence.due(Instant::now()) {
            self.tell(room, told);
        }
    }

    pub(super) fn tell(&mut self, room: Room, told: Told) {
        let frame = match told {
            Told::Event(user, status) => protocol::presence_event_frame(&room, &user, status),
            Told::Batch(batch) => protocol::presence_batch_frame(&room, &batch),
        };
        self.publish(Target::Room(room), frame);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use PresenceStatus::{Join, Leave};

    const WINDOW: Duration = Duration::from_millis(100);

    fn ids(users: &[&str]) -> Vec<UserId> {
        users.iter().map(|u| UserId::from(*u)).collect()
    }

    #[test]
    fn the_first_change_goes_at_once_and_the_rest_of_the_window_in_one_batch() {
        let (mut presence, room, t0) =
            (Coalescer::new(WINDOW, 1000), Room::from("r"), Instant::now());
        let first = presence.change(&room, &"a".into(), Join, None, t0);
        assert_eq!(first, Some(Told::Event("a".into(), Join)));
        for (user, status) in [("b", Join), ("c", Join), ("d", Join), ("c", Leave), ("a", Leave)] {
            assert_eq!(presence.change(&room, &user.into(), status, None, t0), None);
        }
        assert_eq!(presence.next_deadline(), Some(t0 + WINDOW));
        assert!(presence.due(t0 + WINDOW / 2).is_empty(), "not before the window ends");
        let batch = presence.due(t0 + WINDOW);
        let changes =
            PresenceBatch { joined: ids(&["b", "d"]), left: ids(&["a"]), ..Default::default() };
        let expected = Told::Batch(changes);
        assert_eq!(batch, vec![(room.clone(), expected)], "c joined and left: in neither list");
        assert!(presence.due(t0 + WINDOW * 2).is_empty(), "a quiet window sends nothing");
        let after = presence.change(&room, &"e".into(), Join, None, t0 + WINDOW * 3);
        assert_eq!(after, Some(Told::Event("e".into(), Join)), "the window closed: at once again");
    }

    #[test]
    fn rooms_above_the_limit_send_nothing_and_windows_are_per_room() {
        let (mut presence, t0) = (Coalescer::new(WINDOW, 2), Instant::now());
        let (small, big) = (Room::from("small"), Room::from("big"));
        assert!(presence.change(&big, &"a".into(), Join, None, t0).is_some());
        assert!(presence.change(&small, &"a".into(), Join, None, t0).is_some(), "its own window");
        assert_eq!(presence.change(&big, &"b".into(), Join, None, t0), None);
        assert_eq!(presence.change(&big, &"c".into(), Join, None, t0), None, "3 > 2 members");
        let due = presence.due(t0 + WINDOW);
        assert!(due.is_empty(), "the big room's pending join was dropped: {due:?}");
        let told = presence.change(&big, &"d".into(), Join, Some(1_500), t0 + WINDOW * 2);
        assert_eq!(told, None, "a size the caller knows counts too");
        let told = presence.change(&big, &"d".into(), Leave, Some(2), t0 + WINDOW * 3);
        assert_eq!(told, None, "the room had more than 2 members before this leave");
        let told = presence.change(&big, &"c".into(), Leave, Some(1), t0 + WINDOW * 4);
        assert_eq!(told, Some(Told::Event("c".into(), Leave)), "small again");
    }

    #[test]
    fn away_and_back_are_batched_without_changing_the_size() {
        use PresenceStatus::{Away, Back};
        let (mut presence, room, t0) = (Coalescer::new(WINDOW, 3), Room::from("r"), Instant::now());
        assert!(presence.change(&room, &"a".into(), Join, None, t0).is_some());
        assert_eq!(presence.change(&room, &"b".into(), Join, None, t0), None);
        for (user, status) in [("a", Away), ("b", Away), ("b", Back), ("a", Back), ("a", Away)] {
            assert_eq!(presence.change(&room, &user.into(), status, None, t0), None);
        }
        for status in [Join, Away, Leave] {
            assert_eq!(presence.change(&room, &"c".into(), status, None, t0), None);
        }
        let changes =
            PresenceBatch { joined: ids(&["b"]), away: ids(&["a"]), ..Default::default() };
        assert_eq!(presence.due(t0 + WINDOW), vec![(room.clone(), Told::Batch(changes))]);
        let told = presence.change(&room, &"b".into(), Away, None, t0 + WINDOW * 3);
        assert_eq!(told, Some(Told::Event("b".into(), Away)), "still 2 members: away adds none");
    }

    #[test]
    fn without_a_window_every_change_goes_at_once() {
        let (mut presence, room, t0) =
            (Coalescer::new(Duration::ZERO, 1000), Room::from("r"), Instant::now());
        for user in ["a", "b", "c"] {
            assert!(presence.change(&room, &user.into(), Join, None, t0).is_some());
        }
        assert_eq!(presence.next_deadline(), None);
    }
}
