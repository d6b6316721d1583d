//! How connections end, and the shard with them: a connection removed (closed by its client,
//! evicted, or its user closed), a user's connections taken out of a room, presence's `last_seen`
//! noted in the store, and the shutdown's two steps (stop taking chats and tell when every one is
//! acked; then ask every connection to close).
//!
//! Owns: nothing of its own; these are [`Shard`] methods over the shard's state. Must not: be
//! called from off the shard's thread.

use super::Shard;
use crate::broker::LocalChange;
use crate::close::{self, CloseReason};
use crate::mailbox::ConnId;
use crate::metrics;
use crate::protocol::{Room, UserId};
use crate::store::ops::Write;

impl Shard {
    /// Removes a connection; `close` tells its reader or session why when the shard is the one
    /// evicting it.
    pub(super) fn remove(&mut self, conn: ConnId, close: Option<&'static CloseReason>) {
        let Some((mut connection, left)) = self.cache.remove(conn) else {
            return;
        };
        metrics::incr(&self.counters().connections_closed);
        self.order.forget(conn);
        if !self.resuming.is_empty() {
            self.forget_resumes(conn);
        }
        if let Some(reason) = close {
            connection.ask_to_close(reason);
        }
        for left in left {
            self.after_leave(left, &connection.user);
        }
        if !self.cache.has_user(&connection.user) {
            self.limits.forget(&connection.user);
            self.note_presence(&connection.user, false);
            self.hub.presence().local_change(LocalChange::UserOffline(connection.user));
        }
    }

    /// Records in the store that `user` came online or went offline here (for `last_seen`).
    pub(super) fn note_presence(&self, user: &UserId, online: bool) {
        if let Some(store) = self.hub.store() {
            let connections = i64::from(online);
            let at = crate::protocol::millis(std::time::SystemTime::now());
            store.write_unawaited(Write::Presence {
                user: user.to_string(),
                online,
                connections,
                at,
            });
        }
    }

    /// Every connection of `user` is closed with `reason`.
    pub(super) fn close_user(&mut self, user: &UserId, reason: &'static CloseReason) {
        let conns: Vec<ConnId> = self.cache.user_outboxes(user).map(|(conn, _)| conn).collect();
        for conn in conns {
            self.remove(conn, Some(reason));
        }
    }

    /// Every connection of `user` leaves `room` (it is no longer a participant).
    pub(super) fn kick(&mut self, user: &UserId, room: &Room) {
        let conns: Vec<ConnId> = self.cache.user_outboxes(user).map(|(conn, _)| conn).collect();
        for conn in conns {
            if self.cache.is_member(conn, room) {
                self.leave(conn, room);
            }
        }
    }

    pub(super) fn quiesce(&mut self, settled: tokio::sync::oneshot::Sender<()>) {
        self.quiescing = true;
        self.settled = Some(settled);
    }

    /// Tells the shutdown once every chat taken is acked (called once the batch's acks are
    /// written).
    pub(super) fn tell_if_settled(&mut self) {
        if self.settled.is_some() && !self.order.chats_in_flight() {
            let _ = self.settled.take().map(|settled| settled.send(()));
        }
    }

    pub(super) fn shut_down(&mut self) {
        self.shutting_down = true;
        for conn in self.cache.conn_ids() {
            if let Some(connection) = self.cache.get_mut(conn) {
                connection.ask_to_close(&close::SHUTTING_DOWN);
            }
        }
    }
}
