//! Reconnect recovery: a member that comes back with the last seq it got, in which epoch, gets every
//! message after it, once each and in order, then the live ones; or an explicit "not recovered".
//!
//! Owns: on the member's shard, the connections whose resume is in flight; on the room's home shard,
//! the answer from its window of recent messages (and, with a store, from the store beyond it).
//! Must not: answer from anywhere but the home shard's thread: the answer and the live messages
//! after it travel the same ordered way from the home to the member's shard, which is what makes
//! the seam between replay and live exact.
//!
//! The member joins first (so the directory routes the room's live messages to its shard), then asks
//! the home. Until the answer arrives, live room messages for that connection are dropped: each was
//! sent by the home before its answer, so its seq is at most the answer's last, and the answer holds
//! it. Then the ack (`recovered`), the replayed messages, and live ones as they come.

use std::collections::HashMap;

use super::stream::{Queued, RoomStream};
use super::Shard;
use crate::broker::Numbering;
use crate::mailbox::{ConnId, Delivery, Replay, ReplayRequest, Unanswered};
use crate::protocol::{self, Frame, Resumed, Room, Since, Unrecovered};
use crate::store::ops::{Answer, Read, Write};
use crate::store::Store;

/// The most messages a resume reads from the store beyond the in-memory window.
pub(super) const MAX_STORED_REPLAY: i64 = 1_000;

/// Where a resuming member stands in a room's stream on its shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Floor {
    /// The resume is in flight: live room messages are dropped (the answer will hold them).
    Pending,
    /// The replay went up to this seq: live messages up to it are skipped (they reach the shard
    /// after the answer when the home sent them before it on another way, or they came through the
    /// cluster behind the broker's read).
    Upto(u64),
}

/// Per room, the members of this shard whose resume is in flight or has just been answered.
pub type Resuming = HashMap<Room, HashMap<ConnId, Floor>>;

impl Shard {
    /// A member joined `room` to resume after `since`: asks the room's home, once publishers can
    /// find this shard (after the batch's directory commit).
    pub(super) fn resume(&mut self, conn: ConnId, id: Option<String>, room: Room, since: Since) {
        self.resuming.entry(room.clone()).or_default().insert(conn, Floor::Pending);
        self.order.awaits_answer(conn);
        let kept = None;
        let request = ReplayRequest { room: room.clone(), since, shard: self.id, conn, id, kept };
        let home = self.hub.router().home_of(&room);
        self.deliver_after_commit(home, Delivery::Replay(Box::new(request)));
    }

    /// At the room's home: the messages after the resume point, from the window (or the store), or
    /// from the sequencer's read (`relayed.rs` takes its answer).
    pub(super) fn replay(&mut self, request: ReplayRequest) {
        match self.hub.sequencer().read_stream(request, self.id) {
            Numbering::Here(request) => self.stream_ready(Queued::Resume(request)),
            Numbering::Taken => {}
            Numbering::Refused(request) => self.no_stream_read(request),
        }
    }

    pub(super) fn answer_replay(&mut self, request: ReplayRequest) {
        let Some(RoomStream::Ready(ready)) = self.streams.rooms.get(&request.room) else { return };
        let (since, last) = (&request.since, ready.last);
        let first_kept = ready.window.front().map_or(last + 1, |(seq, _)| *seq);
        let replay = if since.epoch != *ready.epoch {
            let resumed = not_recovered(Unrecovered::EpochChanged, last, &ready.epoch);
            Replay::NotRecovered(resumed)
        } else if since.seq > last {
            Replay::NotRecovered(not_recovered(Unrecovered::Behind, last, &ready.epoch))
        } else if since.seq + 1 >= first_kept {
            Replay::Recovered { frames: after(&ready.window, since.seq), upto: last }
        } else if self.hub.store().is_some()
            && first_kept - 1 - since.seq <= MAX_STORED_REPLAY as u64
        {
            if let Some(RoomStream::Ready(ready)) = self.streams.rooms.get_mut(&request.room) {
                ready.pin(first_kept);
            }
            return self.read_stored(request, first_kept - 1);
        } else {
            Replay::NotRecovered(not_recovered(Unrecovered::TooOld, last, &ready.epoch))
        };
        self.send_replayed(request, replay);
    }

    /// Reads the messages after the resume point up to `upto` from the store, off the shard; the
    /// answer is made here once they are back. In cluster mode a room's messages go out before the
    /// writer commits them, so one that has left the window may not be in the store yet: the read
    /// waits for every write this instance handed over so far (a barrier queued behind them).
    pub(super) fn read_stored(&self, request: ReplayRequest, upto: u64) {
        let (hub, shard) = (self.hub.clone(), self.id);
        let committed = hub.store().map(|store| store.write_awaitable(Write::Barrier));
        tokio::spawn(async move {
            let stored = async {
                let store = hub.store().ok_or(Unanswered::Store)?;
                let unavailable = |_| Unanswered::Store;
                committed
                    .ok_or(Unanswered::Store)?
                    .map_err(unavailable)?
                    .await
                    .map_err(unavailable)?;
                read_after(store, &request, upto).await
            }
            .await;
            hub.router().deliver(
                shard,
                Delivery::ReplayLoaded { request: Box::new(request), upto, stored },
            );
        });
    }

    /// The store's part is back: with the window as it is now, the answer is whole, unless the
    /// window moved past what was read meanwhile.
    pub(super) fn on_replay_loaded(
        &mut self,
        mut request: ReplayRequest,
        upto: u64,
        stored: Result<Vec<(u64, Frame)>, Unanswered>,
    ) {
        if let Some(kept) = request.kept.take() {
            return self.on_cluster_replay_loaded(request, *kept, upto, stored);
        }
        let Some(RoomStream::Ready(ready)) = self.streams.rooms.get_mut(&request.room) else {
            return;
        };
        ready.unpin(upto + 1);
        let first_kept = ready.window.front().map_or(ready.last + 1, |(seq, _)| *seq);
        let (last, epoch) = (ready.last, ready.epoch.to_string());
        let replay = match stored {
            // Deleted messages leave gaps in what the store gives; the window must go on from
            // where the read stopped.
            Ok(stored) if first_kept <= upto + 1 => {
                let mut frames: Vec<Frame> = stored.into_iter().map(|(_, frame)| frame).collect();
                frames.extend(after(&ready.window, upto));
                Replay::Recovered { frames, upto: last }
            }
            Ok(_) => Replay::NotRecovered(not_recovered(Unrecovered::TooOld, last, &epoch)),
            Err(_) => Replay::NotRecovered(not_recovered(Unrecovered::NoHistory, last, &epoch)),
        };
        self.send_replayed(request, replay);
    }

    /// A resume that cannot be answered from the stream (it could not be read).
    pub(super) fn unrecoverable(
        &mut self,
        request: ReplayRequest,
        reason: Unrecovered,
        seq: u64,
        epoch: &str,
    ) {
        self.send_replayed(request, Replay::NotRecovered(not_recovered(reason, seq, epoch)));
    }

    pub(super) fn send_replayed(&mut self, request: ReplayRequest, replay: Replay) {
        let ReplayRequest { room, shard, conn, id, .. } = request;
        if shard == self.id {
            self.on_replayed(conn, room, id, replay);
        } else {
            self.hub.router().deliver(shard, Delivery::Replayed { conn, room, id, replay });
        }
    }

    /// At the member's shard: the join's answer, then the replayed messages; live ones follow.
    /// The connection's held requests go on after it.
    pub(super) fn on_replayed(
        &mut self,
        conn: ConnId,
        room: Room,
        id: Option<String>,
        replay: Replay,
    ) {
        self.tell_replayed(conn, room, id, replay);
        self.answered(conn);
    }

    fn tell_replayed(&mut self, conn: ConnId, room: Room, id: Option<String>, replay: Replay) {
        let floors = self.resuming.get_mut(&room);
        let Some(floors) = floors.filter(|floors| floors.get(&conn) == Some(&Floor::Pending))
        else {
            return;
        };
        floors.remove(&conn);
        if self.cache.get(conn).is_none() {
            return self.forget_resumes(conn);
        }
        let id = id.as_deref();
        match replay {
            Replay::Recovered { frames, upto } => {
                floors.insert(conn, Floor::Upto(upto));
                self.reply(conn, protocol::resumed_frame(id, &room, &Resumed::Recovered));
                // One outbox item, however many: a replay may be larger than the send buffer.
                if !frames.is_empty() {
                    self.reply(conn, protocol::bundle(&frames));
                }
            }
            Replay::NotRecovered(resumed) => {
                self.reply(conn, protocol::resumed_frame(id, &room, &resumed))
            }
        }
    }
}

impl Shard {
    /// `conn` is gone, or left `room` (`Some`): its resumes there are forgotten.
    pub(super) fn forget_resumes_in(&mut self, conn: ConnId, room: Option<&Room>) {
        self.resuming.retain(|resumed, floors| {
            if room.is_none_or(|room| room == resumed) {
                floors.remove(&conn);
            }
            !floors.is_empty()
        });
    }

    pub(super) fn forget_resumes(&mut self, conn: ConnId) {
        self.forget_resumes_in(conn, None);
    }
}

pub(super) fn not_recovered(reason: Unrecovered, seq: u64, epoch: &str) -> Resumed {
    Resumed::NotRecovered { reason, seq, epoch: epoch.to_owned() }
}

/// The window's frames after `seq`, in order.
pub(super) fn after(window: &std::collections::VecDeque<(u64, Frame)>, seq: u64) -> Vec<Frame> {
    window.iter().filter(|(s, _)| *s > seq).map(|(_, frame)| frame.clone()).collect()
}

/// The stored messages and room events of the request's room after its resume point, up to
/// `upto`, with their seqs.
async fn read_after(
    store: &Store,
    request: &ReplayRequest,
    upto: u64,
) -> Result<Vec<(u64, Frame)>, Unanswered> {
    let (room, after) = (request.room.to_string(), request.since.seq as i64);
    let limit = (upto as i64 - after).clamp(1, MAX_STORED_REPLAY);
    let read = Read::Stream { room, after, limit };
    let Ok(Answer::Messages(messages)) = store.read(read).await else {
        return Err(Unanswered::Store);
    };
    let numbered = messages
        .iter()
        .filter_map(|m| Some((m.stream.as_ref()?.0 as u64, crate::messages::stored_frame(m)?)));
    Ok(numbered.filter(|(seq, _)| *seq <= upto).collect())
}
