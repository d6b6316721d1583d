//! A lane: one plain-TCP connection's outgoing bytes, written by its shard straight into the socket.
//!
//! Owns: the connection's TCP socket once it is attached, and the queue of encoded WebSocket frames
//! the kernel has not taken yet. The shard pushes a publish's frame (encoded once, the same bytes for
//! every member) and writes every lane it pushed to once at the end of its batch, so a connection's
//! frames of one batch go out in one `writev`. Only what the kernel does not take stays queued; the
//! shard's reader (`reader`) writes it when the socket is writable again, and its own frames (replies,
//! pings, pongs, the close) go through [`Lane::write_own`] behind whatever is queued.
//! The reader also reads the socket through the lane ([`Lane::read`]): the socket is one.
//! May touch: nothing else. Must not: decide anything about the connection; a full queue is
//! reported to the shard, which evicts.
//!
//! The shard and its reader run on the same thread (the shard's runtime), so the mutex is never
//! contended; it is there because the lane is made on the HTTP runtime, before the upgrade.
//! Every write is whole or nothing to the other writers: a frame the kernel takes in part has its
//! rest queued first, so frames never interleave inside each other.
//!
//! A frame that may wait (a typing event, [`protocol::may_wait`]) is pushed deferred: it asks for no
//! write of its own, and goes out with the next frame that is due, or when the shard's deferral
//! for it ends ([`Lane::flush_deferred`]). Typing then rides in the chats' `writev`s.

use std::io::{self, IoSlice, Read, Write};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::Bytes;
use mio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame as WsFrame;

use crate::close::CloseReason;
use crate::protocol::{self, Frame};
use queue::Frames;
pub use ready::ReadyQueue;

mod queue;
mod ready;

/// Most queued frames handed to the kernel in one `writev`.
const MAX_SLICES: usize = 64;

/// What became of a pushed frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// Queued behind nothing: the lane is to be written at the end of the batch.
    First,
    /// Queued behind frames that are already waiting to be written.
    Queued,
    /// Queued, and may wait: nothing else was queued, so no write is due for it yet.
    Deferred,
    /// The queue is at its limit: the frame is dropped and the connection is a slow consumer.
    Full,
    /// The connection is closing or gone: the frame is dropped.
    Closed,
}

#[derive(Debug)]
pub struct Lane {
    state: Mutex<State>,
    /// Frames that may wait besides `allowance` bytes' worth; a push beyond both is refused.
    limit: u32,
    /// Bytes that may wait besides `limit` frames: `--ws-write-buffer`, what a session's path
    /// keeps in tungstenite's write buffer, so both paths evict at the same point.
    allowance: u32,
}

#[derive(Debug, Default)]
struct State {
    /// `None` until the upgrade is done, and again once the connection has ended. Registered with
    /// its shard's reader (edge-triggered): a write the kernel refuses is followed by a writable
    /// event, which has the reader write what stays queued.
    socket: Option<TcpStream>,
    queue: Frames,
    /// The bytes in `queue`.
    queued_bytes: usize,
    /// The front frame is written in part: the rest must go before anything else.
    front_started: bool,
    /// Every queued frame may wait: no write is due for them yet.
    deferred: bool,
    /// No more pushes: the connection is sending its close (or has ended).
    closed: bool,
    /// The shard's request that the connection close, for its reader to act on.
    close_request: Option<&'static CloseReason>,
    /// Where a close request is announced: the reader's queue, and this connection's id in it.
    reader: Option<(Arc<ReadyQueue>, u64)>,
}

impl Lane {
    pub fn new(limit: usize, allowance: usize) -> Self {
        let (limit, allowance) = (saturating_u32(limit), saturating_u32(allowance));
        Self { state: Mutex::default(), limit, allowance }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues an encoded frame (or a bundle of them, [`encode`]) to be written in order. `First`
    /// when the lane is to be written at the end of the batch: nothing else was queued, or only
    /// frames that may wait.
    pub fn push(&self, wire: Bytes) -> Pushed {
        self.enqueue(wire, false)
    }

    /// Queues a frame that may wait: `Deferred` when nothing else was queued (the shard writes
    /// the lane once its deferral ends, unless a frame that is due took it along before).
    pub fn push_deferred(&self, wire: Bytes) -> Pushed {
        self.enqueue(wire, true)
    }

    fn enqueue(&self, wire: Bytes, may_wait: bool) -> Pushed {
        let mut state = self.state();
        if state.closed {
            return Pushed::Closed;
        }
        if state.is_full(self.limit as usize, self.allowance as usize) {
            return Pushed::Full;
        }
        let alone = state.queue.is_empty();
        state.queued_bytes += wire.len();
        state.queue.push_back(wire);
        if may_wait {
            // Behind other frames it goes with them; alone, it waits.
            state.deferred |= alone;
            return if alone { Pushed::Deferred } else { Pushed::Queued };
        }
        // A due frame has the lane written, taking whatever waited along.
        if alone || std::mem::take(&mut state.deferred) {
            Pushed::First
        } else {
            Pushed::Queued
        }
    }

    /// Frames waiting to be written.
    pub fn queued(&self) -> usize {
        self.state().queue.len()
    }

    /// The shard's write at the end of a batch: as much of the queue as the kernel takes now. What
    /// it leaves is the reader's to write once the socket is writable; `true` when it left some.
    pub fn flush(&self) -> bool {
        self.state().flush()
    }

    /// A deferral's end: [`Lane::flush`] if the queue still holds only frames that may wait (else
    /// they went, or go, with a frame that was due).
    pub fn flush_deferred(&self) -> bool {
        let mut state = self.state();
        state.deferred && state.flush()
    }

    /// Puts the upgraded connection's socket in, registered with its shard's reader, which is told
    /// through `ready` when the shard asks for a close. Frames pushed before wait for the reader's
    /// first drain.
    pub fn attach(&self, socket: TcpStream, ready: Arc<ReadyQueue>, conn: u64) {
        let mut state = self.state();
        state.socket = Some(socket);
        state.reader = Some((ready, conn));
    }

    /// The reader's part: writes what stays queued, as far as the kernel takes it now. `true` once
    /// nothing is left; `false` when the rest waits for the socket's next writable event.
    pub fn drain(&self) -> io::Result<bool> {
        self.state().write_now()
    }

    /// The shard asks the connection's reader to close it (the first request wins).
    pub fn request_close(&self, reason: &'static CloseReason) {
        let mut state = self.state();
        if state.close_request.is_none() {
            state.close_request = Some(reason);
        }
        if let Some((ready, conn)) = &state.reader {
            ready.push(*conn);
        }
    }

    /// The close the shard asked for, once.
    pub fn take_close_request(&self) -> Option<&'static CloseReason> {
        self.state().close_request.take()
    }

    /// Reads from the socket into `buf`: `Ok(0)` at its end, `WouldBlock` once it has nothing more
    /// (its next readable event says when it has).
    pub fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        let state = self.state();
        let mut socket = state.socket()?;
        socket.read(buf)
    }

    /// Writes one of the connection's own frames (a reply, a ping, the close) behind whatever is
    /// queued, never waiting: what the kernel does not take now stays queued, for the drain.
    pub fn write_own(&self, wire: &[u8]) -> io::Result<()> {
        let mut state = self.state();
        state.socket()?;
        state.queue.push_back(Bytes::copy_from_slice(wire));
        state.queued_bytes += wire.len();
        state.write_now().map(drop)
    }

    /// Takes no more pushes. `discard`: drops what is queued, except a frame already written in
    /// part, whose rest must still go so the close that follows is read as a frame.
    pub fn close(&self, discard: bool) {
        let mut state = self.state();
        state.closed = true;
        if discard {
            let keep_first = state.front_started;
            state.queue.truncate(keep_first);
            state.queued_bytes = state.queue.iter().map(Bytes::len).sum();
        }
    }

    /// The connection ended: the socket is closed now, not when the shard forgets the connection.
    pub fn detach(&self) {
        let mut state = self.state();
        state.closed = true;
        state.socket = None;
        state.queue = Frames::default();
        state.queued_bytes = 0;
        state.deferred = false;
        state.reader = None;
    }
}

fn saturating_u32(value: usize) -> u32 {
    u32::try_from(value).unwrap_or(u32::MAX)
}

impl State {
    /// Whether `limit` frames and `allowance` bytes are waiting: the frames beyond `limit`, at the
    /// queue's average size, fill the allowance (exact for frames of one size).
    fn is_full(&self, limit: usize, allowance: usize) -> bool {
        let waiting = self.queue.len();
        waiting >= limit && (waiting - limit) * self.queued_bytes >= allowance * waiting
    }

    fn socket(&self) -> io::Result<&TcpStream> {
        self.socket
            .as_ref()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotConnected, "no socket on this lane"))
    }

    /// [`Lane::flush`]: `true` when the kernel left some.
    fn flush(&mut self) -> bool {
        if self.socket.is_none() {
            // Not upgraded yet: the reader writes the queue once it has attached the socket.
            return false;
        }
        match self.write_now() {
            Ok(emptied) => !emptied,
            Err(err) => {
                // The reader sees the same error on its next read, and ends the connection.
                tracing::trace!(%err, "a lane's write failed");
                !self.queue.is_empty()
            }
        }
    }

    /// [`State::write_queued`] as far as the kernel takes it now: `true` once the queue is empty,
    /// `false` when the rest waits for the socket's writable event. Whatever waited goes too.
    fn write_now(&mut self) -> io::Result<bool> {
        self.deferred = false;
        match self.write_queued() {
            Ok(()) => Ok(true),
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => Ok(false),
            Err(err) => Err(err),
        }
    }

    /// Writes queued frames until the queue is empty (`Ok`) or the kernel takes no more
    /// (`WouldBlock`, after which the socket's writable event comes).
    fn write_queued(&mut self) -> io::Result<()> {
        while !self.queue.is_empty() {
            let mut socket = self.socket()?;
            let mut slices = [IoSlice::new(&[]); MAX_SLICES];
            let mut count = 0;
            for (slice, frame) in slices.iter_mut().zip(self.queue.iter()) {
                *slice = IoSlice::new(frame);
                count += 1;
            }
            let written = socket.write_vectored(&slices[..count])?;
            if written == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            self.advance(written);
        }
        Ok(())
    }

    fn advance(&mut self, mut written: usize) {
        self.queued_bytes -= written;
        while written > 0 {
            let front = self.queue.front_mut().expect("the kernel took no more than was queued");
            if written < front.len() {
                let rest = front.slice(written..);
                *front = rest;
                self.front_started = true;
                return;
            }
            written -= front.len();
            self.queue.pop_front();
            self.front_started = false;
        }
    }
}

/// A frame as it goes on the wire: one unmasked text message, header included, the same bytes for
/// every recipient. A bundle ([`protocol::bundle`]) becomes its messages back to back. With how many
/// messages it holds.
pub fn encode(frame: &Frame) -> (Bytes, u64) {
    let payload = Bytes::from(frame.clone());
    if !protocol::is_bundle(frame) {
        let mut wire = Vec::new();
        append_message(payload, &mut wire);
        return (Bytes::from(wire), 1);
    }
    let mut wire = Vec::with_capacity(payload.len() + 16);
    let mut count = 0;
    for part in protocol::bundle_parts(frame) {
        // The part is a slice of the frame's own buffer: no copy before the encoding's.
        append_message(payload.slice_ref(part.as_bytes()), &mut wire);
        count += 1;
    }
    (Bytes::from(wire), count)
}

/// Appends one text message, header included, to `wire`.
fn append_message(payload: Bytes, wire: &mut Vec<u8>) {
    let message = WsFrame::message(payload, OpCode::Data(Data::Text), true);
    wire.reserve_exact(message.len());
    message.format(wire).expect("a Vec takes any frame");
}

#[cfg(test)]
mod tests;
