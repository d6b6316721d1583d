//! A room's participants told its unread count: at most once per `--unread-coalesce` per room.
//!
//! Owns: on a room's home shard, each room's window: a room whose message (or room event) was
//! stored is told at once when no window is open, else once at the window's end, whatever number
//! of messages came in it. Must not: read the store itself; the telling is
//! [`crate::messages::tell_unread`], offloaded to a task of its own.
//!
//! In cluster mode the home of the instance a message was sent on tells; an instance that only heard
//! it does not, so a message is told once, and a room busy on several instances is told at most
//! once per window per instance.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::time::{Duration, Instant};

use super::Shard;
use crate::messages;
use crate::protocol::Room;

/// The unread windows of the rooms homed on one shard.
#[derive(Debug)]
pub struct UnreadWindows {
    window: Duration,
    /// Per room with an open window: whether a message came in it (to tell at its end).
    open: HashMap<Room, bool>,
    ends: BinaryHeap<Reverse<(Instant, Room)>>,
}

impl UnreadWindows {
    pub fn new(window: Duration) -> Self {
        Self { window, open: HashMap::new(), ends: BinaryHeap::new() }
    }

    /// A message of `room` was stored: whether to tell the room now.
    pub fn note(&mut self, room: &Room, now: Instant) -> bool {
        if let Some(pending) = self.open.get_mut(room) {
            *pending = true;
            return false;
        }
        if !self.window.is_zero() {
            self.open.insert(room.clone(), false);
            self.ends.push(Reverse((now + self.window, room.clone())));
        }
        true
    }

    /// The rooms whose window ended with a message in it (each opens a new window).
    pub fn due(&mut self, now: Instant) -> Vec<Room> {
        let mut told = Vec::new();
        while self.ends.peek().is_some_and(|Reverse((at, _))| *at <= now) {
            let Some(Reverse((_, room))) = self.ends.pop() else { break };
            if self.open.remove(&room) == Some(true) {
                self.note(&room, now);
                told.push(room);
            }
        }
        told
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        self.ends.peek().map(|Reverse((at, _))| *at)
    }
}

impl Shard {
    /// A message or room event of `room` is stored: its participants hear of it, in time.
    pub(super) fn note_unread(&mut self, room: &Room) {
        if self.hub.settings().unread_max_members == 0 || self.hub.store().is_none() {
            return;
        }
        if self.unread.note(room, Instant::now()) {
            self.tell_unread(vec![room.clone()]);
        }
    }

    pub(super) fn unread_due(&mut self) {
        let rooms = self.unread.due(Instant::now());
        if !rooms.is_empty() {
            self.tell_unread(rooms);
        }
    }

    fn tell_unread(&self, rooms: Vec<Room>) {
        let hub = self.hub.clone();
        tokio::spawn(async move {
            for room in rooms {
                messages::tell_unread(&hub, &room).await;
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_message_is_told_at_once_and_the_rest_of_a_window_once_at_its_end() {
        let window = Duration::from_secs(1);
        let mut windows = UnreadWindows::new(window);
        let (room, start) = (Room::from("r"), Instant::now());
        assert!(windows.note(&room, start));
        assert!(!windows.note(&room, start));
        assert!(!windows.note(&room, start + window / 2));
        assert_eq!(windows.due(start + window / 2), Vec::<Room>::new());
        assert_eq!(windows.due(start + window), vec![room.clone()]);
        // The batch opened a new window; nothing came in it, so its end tells nothing.
        assert_eq!(windows.due(start + window * 2), Vec::<Room>::new());
        assert_eq!(windows.next_deadline(), None);
        assert!(windows.note(&room, start + window * 3));
    }

    #[test]
    fn no_window_tells_every_message() {
        let mut windows = UnreadWindows::new(Duration::ZERO);
        let room = Room::from("r");
        assert!(windows.note(&room, Instant::now()));
        assert!(windows.note(&room, Instant::now()));
        assert_eq!(windows.next_deadline(), None);
    }
}
