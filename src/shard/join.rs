//! A shard's joins: the permission, the store's word on the room (offloaded), the subscription
//! the cluster confirms, then the ack, or the resume.
//!
//! Owns: the order of a join's steps for one connection (each step it waits for holds the
//! connection's later requests, [`super::order`]). May touch: the shard's cache and output, like
//! the rest of the shard. Must not: ack a join before publishers can reach the member.

use super::offload::resume_refusal;
use super::requests::ack;
use super::Shard;
use crate::mailbox::{ConnId, Delivery};
use crate::protocol::{self, ErrorCode, Frame, Room, Since};
use crate::rooms::Access;

impl Shard {
    /// A join, resuming after `since` when given (its ack then comes with the replay).
    pub(super) fn request_join(
        &mut self,
        conn: ConnId,
        id: Option<&str>,
        room: Room,
        since: Option<Since>,
    ) -> Option<Frame> {
        let connection = self.cache.get(conn)?;
        let permissions = &connection.permissions;
        let (may_join, admin) = (permissions.may_join(&room), permissions.admin);
        if !may_join {
            let (user, remote) = self.who(conn)?;
            tracing::warn!(target: "audit", event = "forbidden_join", %user, %remote, %room);
            if since.is_some() {
                return Some(resume_refusal(id, &room, Access::Forbidden(String::new())));
            }
            let message = format!("not allowed to join room {room}");
            return Some(protocol::error_frame(id, ErrorCode::Forbidden, &message));
        }
        if self.hub.store().is_some() && !self.cache.is_member(conn, &room) {
            let user = connection.user.clone();
            self.order.awaits_answer(conn);
            self.offload_join(conn, id.map(str::to_owned), (room, since), user, admin);
            return None;
        }
        self.joined(conn, id.map(str::to_owned), room, since)
    }

    /// Joins, then acks, or, resuming, asks the room's home for what was missed, once the
    /// instance listens to the room (at once standalone).
    pub(super) fn joined(
        &mut self,
        conn: ConnId,
        id: Option<String>,
        room: Room,
        since: Option<Since>,
    ) -> Option<Frame> {
        self.join(conn, room.clone());
        self.when_subscribed(conn, id, room, since);
        None
    }

    /// Runs [`Shard::on_subscribed`] once the broker says every later message of the room
    /// reaches this instance.
    pub(super) fn when_subscribed(
        &mut self,
        conn: ConnId,
        id: Option<String>,
        room: Room,
        since: Option<Since>,
    ) {
        if since.is_some() {
            // Live messages from now on come again in the replay.
            self.resuming
                .entry(room.clone())
                .or_default()
                .insert(conn, super::resume::Floor::Pending);
        }
        let then = Delivery::Subscribed { conn, id, room, since };
        match self.hub.broker().when_subscribed(self.id, then) {
            Some(Delivery::Subscribed { conn, id, room, since }) => {
                self.on_subscribed(conn, id, room, since)
            }
            _ => self.order.awaits_answer(conn),
        }
    }

    /// The subscription a join waited for is confirmed.
    pub(super) fn on_subscription(
        &mut self,
        conn: ConnId,
        id: Option<String>,
        room: Room,
        since: Option<Since>,
    ) {
        self.order.answered(conn);
        self.on_subscribed(conn, id, room, since);
    }

    /// The join is in effect everywhere: ack it, or resume.
    pub(super) fn on_subscribed(
        &mut self,
        conn: ConnId,
        id: Option<String>,
        room: Room,
        since: Option<Since>,
    ) {
        if !self.cache.is_member(conn, &room) {
            return self.take_held(conn);
        }
        match since {
            Some(since) => self.resume(conn, id, room, since),
            None => {
                if let Some(ack) = ack(id.as_deref()) {
                    self.reply(conn, ack);
                }
                self.take_held(conn);
            }
        }
    }

    /// The store's answer to a join: join and ack, or the error.
    pub(super) fn on_join_decided(
        &mut self,
        conn: ConnId,
        id: Option<String>,
        (room, since): (Room, Option<Since>),
        decision: Result<(), Frame>,
    ) {
        match decision {
            Ok(()) if self.cache.get(conn).is_some() => {
                // The join goes on (a subscription, a resume may still be waited for).
                self.order.answered(conn);
                if let Some(ack) = self.joined(conn, id, room, since) {
                    self.reply(conn, ack);
                }
            }
            Ok(()) => {}
            Err(refusal) => {
                self.reply(conn, refusal);
                self.answered(conn);
            }
        }
    }
}
