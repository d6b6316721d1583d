//! The relay while Redis is away: it keeps draining its inputs so nothing grows or blocks. Local
//! changes update the mirror and are announced here, outgoing messages are dropped and counted,
//! what waited on Redis is answered "unavailable", questions go unanswered.
//!
//! Owns: nothing of its own; these are [`Relay`] methods. Must not: talk to Redis.

use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use super::{Exchange, Ordered, Outgoing, Relay, Stop};
use crate::broker::LocalChange;
use crate::cluster::mirror::Mirrored;
use crate::mailbox::{Delivery, Unanswered};

impl Relay {
    /// A local change while Redis is away: the mirror follows, the change is announced here.
    pub(super) fn apply_offline(&mut self, change: LocalChange) {
        match self.mirror.apply(change) {
            Mirrored::Room(membership, room, user) => {
                self.tell_home(membership.into(), &room, &user, None)
            }
            Mirrored::Activity { user, status, rooms } => {
                for room in rooms {
                    self.tell_home(status, &room, &user, None);
                }
            }
            Mirrored::User(..) => {}
        }
    }

    /// Waits `pause` without Redis, still draining the inputs so nothing grows or blocks.
    pub(super) async fn offline_for(&mut self, pause: Duration) -> Exchange<()> {
        let deadline = tokio::time::Instant::now() + pause;
        loop {
            tokio::select! {
                () = tokio::time::sleep_until(deadline) => return Ok(()),
                change = self.inputs.changes.recv() => {
                    match change.ok_or(Stop::Finished)? {
                        Ordered::Change(change) => self.apply_offline(change),
                        Ordered::Notify { shard, then } => self.router.deliver(shard, then),
                        Ordered::Notice(notice) => {
                            tracing::warn!(?notice, "redis unavailable: a moderation action reaches this instance only");
                        }
                        Ordered::Read { request, home } => {
                            self.router.deliver(home, Delivery::StreamRead { request, read: Err(Unanswered::Redis) })
                        }
                        // Redis is away: there is no cluster presence to keep or hand over.
                        Ordered::HoldChanges => {}
                        Ordered::HandOver { done, .. } => drop(done.send(())),
                    }
                }
                outgoing = self.inputs.outgoing.recv_async() => {
                    if let Outgoing::Stamp { item, home } = outgoing.map_err(|_| Stop::Finished)? {
                        self.router.deliver(home, Delivery::Stamped { item, stamped: Err(Unanswered::Redis) });
                    }
                    self.counters.dropped.fetch_add(1, Relaxed);
                }
                Ok(question) = self.inputs.questions.recv_async() => drop(question),
            }
        }
    }
}
