//! The connections a shard's reader is to look at besides those its sockets' events name: a close the
//! shard asked for, a connection whose turn was cut short.
//!
//! Owns: the list of connection ids and the notification that wakes the reader. Must not: know what
//! the reader does with them.

use std::sync::{Mutex, PoisonError};

use tokio::sync::Notify;

#[derive(Debug, Default)]
pub struct ReadyQueue {
    /// Connection ids (`mailbox::ConnId`), in the order they asked.
    conns: Mutex<Vec<u64>>,
    /// Wakes the reader (a permit is kept while it is busy, so no request is missed).
    pub notify: Notify,
}

impl ReadyQueue {
    pub fn push(&self, conn: u64) {
        self.conns.lock().unwrap_or_else(PoisonError::into_inner).push(conn);
        self.notify.notify_one();
    }

    /// Exchanges the connections that asked for `spare` (empty).
    pub fn swap(&self, spare: &mut Vec<u64>) {
        std::mem::swap(&mut *self.conns.lock().unwrap_or_else(PoisonError::into_inner), spare);
    }
}
