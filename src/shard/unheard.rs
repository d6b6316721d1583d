//! At a room's home whose sequencer takes the numbering (Redis, in cluster mode): the answers to a
//! room message's sender (its ack, an HTTP publish's seq; [`Shard::on_committed`] hands them here)
//! wait until this home has heard the message back from the sequencer and fanned it out here, so an
//! answer never overtakes its message on this instance. A home that numbers itself has always
//! heard what it numbered, so nothing waits there.
//!
//! Owns: the answers waiting, per room, in arrival order. Must not: hold one forever. A seq heard
//! at or past it, a new epoch, a fresh subscription, or `UNHEARD_LIMIT` releases it (the last for
//! a message this instance stopped listening for before it came).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::stream::RoomStream;
use super::Shard;
use crate::directory::ShardId;
use crate::mailbox::Delivery;
use crate::protocol::Room;

/// The longest an answer waits for its message to be heard.
const UNHEARD_LIMIT: Duration = Duration::from_secs(2);

#[derive(Debug)]
struct Parked {
    seq: u64,
    shard: ShardId,
    answer: Delivery,
    until: Instant,
}

/// The answers waiting on one home shard.
#[derive(Debug, Default)]
pub struct Unheard {
    rooms: HashMap<Room, Vec<Parked>>,
}

impl Unheard {
    pub(super) fn park(&mut self, room: Room, seq: u64, shard: ShardId, answer: Delivery) {
        let until = Instant::now() + UNHEARD_LIMIT;
        self.rooms.entry(room).or_default().push(Parked { seq, shard, answer, until });
    }

    /// The answers of `room` whose message is at or before `upto` (all of them: `u64::MAX`).
    fn heard(&mut self, room: &Room, upto: u64) -> Vec<(ShardId, Delivery)> {
        let Some(waiting) = self.rooms.get_mut(room) else { return Vec::new() };
        let (done, left): (Vec<Parked>, Vec<Parked>) =
            waiting.drain(..).partition(|w| w.seq <= upto);
        if left.is_empty() {
            self.rooms.remove(room);
        } else {
            *waiting = left;
        }
        done.into_iter().map(|w| (w.shard, w.answer)).collect()
    }

    /// The answers that waited their longest by `now`.
    fn overdue(&mut self, now: Instant) -> Vec<(ShardId, Delivery)> {
        let mut due = Vec::new();
        self.rooms.retain(|_, waiting| {
            // In arrival order, so the overdue ones are a prefix.
            let overdue = waiting.iter().take_while(|w| w.until <= now).count();
            due.extend(waiting.drain(..overdue).map(|w| (w.shard, w.answer)));
            !waiting.is_empty()
        });
        due
    }

    /// When the oldest answer has waited its longest (each room's first is its oldest).
    pub fn next_deadline(&self) -> Option<Instant> {
        self.rooms.values().filter_map(|waiting| waiting.first()).map(|w| w.until).min()
    }
}

impl Shard {
    /// Whether an answer about `room`'s message `seq` must wait here: this is the room's home, and
    /// its stream has not reached that seq yet (a home that numbers has reached every seq it gave;
    /// with a sequencer, the home hears each numbered message back).
    pub(super) fn awaits_hearing(&self, room: &Room, seq: u64) -> bool {
        if self.hub.router().home_of(room) != self.id {
            return false;
        }
        !matches!(self.streams.rooms.get(room), Some(RoomStream::Ready(ready)) if ready.last >= seq)
    }

    /// An HTTP publish's message is in: answered with its seq, after this home's fan-out of it.
    pub(super) fn on_numbered(
        &mut self,
        room: Room,
        reply: oneshot::Sender<Option<u64>>,
        seq: u64,
    ) {
        self.on_room_committed(&room, seq);
        self.note_unread(&room);
        if self.awaits_hearing(&room, seq) {
            let answer = Delivery::Numbered { room: room.clone(), reply, seq };
            return self.unheard.park(room, seq, self.id, answer);
        }
        self.answer_numbered(reply, seq);
    }

    /// Sends an answer on (it waited enough): to its shard after this one's pending output.
    pub(super) fn release_answer(&mut self, shard: ShardId, answer: Delivery) {
        match answer {
            Delivery::Stored { conn, user, room, id, seq } if shard == self.id => {
                self.on_stored(conn, &user, room, id, seq)
            }
            Delivery::Numbered { reply, seq, .. } => self.answer_numbered(reply, seq),
            answer => self.deliver_after_commit(shard, answer),
        }
    }

    /// This home heard `room` up to `upto` (`u64::MAX`: it will not hear the rest): the answers
    /// about those messages go out.
    pub(super) fn release_heard(&mut self, room: &Room, upto: u64) {
        for (shard, answer) in self.unheard.heard(room, upto) {
            self.release_answer(shard, answer);
        }
    }

    /// Answers that waited their longest go out.
    pub(super) fn release_overdue(&mut self) {
        for (shard, answer) in self.unheard.overdue(Instant::now()) {
            self.release_answer(shard, answer);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(seq: u64) -> Delivery {
        let (reply, _) = oneshot::channel();
        Delivery::Numbered { room: Room::from("r"), reply, seq }
    }

    fn seqs(released: Vec<(ShardId, Delivery)>) -> Vec<u64> {
        let seq = |(_, answer): &(ShardId, Delivery)| match answer {
            Delivery::Numbered { seq, .. } => *seq,
            _ => unreachable!("only answers are parked here"),
        };
        released.iter().map(seq).collect()
    }

    #[test]
    fn answers_go_once_their_seq_is_heard_or_they_waited_their_longest() {
        let (mut unheard, room) = (Unheard::default(), Room::from("r"));
        let start = Instant::now();
        for seq in [3, 4, 5] {
            unheard.park(room.clone(), seq, 0, answer(seq));
        }
        assert_eq!(seqs(unheard.heard(&room, 4)), [3, 4], "heard up to 4");
        assert!(unheard.overdue(start).is_empty(), "5 has not waited long yet");
        assert!(unheard.next_deadline().is_some_and(|at| at >= start + UNHEARD_LIMIT));
        assert_eq!(seqs(unheard.overdue(start + UNHEARD_LIMIT * 2)), [5], "never heard: let go");
        assert!(unheard.next_deadline().is_none() && unheard.rooms.is_empty());
    }
}
