//! The reader's plumbing: which connections were woken, and the byte stream tungstenite parses a
//! frame from and writes its answers to.
//!
//! Owns: the ready queue and each connection's waker, and [`Wire`], the `Read + Write` that tungstenite
//! sees. Must not: interpret bytes; tungstenite does.

use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::Wake;

use tokio::sync::Notify;

use crate::lane::Lane;
use crate::mailbox::ConnId;

/// The connections whose socket or lane woke them, for the reader's next turn.
#[derive(Debug, Default)]
pub struct ReadyQueue {
    conns: Mutex<Vec<ConnId>>,
    /// Wakes the reader (a permit is kept when it is busy, so no wake-up is lost).
    pub notify: Notify,
}

impl ReadyQueue {
    /// Exchanges the woken connections for `spare` (empty).
    pub fn swap(&self, spare: &mut Vec<ConnId>) {
        std::mem::swap(&mut *self.conns.lock().unwrap_or_else(PoisonError::into_inner), spare);
    }
}

/// One connection's waker: tokio's reactor holds it for the socket's readiness, its lane for frames
/// left queued or a close asked for. A connection is queued once however often it is woken.
#[derive(Debug)]
pub struct ConnWake {
    conn: ConnId,
    queued: AtomicBool,
    ready: Arc<ReadyQueue>,
}

impl ConnWake {
    pub fn new(conn: ConnId, ready: Arc<ReadyQueue>) -> Self {
        Self { conn, queued: AtomicBool::new(false), ready }
    }

    /// The reader is about to poll the connection: a wake from now on queues it again.
    pub fn unqueue(&self) {
        self.queued.store(false, Ordering::Release);
    }
}

impl Wake for ConnWake {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if !self.queued.swap(true, Ordering::AcqRel) {
            self.ready.conns.lock().unwrap_or_else(PoisonError::into_inner).push(self.conn);
            self.ready.notify.notify_one();
        }
    }
}

/// What tungstenite reads one frame from (its bytes, then `WouldBlock`) and writes its answers
/// to (a pong, the echo of a close): the connection's lane, behind what is queued.
pub struct Wire<'a> {
    pub input: &'a [u8],
    pub lane: &'a Lane,
}

impl Read for Wire<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.input.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let taken = self.input.len().min(buf.len());
        buf[..taken].copy_from_slice(&self.input[..taken]);
        self.input = &self.input[taken..];
        Ok(taken)
    }
}

impl Write for Wire<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.lane.write_own(buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
