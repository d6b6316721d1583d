//! The store handle: what shards, sessions and handlers hold to reach the writer and the read pool.
//!
//! Owns: the sending ends of the writer's queue and the read pool' queue. Must not: wait to hand a
//! chat over: [`Store::write`] is a `try_send`, refused at once when the queue is full or the
//! database is down, so "acked" always means "stored and delivered".

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;

use super::jobs::{Completion, Job, ReadJob};
use super::ops::{Answer, Outcome, Read, Write};
use super::writer::{Tuning, Writer};
use super::{migrations, read_pool, DatabaseUrl, StoreError, StoreSettings};
use crate::metrics::StoreCounters;
use crate::router::Router;

/// Attachment writes queued at most (each upload has one in flight).
const BLOB_QUEUE: usize = 64;
/// The blob writer's SQLite page cache, in KiB.
const BLOB_CACHE_KIB: i64 = 1024;
/// The blob writer checkpoints SQLite's WAL itself every this many commits (of a 256 KiB chunk
/// each, mostly: every 16 MiB written), outside its turn at the write lock.
const BLOB_CHECKPOINT_EVERY: u32 = 64;

/// The store cannot take this now (its queue is full, or the database is down): retry later.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the message store is unavailable")]
pub struct Unavailable;

/// A write [`Store::write`] did not take: why, and its completion handed back so that its owner
/// can be told.
#[derive(Debug)]
pub struct Refused {
    pub why: WriteRefusal,
    pub done: Completion,
}

/// Why the store refused a write, known where it refused it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteRefusal {
    /// The database is down (the writer retries it, with a backoff).
    Down,
    /// The writer's queue is full, or the writer is gone.
    Full,
}

/// A cheap, cloneable handle to the writer and the read pool.
#[derive(Debug, Clone)]
pub struct Store {
    writes: flume::Sender<Job>,
    /// The blob writer's queue: attachments' rows and chunks.
    blobs: flume::Sender<Job>,
    reads: flume::Sender<ReadJob>,
    counters: Arc<StoreCounters>,
}

impl Store {
    /// Opens the database, brings its schema up to date, and starts the writer and the read pool.
    /// Completions of chats go to their shards through `router`.
    pub fn start(
        url: &DatabaseUrl,
        settings: &StoreSettings,
        router: Router,
        counters: Arc<StoreCounters>,
    ) -> Result<Self, StoreError> {
        let mut engine = url.connect()?;
        let applied = migrations::migrate(engine.as_mut(), migrations::latest())?;
        let analyzed = migrations::analyze_if_never_analyzed(engine.as_mut())?;
        tracing::info!(database = %url.describe(), ?applied, ?analyzed, "store ready");
        let (writes, jobs) = flume::bounded(settings.queue.max(1));
        let (reads, read_jobs) = flume::bounded(settings.queue.max(1));
        let mut tuning = Tuning {
            batch: settings.batch.max(1),
            linger: settings.linger,
            retention: settings.retention,
            retention_every: settings.retention_every,
            cache_kib: None,
            turns: None,
            checkpoint_every: None,
            bytes_per_second: None,
        };
        counters.up.store(1, Relaxed);
        // Attachments' bytes go through a writer of their own, on a connection with a small page
        // cache: a chat commit never waits behind a file's megabytes in the same transaction,
        // and a file written does not stay in memory.
        let (blobs, blob_jobs) = flume::bounded(BLOB_QUEUE);
        let mut blob_tuning = Tuning {
            retention: None,
            cache_kib: Some(BLOB_CACHE_KIB),
            bytes_per_second: settings.file_bytes_per_second,
            ..tuning.clone()
        };
        if let DatabaseUrl::Sqlite(_) = url {
            let turns = Arc::new(super::turns::Turns::default());
            tuning.turns = Some((Arc::clone(&turns), super::turns::Side::Chats));
            blob_tuning.turns = Some((turns, super::turns::Side::Files));
            blob_tuning.checkpoint_every = Some(BLOB_CHECKPOINT_EVERY);
        }
        let blob_engine = super::writer::connect(url, &blob_tuning)?;
        let (router_too, counters_too) = (router.clone(), Arc::clone(&counters));
        let blob_writer =
            Writer::new(url.clone(), blob_engine, blob_jobs, router_too, counters_too, blob_tuning);
        let writer = Writer::new(url.clone(), engine, jobs, router, Arc::clone(&counters), tuning);
        let spawn_error = |err: std::io::Error| StoreError::Unavailable(format!("threads: {err}"));
        std::thread::Builder::new()
            .name("wsbroker-writer".into())
            .spawn(move || writer.run())
            .map_err(spawn_error)?;
        std::thread::Builder::new()
            .name("wsbroker-blobs".into())
            .spawn(move || blob_writer.run())
            .map_err(spawn_error)?;
        read_pool::start(settings.readers.max(1), url, &read_jobs, &counters)
            .map_err(spawn_error)?;
        Ok(Self { writes, blobs, reads, counters })
    }

    /// Whether the database takes writes now (`/readyz`).
    pub fn is_up(&self) -> bool {
        self.counters.up.load(Relaxed) == 1
    }

    /// Hands a write to the writer without waiting; refused when the store is down or full, with
    /// the reason and the completion handed back so its owner can be told. Every other way to
    /// write goes through this one.
    pub fn write(&self, write: Write, done: Completion) -> Result<(), Refused> {
        let refused = |why, done| {
            self.counters.refused.fetch_add(1, Relaxed);
            Refused { why, done }
        };
        if !self.is_up() {
            return Err(refused(WriteRefusal::Down, done));
        }
        self.enqueue(&self.writes, Job { write, done })
            .map_err(|job| refused(WriteRefusal::Full, job.done))
    }

    /// Puts `job` on `queue`, counted on the queue-depth gauge (which its writer counts down as it
    /// gathers); a full or closed queue hands it back (boxed: that is the rare way).
    fn enqueue(&self, queue: &flume::Sender<Job>, job: Job) -> Result<(), Box<Job>> {
        self.counters.queued.fetch_add(1, Relaxed);
        queue.try_send(job).map_err(|refused| {
            self.counters.queued.fetch_sub(1, Relaxed);
            Box::new(refused.into_inner())
        })
    }

    /// A write nobody waits for (presence, a room created by a join); refused ones are counted.
    pub fn write_unawaited(&self, write: Write) {
        let _ = self.write(write, Completion::None);
    }

    /// Hands a write over; the returned future completes with its commit.
    pub fn write_awaitable(
        &self,
        write: Write,
    ) -> Result<impl std::future::Future<Output = Result<Outcome, Unavailable>>, Unavailable> {
        let (reply, answer) = oneshot::channel();
        self.write(write, Completion::Reply(reply)).map_err(|_| Unavailable)?;
        Ok(async move { answer.await.map_err(|_| Unavailable)?.map_err(|_| Unavailable) })
    }

    /// Hands a write over and waits for its commit.
    pub async fn write_and_wait(&self, write: Write) -> Result<Outcome, Unavailable> {
        self.write_awaitable(write)?.await
    }

    /// Hands an attachment's write to the blob writer and waits for its commit.
    pub async fn write_blob_and_wait(&self, write: Write) -> Result<Outcome, Unavailable> {
        let (reply, answer) = oneshot::channel();
        let job = Job { write, done: Completion::Reply(reply) };
        self.enqueue(&self.blobs, job).map_err(|_| Unavailable)?;
        answer.await.map_err(|_| Unavailable)?.map_err(|_| Unavailable)
    }

    /// Waits until every write handed over so far is committed (at shutdown); `false` when the
    /// store is down or it took longer than `timeout`.
    pub async fn flush(&self, timeout: Duration) -> bool {
        let Ok(committed) = self.write_awaitable(Write::Barrier) else { return false };
        matches!(tokio::time::timeout(timeout, committed).await, Ok(Ok(_)))
    }

    /// Asks a reader.
    pub async fn read(&self, read: Read) -> Result<Answer, Unavailable> {
        let (reply, answer) = oneshot::channel();
        self.reads.try_send(ReadJob { read, reply }).map_err(|_| Unavailable)?;
        answer.await.map_err(|_| Unavailable)?.map_err(|err| {
            tracing::warn!(%err, "a read failed");
            Unavailable
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A handle on queues of one that no writer drains, up or down as `up` says.
    fn handle(up: u64) -> (Store, Vec<flume::Receiver<Job>>) {
        let (writes, jobs) = flume::bounded(1);
        let (blobs, blob_jobs) = flume::bounded(1);
        let (reads, _) = flume::bounded(1);
        let counters = Arc::new(StoreCounters::default());
        counters.up.store(up, Relaxed);
        (Store { writes, blobs, reads, counters }, vec![jobs, blob_jobs])
    }

    #[test]
    fn a_refusal_says_whether_the_store_was_down_or_full() {
        let barrier = || (Write::Barrier, Completion::None);
        let (store, _queues) = handle(1);
        let (write, done) = barrier();
        assert!(store.write(write, done).is_ok(), "the queue has room for one");
        let (write, done) = barrier();
        assert_eq!(store.write(write, done).map_err(|r| r.why), Err(WriteRefusal::Full));
        let (store, _queues) = handle(0);
        let (write, done) = barrier();
        assert_eq!(store.write(write, done).map_err(|r| r.why), Err(WriteRefusal::Down));
        assert_eq!(store.counters.refused.load(Relaxed), 1);
        assert_eq!(store.counters.queued.load(Relaxed), 0, "nothing was queued");
    }
}
