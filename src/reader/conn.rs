//! One connection as its shard's reader holds it: what it has read of an unfinished frame, its
//! heartbeat, its close.
//!
//! Owns: the connection's read state and close handshake. Bytes are split into frames by their
//! header (tungstenite's `FrameHeader`), and each whole frame goes through tungstenite's protocol
//! state: the reader's shared one, or the connection's own while a fragmented message is under way.
//! So an idle connection holds no parser state and no buffer.
//! May touch: its lane, the commands gathered for its shard. Must not: await (the reader sends the
//! commands after the turn).

use std::io::{self, Cursor};
use std::sync::Arc;

use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::{Frame as WsFrame, FrameHeader};
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketContext};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use super::wire::Wire;
use super::Shared;
use crate::close::{self, CloseReason};
use crate::lane::{self, Lane};
use crate::mailbox::Command;
use crate::peer::heartbeat::Heartbeat;
use crate::peer::PeerAuth;
use crate::peer::{Due, Ended, Peer, Reaction, ReadFailure};
use crate::protocol::UserId;

/// Reads in one turn (each up to the shared buffer) before the connection lets the others go first.
const READS_PER_TURN: usize = 4;

/// One connection (its id is the reader's key, and `Shared::conn` during its turn).
pub struct Conn {
    pub user: UserId,
    pub lane: Arc<Lane>,
    heartbeat: Heartbeat,
    /// The start of a frame not yet read whole (empty, with no allocation, between frames).
    partial: Box<[u8]>,
    /// tungstenite's state of this connection, only while a fragmented message is under way.
    own: Option<Box<WebSocketContext>>,
    closing: Option<Box<Closing>>,
    auth: Option<Box<PeerAuth>>,
    /// The admission slot, dropped with the connection.
    _held: Option<Box<dyn Send>>,
}

/// A close under way: why, until when the client may take to answer, and whether the close frame
/// went out (a draining close writes what is queued first).
struct Closing {
    reason: CloseReason,
    deadline: Instant,
    sent: bool,
}

impl Conn {
    pub fn new(
        user: UserId,
        lane: Arc<Lane>,
        auth: Option<Box<PeerAuth>>,
        held: Option<Box<dyn Send>>,
        shared: &Shared,
    ) -> Self {
        let heartbeat = peer(&user, auth.as_deref(), shared).heartbeat();
        let (partial, own, closing) = (Box::default(), None, None);
        Self { user, lane, heartbeat, partial, own, closing, auth, _held: held }
    }

    /// Acts on a close the shard asked for, writes what the lane left, and reads what has
    /// arrived. `Some` when the connection has ended.
    pub fn poll(&mut self, shared: &mut Shared) -> Option<Ended> {
        if let Some(reason) = self.lane.take_close_request() {
            if let Some(ended) = self.start_close(*reason, shared) {
                return Some(ended);
            }
        }
        if let Some(ended) = self.write_queued() {
            return Some(ended);
        }
        for _ in 0..READS_PER_TURN {
            let mut buffer = std::mem::take(&mut shared.buffer);
            let ended = match self.lane.read(&mut buffer) {
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                    shared.buffer = buffer;
                    return None;
                }
                Ok(0) => Some(self.ended_by_client()),
                Ok(read) => {
                    self.heartbeat.seen(shared.now);
                    self.take_in(&buffer[..read], shared)
                }
                Err(err) => Some(Ended::Gone(err.to_string())),
            };
            shared.buffer = buffer;
            if ended.is_some() {
                return ended;
            }
        }
        // More may be waiting, and no new event will say so: come back after the others.
        shared.ready.push(shared.conn);
        None
    }

    /// Writes what the lane left queued (for a draining close, once it is all written, the close
    /// goes out).
    fn write_queued(&mut self) -> Option<Ended> {
        let drained = self.lane.drain();
        match self.closing.as_deref() {
            Some(closing) if !closing.sent => match drained {
                Ok(true) => self.send_close(),
                Ok(false) => None,
                Err(_) => Some(Ended::Closed(closing.reason)),
            },
            _ => drained.err().map(|err| Ended::Gone(err.to_string())),
        }
    }

    fn ended_by_client(&self) -> Ended {
        self.closing.as_deref().map_or(Ended::ClientClosed, |closing| Ended::Closed(closing.reason))
    }

    /// Takes newly read bytes: every whole frame is handled, the start of the next one kept.
    pub fn take_in(&mut self, read: &[u8], shared: &mut Shared) -> Option<Ended> {
        if self.partial.is_empty() {
            let (used, ended) = self.frames(read, shared);
            self.partial = read[used..].into();
            return ended;
        }
        let input = [&self.partial[..], read].concat();
        let (used, ended) = self.frames(&input, shared);
        self.partial = input[used..].into();
        ended
    }

    /// Handles the whole frames at the start of `input`: how many bytes they took.
    fn frames(&mut self, input: &[u8], shared: &mut Shared) -> (usize, Option<Ended>) {
        let max_frame = shared.hub.settings().max_frame as u64;
        let mut used = 0;
        while used < input.len() {
            let mut cursor = Cursor::new(&input[used..]);
            let (header, length) = match FrameHeader::parse(&mut cursor) {
                Ok(Some(parsed)) => parsed,
                Ok(None) => break,
                Err(err) => return (input.len(), self.failed(err.into(), shared)),
            };
            if length > max_frame {
                return (input.len(), self.start_close(close::MESSAGE_TOO_BIG, shared));
            }
            let end = used + cursor.position() as usize + length as usize;
            if end > input.len() {
                break;
            }
            if let Some(ended) = self.frame(&input[used..end], &header, shared) {
                return (input.len(), Some(ended));
            }
            used = end;
        }
        (used, None)
    }

    /// One whole frame through tungstenite, then what its message calls for.
    fn frame(&mut self, bytes: &[u8], header: &FrameHeader, shared: &mut Shared) -> Option<Ended> {
        let starts_fragmented =
            !header.is_final && matches!(header.opcode, OpCode::Data(Data::Text | Data::Binary));
        if starts_fragmented && self.own.is_none() {
            self.own = Some(Box::new(WebSocketContext::new(Role::Server, Some(shared.config))));
        }
        let owned = self.own.is_some();
        let state = match self.own.as_deref_mut() {
            Some(own) => own,
            None => &mut shared.scratch,
        };
        let mut wire = Wire { input: bytes, lane: &self.lane };
        let message = match state.read(&mut wire) {
            Ok(message) => message,
            // A fragment: the message is not whole yet.
            Err(WsError::Io(err)) if err.kind() == io::ErrorKind::WouldBlock => return None,
            Err(err) => {
                self.reset_state(owned, shared);
                return self.failed(err.into(), shared);
            }
        };
        let is_close = matches!(message, Message::Close(_));
        if self.closing.is_some() || is_close {
            // After a close nothing else is answered: tungstenite's state starts afresh.
            if self.closing.is_none() {
                // The echo of the client's close (the connection ends either way).
                let _ = state.flush(&mut wire);
            }
            self.reset_state(owned, shared);
            return match &self.closing {
                Some(closing) => is_close.then_some(Ended::Closed(closing.reason)),
                None => Some(Ended::ClientClosed),
            };
        }
        // A pong for a ping goes out now, on this connection.
        if let Err(err) = state.flush(&mut wire) {
            self.reset_state(owned, shared);
            return self.failed(err.into(), shared);
        }
        if owned && header.is_final && matches!(header.opcode, OpCode::Data(_)) {
            self.own = None;
        }
        self.on_message(message, shared)
    }

    fn reset_state(&mut self, owned: bool, shared: &mut Shared) {
        if owned {
            self.own = None;
        } else {
            shared.scratch = WebSocketContext::new(Role::Server, Some(shared.config));
        }
    }

    fn on_message(&mut self, message: Message, shared: &mut Shared) -> Option<Ended> {
        let reaction =
            peer(&self.user, self.auth.as_deref(), shared).react(message, &mut self.heartbeat);
        match reaction {
            Reaction::Command(command) => {
                shared.commands.push(command);
                None
            }
            Reaction::Reply(frame) => self.write_own(&lane::encode(&frame).0),
            Reaction::Closed => Some(Ended::ClientClosed),
            Reaction::Nothing => None,
        }
    }

    fn failed(&mut self, failure: ReadFailure, shared: &mut Shared) -> Option<Ended> {
        match failure {
            ReadFailure::Close(reason) => self.start_close(reason, shared),
            ReadFailure::ClientClosed => Some(self.ended_by_client()),
            ReadFailure::Gone(why) => Some(Ended::Gone(why)),
        }
    }

    fn write_own(&self, wire: &[u8]) -> Option<Ended> {
        self.lane.write_own(wire).err().map(|err| Ended::Gone(err.to_string()))
    }

    /// Starts the close handshake. An eviction leaves the cache first, so the room hears `leave`
    /// at once, not after the handshake; a draining close (shutdown) writes the queued frames first
    /// and leaves the cache last, so the shards wait for it to finish.
    fn start_close(&mut self, reason: CloseReason, shared: &mut Shared) -> Option<Ended> {
        if self.closing.is_some() {
            return None;
        }
        if !reason.drain {
            shared.commands.push(Command::Unregister { conn: shared.conn });
        }
        let settings = shared.hub.settings();
        let grace = if reason.drain { settings.shutdown_timeout } else { close::GRACE };
        let deadline = shared.now + grace;
        self.closing = Some(Box::new(Closing { reason, deadline, sent: false }));
        if reason.drain {
            // The close goes out once the queue is written (`write_queued`, which runs next: a
            // draining close is asked for by the shard, and seen at the start of a turn).
            return None;
        }
        self.send_close()
    }

    /// Sends the close frame: no frame of the shard's goes after it.
    fn send_close(&mut self) -> Option<Ended> {
        let closing = self.closing.as_deref_mut()?;
        closing.sent = true;
        let reason = closing.reason;
        self.lane.close(!reason.drain);
        let close = CloseFrame { code: CloseCode::from(reason.code), reason: reason.reason.into() };
        let wire = encoded(Message::Close(Some(close)));
        self.lane.write_own(&wire).err().map(|_| Ended::Closed(reason))
    }

    /// What the heartbeat finds due, and whether a close ran out of time.
    pub fn beat(&mut self, shared: &mut Shared) -> Option<Ended> {
        let now = shared.now;
        if let Some(closing) = self.closing.as_deref() {
            return (now >= closing.deadline).then_some(Ended::Closed(closing.reason));
        }
        if now < self.heartbeat.deadline() {
            return None;
        }
        let beat = self.heartbeat.due(now);
        match peer(&self.user, self.auth.as_deref(), shared).due(beat) {
            Due::Close(reason) => self.start_close(reason, shared),
            Due::Send(message) => self.write_own(&encoded(message)),
            Due::Nothing => None,
        }
    }
}

/// Who the connection whose turn it is speaks as.
fn peer<'a>(user: &'a UserId, auth: Option<&'a PeerAuth>, shared: &'a Shared) -> Peer<'a> {
    Peer { conn: shared.conn, user, shard: shared.shard, hub: &shared.hub, auth }
}

/// A server frame (unmasked) as it goes on the wire, encoded by tungstenite.
fn encoded(message: Message) -> Vec<u8> {
    let frame = match message {
        Message::Text(text) => return lane::encode(&text).0.into(),
        Message::Ping(payload) => WsFrame::ping(payload),
        Message::Close(close) => WsFrame::close(close),
        other => unreachable!("the reader sends no {other:?} of its own"),
    };
    let mut wire = Vec::with_capacity(frame.len());
    frame.format(&mut wire).expect("a Vec takes any frame");
    wire
}
