//! A room's stream: the home shard of a room alone numbers its messages, so every member receives
//! them in `seq` order, with no gap.
//!
//! Owns: per room homed on this shard, the stream's `epoch` (its name: it changes when the stream
//! starts again without its history) and its last `seq`; and the room messages waiting while the
//! stream is read from the store. The home of a room is found by hashing its name, as a user's
//! shard is found from its id. Must not: number a room it is not the home of.
//!
//! A room message reaches its home (a hop when the sender's shard is another), which stamps it and
//! encodes it once with its seq. With a store, it hands the message to the writer and holds the
//! frame until the writer says it is committed; without one, it goes on at once. Then the home
//! publishes it: to its own members, then one delivery to every other shard with members.
//! Deliveries between two shards keep their order, so the seq order holds at every member. The
//! sender's shard acks (with the seq) after that fan-out.
//!
//! Nobody sees a message before it is committed: a crash between the numbering and the commit
//! loses a message nobody saw, and its seq is given again after the restart without a client
//! mistaking the new message for one it had (`since` never names a seq the store lacks).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::oneshot;

use super::output::Held;
use super::sent::SentBefore;
use super::Shard;
use crate::broker::Numbering;
use crate::mailbox::{Delivery, LoadedStream, Origin, ReplayRequest, ToSequence, Unanswered};
use crate::metrics::UnavailableCause;
use crate::protocol::{self, millis, time_of, Annotations, Frame, Published, Room, Unrecovered};
use crate::store::ops::{Answer, Read, Write};
use crate::store::{Completion, NewMessage};

/// Where a room's stream stands on its home shard.
#[derive(Debug)]
pub(super) enum RoomStream {
    /// Read from the store; the messages and resumes that came meanwhile wait, in order.
    Loading(Vec<Queued>),
    Ready(Ready),
}

/// A stream that is numbering.
#[derive(Debug)]
pub(super) struct Ready {
    pub epoch: Arc<str>,
    /// The last seq published (fanned out): what a resume may have seen.
    pub last: u64,
    /// The last seq given: `last`, or beyond it while the store commits `uncommitted`.
    numbered: u64,
    /// Numbered and handed to the store, not committed yet: held, in seq order.
    uncommitted: VecDeque<(u64, Frame)>,
    /// The last `--recovery-window` messages (seq, frame), for resumes.
    pub window: VecDeque<(u64, Frame)>,
    /// Resumes reading the store for the part before the window: the first seq each needs the
    /// window to keep until its read is back (so the window cannot slide past what it read).
    pins: Vec<u64>,
    /// The ids its senders used before this start, within `--dedup-window` (with a store).
    pub sent_before: SentBefore,
}

/// The most messages a window keeps beyond `--recovery-window` for the reads pinning it; past it
/// the window slides anyway and such a resume is answered `too_old`.
const MAX_PINNED: usize = 10_000;

impl Ready {
    fn new(epoch: Arc<str>, last: u64) -> Self {
        let sent_before = SentBefore::default();
        let (window, uncommitted) = (VecDeque::new(), VecDeque::new());
        Self { epoch, last, numbered: last, uncommitted, window, pins: Vec::new(), sent_before }
    }

    /// The held messages committed up to `seq`, to publish now, in order.
    fn committed(&mut self, seq: u64) -> Vec<(u64, Frame)> {
        let held = self.uncommitted.iter().take_while(|(numbered, _)| *numbered <= seq).count();
        self.uncommitted.drain(..held).collect()
    }

    /// `seq` is the stream's last now; its frame is kept among the last `window` (and whatever a
    /// read of the store in flight still needs).
    pub fn record(&mut self, seq: u64, frame: Frame, window: usize) {
        self.last = seq;
        self.numbered = self.numbered.max(seq);
        self.window.push_back((seq, frame));
        let pinned = self.pins.iter().min().copied().unwrap_or(u64::MAX);
        while self.window.len() > window {
            let needed = self.window.front().is_some_and(|(first, _)| *first >= pinned);
            if needed && self.window.len() <= window + MAX_PINNED {
                break;
            }
            self.window.pop_front();
        }
    }

    /// A read of the store is under way for the messages before `seq`: keep `seq` on.
    pub fn pin(&mut self, seq: u64) {
        self.pins.push(seq);
    }

    /// That read is back.
    pub fn unpin(&mut self, seq: u64) {
        if let Some(at) = self.pins.iter().position(|pinned| *pinned == seq) {
            self.pins.swap_remove(at);
        }
    }

    /// A stream first heard at `seq` (cluster mode): nothing before it is known here.
    pub fn heard_from(epoch: Arc<str>, seq: u64) -> Self {
        Self::new(epoch, seq.saturating_sub(1))
    }
}

/// A numbered room message as the store keeps it.
pub(super) fn stored_message(item: &ToSequence, seq: u64, epoch: &Arc<str>) -> NewMessage {
    NewMessage {
        id: item.id.clone(),
        room: Some(item.room.clone()),
        sender: item.sender.clone(),
        kind: item.kind.as_str(),
        data: item.data.get().into(),
        created_at: item.at,
        metadata: None,
        stream: Some((seq as i64, Arc::clone(epoch))),
        target: item.kind.is_room_event().then(|| event_target(&item.data)).flatten(),
    }
}

/// The message a room event changes: its data's `id`.
fn event_target(data: &serde_json::value::RawValue) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Target {
        id: String,
    }
    serde_json::from_str::<Target>(data.get()).ok().map(|target| target.id)
}

/// What waits for a stream being read from the store.
#[derive(Debug)]
pub(super) enum Queued {
    Message(ToSequence),
    Resume(ReplayRequest),
}

impl Queued {
    fn room(&self) -> &Room {
        match self {
            Self::Message(item) => &item.room,
            Self::Resume(request) => &request.room,
        }
    }
}

/// The streams of the rooms homed on one shard.
#[derive(Debug, Default)]
pub struct Streams {
    pub(super) rooms: HashMap<Room, RoomStream>,
}

/// A new stream's name: it starts again from seq 1.
fn new_epoch() -> Arc<str> {
    Arc::from(protocol::new_short_name())
}

impl Shard {
    /// Hands a room message to its room's home shard (this one, or another).
    pub(super) fn send_home(&mut self, item: ToSequence) {
        let home = self.hub.router().home_of(&item.room);
        if home == self.id {
            self.sequence(item);
        } else {
            self.hub.router().deliver(home, Delivery::Sequence(Box::new(item)));
        }
    }

    /// A room message homed here, handed to the sequencer: numbered here (now, or once the room's
    /// stream is read from the store), or by the sequencer (`relayed.rs` takes its answer).
    pub(super) fn sequence(&mut self, item: ToSequence) {
        let Ok(item) = self.enforce(item) else { return };
        match self.hub.sequencer().stamp(item, self.id) {
            Numbering::Here(item) => self.stream_ready(Queued::Message(item)),
            Numbering::Taken => {}
            Numbering::Refused(item) => self.refuse_message(item, UnavailableCause::Unnumbered),
        }
    }

    /// Runs `waiting` on its room's stream now if it is ready (creating it when there is no
    /// store), or queues it while the stream is read from the store.
    pub(super) fn stream_ready(&mut self, waiting: Queued) {
        let room = waiting.room().clone();
        match self.streams.rooms.get_mut(&room) {
            Some(RoomStream::Ready(_)) => {}
            Some(RoomStream::Loading(queue)) => return queue.push(waiting),
            None if self.hub.store().is_some() => {
                self.streams.rooms.insert(room.clone(), RoomStream::Loading(vec![waiting]));
                return self.load_stream(room);
            }
            None => {
                self.streams.rooms.insert(room, RoomStream::Ready(Ready::new(new_epoch(), 0)));
            }
        }
        self.run_waiting(waiting);
    }

    fn run_waiting(&mut self, waiting: Queued) {
        match waiting {
            Queued::Message(item) => self.stamp(item),
            Queued::Resume(request) => self.answer_replay(request),
        }
    }

    /// Reads where the room's stream stands in the store, off the shard.
    fn load_stream(&self, room: Room) {
        let (hub, shard) = (self.hub.clone(), self.id);
        tokio::spawn(async move {
            let Some(store) = hub.store() else { return };
            let window = hub.settings().dedup_window;
            let sent_since = millis(std::time::SystemTime::now() - window);
            let read = Read::StreamHead { room: room.to_string(), sent_since };
            let stream = match store.read(read).await {
                Ok(Answer::StreamHead { newest, sent }) => Ok(LoadedStream { newest, sent }),
                _ => Err(Unanswered::Store),
            };
            hub.router().deliver(shard, Delivery::StreamLoaded { room, stream });
        });
    }

    /// The stream is read: the waiting messages are stamped in order (or refused when the store
    /// could not be read; the next message tries again).
    pub(super) fn on_stream_loaded(
        &mut self,
        room: Room,
        stream: Result<LoadedStream, Unanswered>,
    ) {
        let Some(RoomStream::Loading(waiting)) = self.streams.rooms.remove(&room) else { return };
        let Ok(LoadedStream { newest, sent }) = stream else {
            waiting.into_iter().for_each(|waiting| self.refuse(waiting));
            return;
        };
        let mut ready = match newest {
            Some((epoch, last)) => Ready::new(Arc::from(epoch), last as u64),
            None => Ready::new(new_epoch(), 0),
        };
        let until = Instant::now() + self.hub.settings().dedup_window;
        ready.sent_before = SentBefore::new(sent, until);
        self.streams.rooms.insert(room, RoomStream::Ready(ready));
        waiting.into_iter().for_each(|waiting| self.run_waiting(waiting));
    }

    /// Numbers the message and encodes it once; publishes it now without a store, or hands it to
    /// the store and holds it until its commit ([`Self::on_room_committed`]). A resend of one
    /// stored before this start is acked with its seq instead, and goes nowhere.
    fn stamp(&mut self, item: ToSequence) {
        let Some(RoomStream::Ready(ready)) = self.streams.rooms.get_mut(&item.room) else {
            unreachable!("stamped only once the stream is ready")
        };
        if let Some(seq) = ready.sent_before.seq_of(&item, Instant::now()) {
            let ToSequence { room, id, sender, origin, .. } = item;
            return self.tell_stamped(origin, &room, id, &sender, seq);
        }
        let (seq, epoch) = (ready.numbered + 1, Arc::clone(&ready.epoch));
        let frame = protocol::room_message_frame(Published {
            kind: item.kind,
            id: &item.id,
            room: Some(&item.room),
            from: &item.sender,
            data: &item.data,
            at: time_of(item.at),
            stream: Some((seq, &epoch)),
            annotations: Annotations::default(),
        });
        let Some(message) = self.hub.store().map(|_| stored_message(&item, seq, &epoch)) else {
            let ToSequence { room, id, sender, origin, .. } = item;
            self.publish_numbered(&room, seq, frame);
            return self.tell_stamped(origin, &room, id, &sender, seq);
        };
        let room = item.room.clone();
        if !self.hand_to_store(message, item.origin, seq) {
            return;
        }
        if let Some(RoomStream::Ready(ready)) = self.streams.rooms.get_mut(&room) {
            ready.numbered = seq;
            ready.uncommitted.push_back((seq, frame));
        }
    }

    /// Into the window, then to the members.
    fn publish_numbered(&mut self, room: &Room, seq: u64, frame: Frame) {
        let window = self.hub.settings().recovery_window;
        if let Some(RoomStream::Ready(ready)) = self.streams.rooms.get_mut(room) {
            ready.record(seq, frame.clone(), window);
        }
        self.fan_out_room(room, seq, frame);
    }

    /// The writer committed `room`'s messages up to `seq`: the ones held for it are published, in
    /// order. (Nothing is held in cluster mode, where the sequencer publishes.)
    pub(super) fn on_room_committed(&mut self, room: &Room, seq: u64) {
        let Some(RoomStream::Ready(ready)) = self.streams.rooms.get_mut(room) else { return };
        for (seq, frame) in ready.committed(seq) {
            self.publish_numbered(room, seq, frame);
        }
    }

    /// Hands a stamped message to the writer; `false` (and its sender told `unavailable`) when
    /// the store refuses it.
    pub(super) fn hand_to_store(&mut self, message: NewMessage, origin: Origin, seq: u64) -> bool {
        let Some(store) = self.hub.store() else { return false };
        let sent_by = match &origin {
            Origin::Connection { shard, conn, .. } => Some((*shard, *conn)),
            Origin::Reply(_) => None,
        };
        let room = message.room.clone().expect("a room message");
        let (id, sender) = (message.id.clone(), message.sender.clone());
        let done = self.completion(origin, &room, &id, &sender, seq);
        let Err(refused) = store.write(Write::Message(message), done) else { return true };
        self.count_store_refusal(refused.why);
        match (sent_by, refused.done) {
            (Some((shard, conn)), _) => self.tell_refused(shard, conn, &room, &id, &sender),
            (None, Completion::Sequenced { reply, .. }) => drop(reply.send(None)),
            (None, _) => {}
        }
        false
    }

    /// What the writer does once the message is committed.
    fn completion(
        &self,
        origin: Origin,
        room: &Room,
        id: &str,
        sender: &protocol::UserId,
        seq: u64,
    ) -> Completion {
        match origin {
            // The home passes the ack on (`Delivery::Stored`), after its own fan-out.
            Origin::Connection { conn, acked: true, .. } => Completion::Shard {
                shard: self.id,
                conn,
                user: sender.clone(),
                room: Some(room.clone()),
                id: id.to_owned(),
                seq: Some(seq),
            },
            Origin::Connection { .. } => {
                Completion::Room { home: self.id, room: room.clone(), seq }
            }
            Origin::Reply(reply) => {
                Completion::Sequenced { home: self.id, room: room.clone(), reply, seq }
            }
        }
    }

    /// Without a store, a message is in once stamped.
    pub(super) fn tell_stamped(
        &mut self,
        origin: Origin,
        room: &Room,
        id: String,
        sender: &protocol::UserId,
        seq: u64,
    ) {
        match origin {
            Origin::Connection { shard, conn, acked: true, .. } => {
                let (user, room, seq) = (sender.clone(), Some(room.clone()), Some(seq));
                debug_assert_eq!(shard, self.hub.router().shard_of_user(&user), "the user's shard");
                self.on_committed(conn, user, room, id, seq);
            }
            Origin::Connection { .. } => {}
            Origin::Reply(reply) => self.on_numbered(room.clone(), reply, seq),
        }
    }

    /// Answers an HTTP publish with its message's seq, after the fan-out held with it (if any).
    pub(super) fn answer_numbered(&mut self, reply: oneshot::Sender<Option<u64>>, seq: u64) {
        if self.out.holding() {
            self.out.hold(Held::Numbered { reply, seq });
        } else {
            let _ = reply.send(Some(seq));
        }
    }

    /// The stream could not be read: a waiting message is refused, a waiting resume not recovered.
    fn refuse(&mut self, waiting: Queued) {
        match waiting {
            Queued::Message(item) => self.refuse_message(item, UnavailableCause::StreamUnread),
            Queued::Resume(request) => self.unrecoverable(request, Unrecovered::NoHistory, 0, ""),
        }
    }

    /// A room message that could not be numbered or stored: its sender hears `unavailable`.
    pub(super) fn refuse_message(&mut self, item: ToSequence, cause: UnavailableCause) {
        self.count_unavailable(cause);
        self.refuse_because(item, None);
    }
}

impl Shard {
    fn tell_refused(
        &mut self,
        shard: usize,
        conn: u64,
        room: &Room,
        id: &str,
        sender: &protocol::UserId,
    ) {
        let (user, room, id) = (sender.clone(), room.clone(), id.to_owned());
        self.tell_sender(shard, Delivery::Refused { conn, user, room, id, why: None });
    }
}
