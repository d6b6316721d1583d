//! A room's stream numbered by a sequencer that takes the work (Redis, in cluster mode), on the
//! room's home shard: the sequencer numbers the messages (a script in Redis, atomically with the
//! publish), the home fans out what comes back.
//!
//! Owns: per room homed here, the stream as this instance has heard it since it listens to the
//! room (epoch, last seq, the window of recent messages), and the answer to a resume from the
//! sequencer's read plus that window. Must not: number a message itself.
//!
//! Every instance hears a room's messages in seq order on one Redis channel, its own included, and
//! only from there fans them out, so its members get them in seq order. A hole in what the home
//! hears (Redis was away, or lost the stream: a new epoch) is told to the members, who resume.

use std::collections::hash_map::Entry;
use std::sync::Arc;

use super::resume::{after, not_recovered};
use super::stream::{Ready, RoomStream};
use super::Shard;
use crate::mailbox::{Replay, ReplayRequest, Stamp, StreamSlice, ToSequence, Unanswered};
use crate::metrics::UnavailableCause;
use crate::protocol::{self, Frame, Room, Unrecovered};

impl Shard {
    /// The broker numbered (or could not number) a message: store it, then tell its sender. A
    /// resend (`again`) has the seq its first send got and was not published again; it is stored
    /// all the same (a no-op when the first send was committed, the message itself when the
    /// instance that took it first died before its commit) and acked the same way.
    pub(super) fn on_stamped(&mut self, item: ToSequence, stamped: Result<Stamp, Unanswered>) {
        let Ok(Stamp { seq, epoch, .. }) = stamped else {
            return self.refuse_message(item, UnavailableCause::Unnumbered);
        };
        if self.hub.store().is_some() {
            let message = super::stream::stored_message(&item, seq, &epoch);
            self.hand_to_store(message, item.origin, seq);
        } else {
            let ToSequence { room, id, sender, origin, .. } = item;
            self.tell_stamped(origin, &room, id, &sender, seq);
        }
    }

    /// A numbered message of a room homed here, as the cluster delivers it: into the window, then to
    /// the members. A hole behind it is told to the members first.
    pub(super) fn on_sequenced(&mut self, room: Room, seq: u64, epoch: Arc<str>, frame: Frame) {
        let window = self.hub.settings().recovery_window;
        let hole = match self.streams.rooms.entry(room.clone()) {
            Entry::Occupied(mut heard) => match heard.get_mut() {
                RoomStream::Ready(ready) if ready.epoch == epoch && seq <= ready.last => return,
                RoomStream::Ready(ready) if ready.epoch == epoch && seq == ready.last + 1 => None,
                RoomStream::Ready(ready) if ready.epoch == epoch => {
                    *ready = Ready::heard_from(Arc::clone(&epoch), seq);
                    Some(Unrecovered::Interrupted)
                }
                stream => {
                    *stream = RoomStream::Ready(Ready::heard_from(Arc::clone(&epoch), seq));
                    Some(Unrecovered::EpochChanged)
                }
            },
            Entry::Vacant(vacant) => {
                vacant.insert(RoomStream::Ready(Ready::heard_from(Arc::clone(&epoch), seq)));
                None
            }
        };
        if let Some(RoomStream::Ready(ready)) = self.streams.rooms.get_mut(&room) {
            ready.record(seq, frame.clone(), window);
        }
        if let Some(reason) = hole {
            let notice = protocol::resumed_frame(None, &room, &not_recovered(reason, seq, &epoch));
            self.publish_here(crate::mailbox::Target::Room(room.clone()), notice);
        }
        self.fan_out_room(&room, seq, frame);
        // After the fan-out, so no answer about `seq` overtakes it. A new epoch: what waited for
        // the old stream will not be heard now.
        let upto = if hole == Some(Unrecovered::EpochChanged) { u64::MAX } else { seq };
        self.release_heard(&room, upto);
    }

    /// The instance listens to the room afresh: what was heard before has a hole behind it.
    pub(super) fn on_stream_reset(&mut self, room: &Room) {
        self.streams.rooms.remove(room);
        self.release_heard(room, u64::MAX);
    }

    /// The sequencer could not take a resume's read (Redis is away): see [`Self::without_redis`].
    pub(super) fn no_stream_read(&mut self, request: ReplayRequest) {
        let replay = self.without_redis(&request);
        self.send_replayed(request, replay);
    }

    /// A resume that Redis could not answer, answered from what this home heard itself:
    /// - it knows nothing of the room: `interrupted` at the client's own position, which the home
    ///   takes for the stream's, so the first message it hears once Redis is back is told as a
    ///   hole (`interrupted`: resume again, and Redis's replay fills it) unless it follows on;
    /// - it heard the stream back to the resume point: those messages, a recovery;
    /// - it heard the stream, not that far back: `no_history` at where the stream stands (the
    ///   client reloads from the store); another epoch: `epoch_changed`.
    fn without_redis(&mut self, request: &ReplayRequest) -> Replay {
        let since = &request.since;
        let heard = match self.streams.rooms.get(&request.room) {
            None => {
                let at = Ready::heard_from(Arc::from(since.epoch.as_str()), since.seq + 1);
                self.streams.rooms.insert(request.room.clone(), RoomStream::Ready(at));
                let interrupted = not_recovered(Unrecovered::Interrupted, since.seq, &since.epoch);
                return Replay::NotRecovered(interrupted);
            }
            Some(RoomStream::Ready(heard)) => heard,
            Some(RoomStream::Loading(_)) => {
                return Replay::NotRecovered(not_recovered(Unrecovered::NoHistory, 0, ""))
            }
        };
        let (epoch, last) = (&heard.epoch, heard.last);
        if **epoch != *since.epoch {
            return Replay::NotRecovered(not_recovered(Unrecovered::EpochChanged, last, epoch));
        }
        if since.seq >= last {
            // The client has all this home heard: what follows comes live, or after a notice.
            return Replay::Recovered { frames: Vec::new(), upto: since.seq };
        }
        let first_heard = heard.window.front().map_or(last + 1, |(seq, _)| *seq);
        if first_heard > since.seq + 1 {
            return Replay::NotRecovered(not_recovered(Unrecovered::NoHistory, last, epoch));
        }
        Replay::Recovered { frames: after(&heard.window, since.seq), upto: last }
    }

    /// The broker's read is back: the messages it keeps after the resume point, then those this
    /// home heard after the read's end.
    pub(super) fn on_stream_read(
        &mut self,
        mut request: ReplayRequest,
        read: Result<StreamSlice, Unanswered>,
    ) {
        let replay = match read.map(|slice| self.cluster_replay(&request, slice)) {
            Ok(Ok(replay)) => replay,
            Ok(Err((kept, upto))) => {
                request.kept = Some(Box::new(kept));
                return self.read_stored(request, upto);
            }
            Err(Unanswered::Store | Unanswered::Redis) => self.without_redis(&request),
        };
        self.send_replayed(request, replay);
    }

    /// The store's part is back (the messages up to where Redis's part starts): the answer is the
    /// two, then what the home heard beyond them.
    pub(super) fn on_cluster_replay_loaded(
        &mut self,
        request: ReplayRequest,
        kept: StreamSlice,
        upto: u64,
        stored: Result<Vec<(u64, Frame)>, Unanswered>,
    ) {
        let Ok(stored) = stored else {
            let (epoch, top) = kept.stream.unwrap_or_default();
            let replay = Replay::NotRecovered(not_recovered(Unrecovered::NoHistory, top, &epoch));
            return self.send_replayed(request, replay);
        };
        // Redis's part is checked as a resume from where the store's part ends.
        let mut rest = ReplayRequest { kept: None, ..request };
        rest.since.seq = upto;
        let replay = match self.cluster_replay(&rest, kept) {
            Ok(Replay::Recovered { frames, upto }) => {
                let mut all: Vec<Frame> = stored.into_iter().map(|(_, frame)| frame).collect();
                all.extend(frames);
                Replay::Recovered { frames: all, upto }
            }
            Ok(other) => other,
            Err((kept, _)) => {
                let (epoch, top) = kept.stream.unwrap_or_default();
                Replay::NotRecovered(not_recovered(Unrecovered::TooOld, top, &epoch))
            }
        };
        self.send_replayed(rest, replay);
    }

    /// The answer from Redis's part and what the home heard; `Err` (with Redis's part and the seq
    /// the store must cover up to) when Redis no longer keeps the start and the store may.
    fn cluster_replay(
        &self,
        request: &ReplayRequest,
        slice: StreamSlice,
    ) -> Result<Replay, (StreamSlice, u64)> {
        let since = &request.since;
        let Some((epoch, top)) = slice.stream.clone() else {
            return Ok(Replay::NotRecovered(not_recovered(Unrecovered::NoHistory, 0, "")));
        };
        if since.epoch != epoch {
            return Ok(Replay::NotRecovered(not_recovered(Unrecovered::EpochChanged, top, &epoch)));
        }
        if since.seq > top {
            return Ok(Replay::NotRecovered(not_recovered(Unrecovered::Behind, top, &epoch)));
        }
        let kept = slice.messages.first().map_or(top + 1, |(seq, _)| *seq);
        let whole = slice.messages.len() as u64 >= top + 1 - kept;
        if since.seq < top && (kept != since.seq + 1 || !whole) {
            let stored = self.hub.store().is_some() && whole && kept > since.seq + 1;
            if stored && kept - 1 - since.seq <= super::resume::MAX_STORED_REPLAY as u64 {
                return Err((slice, kept - 1));
            }
            return Ok(Replay::NotRecovered(not_recovered(Unrecovered::TooOld, top, &epoch)));
        }
        let mut frames: Vec<Frame> = slice.messages.into_iter().map(|(_, frame)| frame).collect();
        let mut upto = top;
        if let Some(RoomStream::Ready(heard)) = self.streams.rooms.get(&request.room) {
            if *heard.epoch == *epoch && heard.last > top {
                let first_heard = heard.window.front().map_or(heard.last + 1, |(seq, _)| *seq);
                if first_heard > top + 1 {
                    return Ok(Replay::NotRecovered(not_recovered(
                        Unrecovered::TooOld,
                        heard.last,
                        &epoch,
                    )));
                }
                frames.extend(after(&heard.window, top));
                upto = heard.last;
            }
        }
        Ok(Replay::Recovered { frames, upto })
    }
}
