//! A shard's outgoing side: frames into its connections' outboxes, and what is held until a commit.
//!
//! Owns: the held list and the list of connections found full. May touch: the outboxes it is handed
//! (`try_send` only, never waiting). Must not: evict anyone itself; the shard evicts at batch end.

use std::time::Instant;

use tokio::sync::oneshot;

use crate::directory::ShardId;
use crate::mailbox::{ConnId, Delivery, Outbox, Target};
use crate::metrics::{self, ShardCounters};
use crate::protocol::Frame;

/// Output produced while a directory commit is pending, released in order once it is done.
#[derive(Debug)]
pub enum Held {
    /// A frame for one local connection (looked up again on release: it may be gone by then).
    Local { conn: ConnId, frame: Frame },
    /// A publish to route to the other shards that have recipients.
    Route { target: Target, frame: Frame, accepted_at: Instant, from: ShardId },
    /// A registration to confirm, which lets the HTTP side answer `101`.
    Registered(oneshot::Sender<bool>),
    /// A delivery to a shard (this one included): a resume's request, which must find this one in
    /// the directory, or a room message's fan-out and its ack, which must not overtake the rest.
    Deliver { shard: ShardId, delivery: Delivery },
    /// An HTTP publish's seq, answered once the message's fan-out is out.
    Numbered { reply: oneshot::Sender<Option<u64>>, seq: u64 },
}

#[derive(Debug, Default)]
pub struct Output {
    holding: bool,
    held: Vec<Held>,
    /// Connections whose outbox was full: evicted as slow consumers at the end of the batch.
    full: Vec<ConnId>,
}

impl Output {
    pub fn holding(&self) -> bool {
        self.holding
    }

    pub fn start_holding(&mut self) {
        self.holding = true;
    }

    pub fn hold(&mut self, held: Held) {
        debug_assert!(self.holding, "output is held only while a commit is pending");
        self.held.push(held);
    }

    /// Queues `frame` for a local connection, or holds it while a commit is pending.
    pub fn send_to(
        &mut self,
        conn: ConnId,
        outbox: &Outbox,
        frame: Frame,
        counters: &ShardCounters,
    ) {
        if self.holding {
            self.held.push(Held::Local { conn, frame });
        } else {
            self.push_now(conn, outbox, frame, counters);
        }
    }

    /// `try_send` into the outbox; a full one marks the connection for eviction.
    pub fn push_now(
        &mut self,
        conn: ConnId,
        outbox: &Outbox,
        frame: Frame,
        counters: &ShardCounters,
    ) {
        match outbox.try_send(frame) {
            Ok(()) => {}
            Err(flume::TrySendError::Full(_)) => {
                metrics::incr(&counters.messages_dropped);
                self.full.push(conn);
            }
            Err(flume::TrySendError::Disconnected(_)) => metrics::incr(&counters.messages_dropped),
        }
    }

    /// Ends holding and hands back what was held, in the order it was produced.
    pub fn release(&mut self) -> Vec<Held> {
        self.holding = false;
        std::mem::take(&mut self.held)
    }

    pub fn take_full(&mut self) -> Vec<ConnId> {
        let mut full = std::mem::take(&mut self.full);
        full.sort_unstable();
        full.dedup();
        full
    }
}
