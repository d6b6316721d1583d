//! Turns at SQLite's one write lock for the two writers of a process: chats and files.
//!
//! Owns: which of the two commits next. SQLite lets one connection write at a time, and one that
//! finds the lock taken sleeps and retries (its busy handler: 1, 2, 5, 10, ... ms), so a chat
//! batch behind a stream of file chunks waited tens of milliseconds. Here the writers queue on a
//! mutex instead, and a chat batch that waits goes first: it waits for the one file chunk being
//! committed at most. PostgreSQL locks rows, not the database: its writers take no turns.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

/// The turns of one database's writers.
#[derive(Debug, Default)]
pub struct Turns {
    lock: Mutex<()>,
    /// Chat batches waiting for the lock: a file chunk lets them go first.
    chats_waiting: AtomicUsize,
}

/// Which writer asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Chats,
    Files,
}

impl Turns {
    /// Waits for `side`'s turn; it lasts as long as the guard.
    pub fn take(&self, side: Side) -> MutexGuard<'_, ()> {
        let lock = || self.lock.lock().unwrap_or_else(PoisonError::into_inner);
        if side == Side::Chats {
            self.chats_waiting.fetch_add(1, Ordering::SeqCst);
            let turn = lock();
            self.chats_waiting.fetch_sub(1, Ordering::SeqCst);
            return turn;
        }
        loop {
            let turn = lock();
            if self.chats_waiting.load(Ordering::SeqCst) == 0 {
                return turn;
            }
            drop(turn);
            std::thread::yield_now();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;

    #[test]
    fn a_chat_batch_waits_for_one_file_chunk_at_most() {
        let turns = Arc::new(Turns::default());
        let (chunks, stop) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicBool::new(false)));
        // The file writer commits chunk after chunk, taking its turn again at once.
        let files = {
            let (turns, chunks, stop) =
                (Arc::clone(&turns), Arc::clone(&chunks), Arc::clone(&stop));
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    let _turn = turns.take(Side::Files);
                    chunks.fetch_add(1, Ordering::SeqCst);
                    std::thread::sleep(std::time::Duration::from_micros(200));
                }
            })
        };
        for _ in 0..50 {
            let before = chunks.load(Ordering::SeqCst);
            let turn = turns.take(Side::Chats);
            let passed = chunks.load(Ordering::SeqCst) - before;
            assert!(passed <= 1, "{passed} file chunks went before a waiting chat batch");
            drop(turn);
            std::thread::sleep(std::time::Duration::from_micros(500));
        }
        stop.store(true, Ordering::SeqCst);
        files.join().unwrap();
    }
}
