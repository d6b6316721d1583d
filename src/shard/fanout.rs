//! A shard's fan-out: a publish into its own connections' outboxes, and a room's numbered messages
//! from the room's home to every shard with members.
//!
//! Owns: which local connections a target selects, the skipping of members whose resume holds
//! the message already (or is still in flight), and the one way to hand a publish or a delivery
//! on after the batch's directory commit. May touch: the shard's cache and output. Must not:
//! write into an outbox except through the shard's output, so a full one evicts.

use std::time::Instant;

use super::output::Held;
use super::resume::Floor;
use super::Shard;
use crate::directory::ShardId;
use crate::mailbox::{ConnId, Delivery, Outbox, Target};
use crate::protocol::{Frame, Room};

impl Shard {
    /// Delivers to the local connections that `target` selects. A room's unnumbered frames
    /// (presence, deletions) skip the members whose resume is in flight.
    pub(super) fn deliver_local(&mut self, target: &Target, frame: &Frame, accepted_at: Instant) {
        let counters = self.hub.metrics().shard(self.id);
        let out = &mut self.out;
        let mut send =
            |(conn, outbox): (ConnId, &Outbox)| out.send_to(conn, outbox, frame.clone(), counters);
        match target {
            Target::Room(room) => match self.resuming.get(room) {
                None => self.cache.room_outboxes(room).for_each(&mut send),
                Some(floors) => {
                    let live = |(conn, _): &(ConnId, &Outbox)| {
                        !matches!(floors.get(conn), Some(Floor::Pending))
                    };
                    self.cache.room_outboxes(room).filter(live).for_each(&mut send)
                }
            },
            Target::User(user) => self.cache.user_outboxes(user).for_each(&mut send),
            Target::Users(users) => {
                users.iter().flat_map(|u| self.cache.user_outboxes(u)).for_each(&mut send)
            }
            Target::All => self.cache.all_outboxes().for_each(&mut send),
        }
        counters.fanout_latency.record(accepted_at.elapsed());
    }

    /// At the room's home: a numbered message to its members here, then one delivery to every
    /// other shard with members (after the batch's directory commit, when one is pending).
    pub(super) fn fan_out_room(&mut self, room: &Room, seq: u64, frame: Frame) {
        let accepted_at = Instant::now();
        self.deliver_room_message(room, seq, &frame, accepted_at);
        let shards = self.hub.directory().shards_of(room).without(self.id);
        for shard in shards.iter() {
            let (room, frame) = (room.clone(), frame.clone());
            self.deliver_after_commit(
                shard,
                Delivery::RoomMessage { room, seq, frame, accepted_at },
            );
        }
    }

    /// A numbered room message for the members here. A member whose resume is in flight gets it
    /// in the replay; one whose replay went up to `seq` or beyond has it already.
    pub(super) fn deliver_room_message(
        &mut self,
        room: &Room,
        seq: u64,
        frame: &Frame,
        accepted_at: Instant,
    ) {
        let Some(floors) = self.resuming.get_mut(room) else {
            return self.deliver_local(&Target::Room(room.clone()), frame, accepted_at);
        };
        let counters = self.hub.metrics().shard(self.id);
        for (conn, outbox) in self.cache.room_outboxes(room) {
            match floors.get(&conn) {
                Some(Floor::Pending) => continue,
                Some(Floor::Upto(upto)) if seq <= *upto => continue,
                Some(Floor::Upto(_)) => drop(floors.remove(&conn)),
                None => {}
            }
            self.out.send_to(conn, outbox, frame.clone(), counters);
        }
        if floors.is_empty() {
            self.resuming.remove(room);
        }
        counters.fanout_latency.record(accepted_at.elapsed());
    }

    /// [`Shard::publish`] on this instance only.
    pub(super) fn publish_here(&mut self, target: Target, frame: Frame) {
        let accepted_at = Instant::now();
        self.deliver_local(&target, &frame, accepted_at);
        self.route_after_commit(target, frame, accepted_at);
    }

    /// Routes a publish to the other shards with recipients, after the batch's directory commit
    /// when one is pending.
    pub(super) fn route_after_commit(
        &mut self,
        target: Target,
        frame: Frame,
        accepted_at: Instant,
    ) {
        if self.out.holding() {
            self.out.hold(Held::Route { target, frame, accepted_at, from: self.id });
        } else {
            self.hub.router().route(target, frame, accepted_at, Some(self.id));
        }
    }

    /// Hands `delivery` to `shard` (this one included), after the batch's directory commit when
    /// one is pending, so it cannot overtake what the commit makes visible.
    pub(super) fn deliver_after_commit(&mut self, shard: ShardId, delivery: Delivery) {
        if self.out.holding() {
            self.out.hold(Held::Deliver { shard, delivery });
        } else if shard == self.id {
            self.on_delivery(delivery);
        } else {
            self.hub.router().deliver(shard, delivery);
        }
    }
}
