//! A shard's deliveries: which handler each [`Delivery`] from another owner goes to, and the
//! answers to cache queries.
//!
//! Owns: nothing; it is the shard's switchboard. Must not: hold state or do a handler's work.

use std::time::Instant;

use super::Shard;
use crate::mailbox::{Delivery, Query};

impl Shard {
    pub(super) fn on_delivery(&mut self, delivery: Delivery) {
        match delivery {
            Delivery::Publish { target, frame, accepted_at } => {
                self.deliver_local(&target, &frame, accepted_at)
            }
            Delivery::Reply { conn, frame } => {
                self.reply(conn, frame);
                self.answered(conn);
            }
            Delivery::Committed { conn, user, room, id, seq } => {
                self.on_committed(conn, user, room, id, seq)
            }
            Delivery::EveryoneCommitted { frame, acked, first } => {
                self.on_everyone_committed(frame, acked, first)
            }
            Delivery::RoomCommitted { room, seq } => self.on_room_committed(&room, seq),
            Delivery::Stored { conn, user, room, id, seq } => {
                self.on_stored(conn, &user, room, id, seq)
            }
            Delivery::Numbered { room, reply, seq } => self.on_numbered(room, reply, seq),
            Delivery::Registered(registered) => self.confirm_registration(registered),
            Delivery::Sequence(item) => self.sequence(*item),
            Delivery::Stamped { item, stamped } => self.on_stamped(*item, stamped),
            Delivery::Sequenced { room, seq, epoch, frame } => {
                self.on_sequenced(room, seq, epoch, frame)
            }
            Delivery::StreamReset { room } => self.on_stream_reset(&room),
            Delivery::RoomMessage { room, seq, frame, accepted_at } => {
                self.deliver_room_message(&room, seq, &frame, accepted_at)
            }
            Delivery::Subscribed { conn, id, room, since } => {
                self.on_subscription(conn, id, room, since)
            }
            Delivery::StreamRead { request, read } => self.on_stream_read(*request, read),
            Delivery::Refused { conn, user, room, id, why } => {
                self.on_refused(conn, &user, room, id, why.map(|why| *why))
            }
            Delivery::Notice(notice) => self.on_notice(*notice),
            Delivery::InForce(in_force) => self.on_in_force(&in_force),
            Delivery::StreamLoaded { room, stream } => self.on_stream_loaded(room, stream),
            Delivery::JoinDecided { conn, id, room, since, decision } => {
                self.on_join_decided(conn, id, (room, since), decision)
            }
            Delivery::Replay(request) => self.replay(*request),
            Delivery::ReplayLoaded { request, upto, stored } => {
                self.on_replay_loaded(*request, upto, stored)
            }
            Delivery::Replayed { conn, room, id, replay } => {
                self.on_replayed(conn, room, id, replay)
            }
            Delivery::PresenceChange { room, user, status, members } => {
                self.on_presence(room, user, status, members)
            }
            Delivery::Typing { room, user, typing } => self.on_typing(room, user, typing),
            Delivery::ReplyChecked { conn, id, chat, refused } => {
                self.on_reply_checked(conn, id, *chat, refused)
            }
            Delivery::Kick { user, room } => self.kick(&user, &room),
            Delivery::Query(query) => self.answer(query),
            Delivery::Quiesce(settled) => self.quiesce(settled),
            Delivery::Shutdown => self.shut_down(),
        }
    }

    /// Answers a query from the cache; a reply nobody waits for any more is dropped.
    fn answer(&self, query: Query) {
        let now = Instant::now();
        let away_after = self.hub.settings().away_after;
        let _ = match query {
            Query::OnlineUsers(reply) => reply.send(self.cache.online_users()).map_err(drop),
            Query::Presence(reply) => reply.send(self.cache.presence()).map_err(drop),
            Query::RoomUsers { room, reply } => {
                reply.send(self.cache.room_users(&room, now, away_after)).map_err(drop)
            }
            Query::UserStatus { user, reply } => {
                reply.send(self.cache.user_status(&user, now, away_after)).map_err(drop)
            }
            Query::UserConnections { user, reply } => {
                reply.send(self.cache.user_connections(&user, now)).map_err(drop)
            }
            Query::Queued(reply) => reply.send(self.cache.queued()).map_err(drop),
        };
    }
}
