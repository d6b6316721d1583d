//! A shard's outgoing side: frames into its connections' outboxes, and what is held until a commit.
//!
//! Owns: the held list, the list of connections found full, the lanes pushed to in this batch and
//! the last frame's wire encoding. May touch: the outboxes it is handed (`try_send` and lane pushes
//! only, never waiting). Must not: evict anyone itself; the shard evicts at batch end.
//!
//! The fast path: a frame for a lane is encoded once (a room's members get the same frame one after
//! the other, so a one-entry cache serves a whole fan-out), pushed, and the lane written once at
//! the end of the batch ([`Output::write_lanes`]). A frame that may wait (typing) is pushed
//! deferred: it goes with the lane's next frame that is due, or [`MAY_WAIT_FOR`] later
//! ([`Output::write_deferred`]).

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use tokio::sync::oneshot;

use crate::directory::ShardId;
use crate::lane::{self, Lane, Pushed};
use crate::mailbox::{ConnId, Delivery, Enrolment, Outbox, Target};
use crate::metrics::{self, ShardCounters};
use crate::protocol::{self, Frame};

/// The longest a frame that may wait (a typing event) waits for a frame that is due to go with.
pub const MAY_WAIT_FOR: Duration = Duration::from_millis(250);

/// Output produced while a directory commit is pending, released in order once it is done.
#[derive(Debug)]
pub enum Held {
    /// A frame for one local connection (looked up again on release: it may be gone by then).
    Local { conn: ConnId, frame: Frame },
    /// A publish to route to the other shards that have recipients.
    Route { target: Target, frame: Frame, accepted_at: Instant, from: ShardId },
    /// A registration to confirm, which lets the HTTP side answer `101`.
    Registered(oneshot::Sender<Enrolment>),
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
    /// Lanes with frames pushed in this batch, to write at its end.
    pushed: Vec<Arc<Lane>>,
    /// Lanes holding only frames that may wait, with when to write them at the latest (in that
    /// order: each waits as long).
    deferred: VecDeque<(Instant, Arc<Lane>)>,
    /// The last frame pushed to a lane: its encoding, how many messages that is, whether it may
    /// wait.
    encoded: Option<(Frame, Encoded)>,
}

#[derive(Debug, Clone)]
struct Encoded {
    wire: Bytes,
    messages: u64,
    may_wait: bool,
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

    /// `try_send` into the outbox, or a push into the lane; a full one marks the connection for
    /// eviction.
    pub fn push_now(
        &mut self,
        conn: ConnId,
        outbox: &Outbox,
        frame: Frame,
        counters: &ShardCounters,
    ) {
        let refused = match outbox {
            Outbox::Queue(queue) => match queue.try_send(frame) {
                Ok(()) => return,
                Err(flume::TrySendError::Full(_)) => Pushed::Full,
                Err(flume::TrySendError::Disconnected(_)) => Pushed::Closed,
            },
            Outbox::Lane(lane) => {
                let Encoded { wire, messages, may_wait } = self.encode(frame);
                let pushed = if may_wait { lane.push_deferred(wire) } else { lane.push(wire) };
                match pushed {
                    Pushed::First => self.pushed.push(Arc::clone(lane)),
                    Pushed::Deferred => {
                        self.deferred.push_back((Instant::now() + MAY_WAIT_FOR, Arc::clone(lane)))
                    }
                    _ => {}
                }
                if matches!(pushed, Pushed::First | Pushed::Queued | Pushed::Deferred) {
                    // Counted before the write, so no client holds a frame not counted yet.
                    counters.frames_out.fetch_add(messages, Ordering::Relaxed);
                    return;
                }
                pushed
            }
        };
        metrics::incr(&counters.messages_dropped);
        if refused == Pushed::Full {
            self.full.push(conn);
        }
    }

    /// `frame` on the wire; the same frame as the last one is not encoded again.
    fn encode(&mut self, frame: Frame) -> Encoded {
        if let Some((last, encoded)) = &self.encoded {
            // The cache holds `last`, so its buffer cannot be freed and reused by another frame.
            let same =
                last.as_str().as_ptr() == frame.as_str().as_ptr() && last.len() == frame.len();
            if same {
                return encoded.clone();
            }
        }
        let (wire, messages) = lane::encode(&frame);
        let encoded = Encoded { wire, messages, may_wait: protocol::may_wait(&frame) };
        self.encoded = Some((frame, encoded.clone()));
        encoded
    }

    /// Writes every lane pushed to in this batch, once each: its frames of the batch in one write.
    pub fn write_lanes(&mut self, counters: &ShardCounters) {
        for lane in self.pushed.drain(..) {
            if lane.flush() {
                metrics::incr(&counters.partial_writes);
            }
        }
        self.encoded = None;
    }

    /// Writes the lanes whose frames that may wait have waited long enough (those a due frame took
    /// along meanwhile have nothing left to write).
    pub fn write_deferred(&mut self, now: Instant, counters: &ShardCounters) {
        while self.deferred.front().is_some_and(|(until, _)| *until <= now) {
            let (_, lane) = self.deferred.pop_front().expect("checked above");
            if lane.flush_deferred() {
                metrics::incr(&counters.partial_writes);
            }
        }
    }

    /// When the next deferral ends.
    pub fn next_deferred(&self) -> Option<Instant> {
        self.deferred.front().map(|(until, _)| *until)
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
