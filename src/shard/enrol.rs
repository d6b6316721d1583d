//! A shard taking a new connection in: the refusals, the user coming online, the URL's rooms joined,
//! and the `101` held until publishers everywhere can reach the connection.
//!
//! Owns: the order of those steps and the per-user connection cap (a user's connections are all on
//! its shard, so the count is exact without a lock). May touch: the shard's cache and output, like the
//! rest of the shard. Must not: answer a registration before its rooms are committed.

use tokio::sync::oneshot;

use super::cache::Connection;
use super::output::Held;
use super::Shard;
use crate::broker::LocalChange;
use crate::mailbox::{Delivery, Enrolment, Registration};
use crate::metrics;

impl Shard {
    /// Takes a new connection in, or refuses it (shutting down, or its user at the cap).
    pub(super) fn register(
        &mut self,
        registration: Registration,
        registered: oneshot::Sender<Enrolment>,
    ) {
        let Registration { conn, user, rooms, since, outbox, closer, remote, permissions } =
            registration;
        if self.shutting_down {
            let _ = registered.send(Enrolment::ShuttingDown);
            return;
        }
        if let Some(banned) = self.ban_refusal(&user) {
            let _ = registered.send(banned);
            return;
        }
        let cap = self.hub.settings().max_conns_per_user;
        if cap > 0 && self.cache.connections_of(&user) >= cap {
            let _ = registered.send(Enrolment::UserFull);
            return;
        }
        if self.cache.has_user(&user) {
            self.connected_again(&user);
        } else {
            self.hub.presence().local_change(LocalChange::UserOnline(user.clone()));
            self.note_presence(&user, true);
        }
        let connection = Connection {
            remote: remote.into(),
            permissions,
            ..Connection::new(user, outbox, closer)
        };
        self.cache.insert(conn, connection);
        metrics::incr(&self.counters().connections_opened);
        let joins_rooms = !rooms.is_empty();
        for room in rooms {
            self.join(conn, room);
        }
        for (room, since) in since {
            self.join(conn, room.clone());
            self.when_subscribed(conn, None, room, Some(since));
        }
        if joins_rooms {
            // In cluster mode the `101` waits until this instance listens to the URL's rooms, so
            // a message published anywhere after it reaches the new member.
            let then = Delivery::Registered(registered);
            if let Some(Delivery::Registered(now)) =
                self.hub.broker().when_subscribed(self.id, then)
            {
                self.confirm_registration(now);
            }
        } else {
            self.confirm_registration(registered);
        }
    }

    /// Lets the HTTP side answer `101`, after the batch's directory commit when one is pending.
    pub(super) fn confirm_registration(&mut self, registered: oneshot::Sender<Enrolment>) {
        if self.out.holding() {
            self.out.hold(Held::Registered(registered));
        } else {
            let _ = registered.send(Enrolment::Accepted);
        }
    }
}
