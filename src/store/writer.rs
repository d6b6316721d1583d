//! The writer: the one thread that writes to the database.
//!
//! Owns: the write connection, the batch being committed, the retention schedule. Takes jobs from
//! one bounded queue, commits up to `--store-batch` of them (or whatever came within
//! `--store-linger`) in one transaction, then hands each job's outcome back: to the shard that
//! asked (the chat's ack comes after its commit) or to a waiting caller.
//! Must not: drop a job it took. A failed commit marks the store down (new chats are refused
//! `unavailable`), and the same batch is retried, on a new connection, with backoff, until it
//! commits or the broker stops; a batch aborted as a deadlock's victim is retried at once, on the
//! same connection, with the store up.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use super::jobs::{Completion, Job};
use super::ops::{self, Outcome, Write};
use super::turns::{Side, Turns};
use super::{DatabaseUrl, Engine, StoreError};
use crate::mailbox::Delivery;
use crate::metrics::StoreCounters;
use crate::protocol::millis;
use crate::router::Router;

const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// Retries of a batch the database aborted as a deadlock's victim (another instance's writer took
/// rows in another order) before the conflict counts as the database failing: the first at once,
/// then after [`conflict_pause`]s that double, so that writers caught in one cycle again and again
/// (each retrying into the others' next batches) fall out of step.
const CONFLICT_RETRIES: u32 = 8;
/// Most messages one retention transaction deletes.
const PURGE_BATCH: i64 = 5_000;

/// How the writer is tuned (from the flags).
#[derive(Debug, Clone)]
pub struct Tuning {
    pub batch: usize,
    pub linger: Duration,
    /// Messages older than this are deleted; `None` keeps everything.
    pub retention: Option<Duration>,
    pub retention_every: Duration,
    /// SQLite: the connection's page cache, in KiB, in place of the default (the blob writer's
    /// is small, so a file written through it does not stay in the broker's memory).
    pub cache_kib: Option<i64>,
    /// SQLite: the turns this writer takes at the database's one write lock, and as whom.
    pub turns: Option<(Arc<Turns>, Side)>,
    /// SQLite: checkpoint the WAL itself after this many commits, once its turn is over. Its
    /// connection's automatic checkpoint is off: that one runs inside a commit, so within the
    /// turn, and a waiting chat batch would wait for the whole copy (the blob writer's case).
    pub checkpoint_every: Option<u32>,
    /// The most bytes of files this writer commits per second (`--attachment-write-rate`): after
    /// a commit it waits until its files' bytes, after those it committed before, would be
    /// written at that rate. `None`: no limit (the chat writer's case).
    pub bytes_per_second: Option<u64>,
}

pub struct Writer {
    url: DatabaseUrl,
    engine: Option<Box<dyn Engine>>,
    jobs: flume::Receiver<Job>,
    router: Router,
    counters: Arc<StoreCounters>,
    tuning: Tuning,
    next_purge: Instant,
    commits_since_checkpoint: u32,
    /// When the bytes committed so far are written at [`Tuning::bytes_per_second`].
    paced_until: Instant,
}

/// A writer's connection to `url`: its SQLite page cache and checkpoints as `tuning` says.
pub fn connect(url: &DatabaseUrl, tuning: &Tuning) -> Result<Box<dyn Engine>, StoreError> {
    let mut engine = url.connect()?;
    if engine.name() == "sqlite" {
        if let Some(kib) = tuning.cache_kib {
            engine.execute(&format!("PRAGMA cache_size = -{kib}"), &[])?;
        }
        if tuning.checkpoint_every.is_some() {
            engine.query("PRAGMA wal_autocheckpoint = 0", &[])?;
        }
    }
    Ok(engine)
}

impl Writer {
    pub fn new(
        url: DatabaseUrl,
        engine: Box<dyn Engine>,
        jobs: flume::Receiver<Job>,
        router: Router,
        counters: Arc<StoreCounters>,
        tuning: Tuning,
    ) -> Self {
        let next_purge = Instant::now();
        let commits_since_checkpoint = 0;
        Self {
            url,
            engine: Some(engine),
            jobs,
            router,
            counters,
            tuning,
            next_purge,
            commits_since_checkpoint,
            paced_until: Instant::now(),
        }
    }

    /// Runs until every handle is gone and the queue is empty.
    pub fn run(mut self) {
        loop {
            self.purge_if_due();
            let first = match self.jobs.recv_deadline(self.wake_at()) {
                Ok(job) => job,
                Err(flume::RecvTimeoutError::Timeout) => continue,
                Err(flume::RecvTimeoutError::Disconnected) => return,
            };
            let batch = self.gather(first);
            self.commit(batch);
        }
    }

    /// When to stop waiting for a job: the next retention run, or a while from now.
    fn wake_at(&self) -> Instant {
        let later = Instant::now() + Duration::from_secs(60);
        if self.tuning.retention.is_some() {
            self.next_purge.min(later)
        } else {
            later
        }
    }

    /// `first` and whatever else arrives within the linger, up to a batch.
    fn gather(&self, first: Job) -> Vec<Job> {
        let mut batch = vec![first];
        let deadline = Instant::now() + self.tuning.linger;
        while batch.len() < self.tuning.batch {
            match self.jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) if self.tuning.linger.is_zero() => break,
                Err(_) => match self.jobs.recv_deadline(deadline) {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                },
            }
        }
        self.counters.queued.fetch_sub(batch.len() as u64, Relaxed);
        batch
    }

    /// Commits `batch`, retrying until it is in, then completes every job.
    fn commit(&mut self, batch: Vec<Job>) {
        let (writes, completions): (Vec<Write>, Vec<Completion>) =
            batch.into_iter().map(|job| (job.write, job.done)).unzip();
        let outcomes = self.commit_until_done(&writes);
        self.counters.committed.fetch_add(writes.len() as u64, Relaxed);
        for (done, outcome) in completions.into_iter().zip(outcomes) {
            self.complete(done, outcome);
        }
        self.checkpoint_if_due();
        self.pace(writes.iter().map(Write::file_bytes).sum());
    }

    /// See [`Tuning::bytes_per_second`]: the wait after committing `bytes` of files.
    fn pace(&mut self, bytes: usize) {
        let (Some(rate), true) = (self.tuning.bytes_per_second, bytes > 0) else { return };
        let now = Instant::now();
        let took = Duration::from_secs_f64(bytes as f64 / rate.max(1) as f64);
        self.paced_until = self.paced_until.max(now) + took;
        std::thread::sleep(self.paced_until.saturating_duration_since(now));
    }

    /// See [`Tuning::checkpoint_every`]. A passive checkpoint: it copies what no reader needs and
    /// never waits for the other writer; one that fails is tried again at the next.
    fn checkpoint_if_due(&mut self) {
        let (Some(every), Some(engine)) =
            (self.tuning.checkpoint_every, self.engine.as_deref_mut())
        else {
            return;
        };
        self.commits_since_checkpoint += 1;
        if self.commits_since_checkpoint >= every {
            self.commits_since_checkpoint = 0;
            if let Err(err) = engine.query("PRAGMA wal_checkpoint(PASSIVE)", &[]) {
                tracing::debug!(%err, "the blob writer's checkpoint failed; trying again later");
            }
        }
    }

    fn commit_until_done(&mut self, writes: &[Write]) -> Vec<Outcome> {
        let (mut backoff, mut conflicts, mut failed) = (MIN_BACKOFF, 0, false);
        loop {
            let started = Instant::now();
            match self.try_commit(writes) {
                Ok(mut outcomes) => {
                    self.counters.commit_latency.record(started.elapsed());
                    self.counters.batches.fetch_add(1, Relaxed);
                    self.set_up(true, "");
                    if failed {
                        own_messages_as_new(writes, &mut outcomes);
                    }
                    return outcomes;
                }
                // The transaction was rolled back and the connection is sound: again, at once,
                // with the store up (no chat is refused for it).
                Err(StoreError::Conflict(why)) if conflicts < CONFLICT_RETRIES => {
                    self.counters.conflicts.fetch_add(1, Relaxed);
                    tracing::debug!(reason = why, "transaction conflict: the batch is retried");
                    std::thread::sleep(conflict_pause(conflicts));
                    conflicts += 1;
                }
                Err(err) => {
                    failed = true;
                    self.counters.failures.fetch_add(1, Relaxed);
                    self.engine = None;
                    self.set_up(false, &err.to_string());
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    fn try_commit(&mut self, writes: &[Write]) -> Result<Vec<Outcome>, StoreError> {
        if self.engine.is_none() {
            self.engine = Some(connect(&self.url, &self.tuning)?);
        }
        let _turn = self.tuning.turns.as_ref().map(|(turns, side)| turns.take(*side));
        let engine = self.engine.as_deref_mut().expect("connected above");
        engine.begin()?;
        match ops::apply(engine, writes) {
            Ok(outcomes) => engine.commit().map(|()| outcomes),
            Err(err) => {
                let _ = engine.rollback();
                Err(err)
            }
        }
    }

    /// Records and logs (once per change) whether the database takes writes.
    fn set_up(&self, up: bool, why: &str) {
        let was = self.counters.up.swap(u64::from(up), Relaxed) == 1;
        match (was, up) {
            (true, false) => tracing::warn!(
                reason = why,
                "database unavailable: new chats are refused until it is back"
            ),
            (false, true) => tracing::info!("database available again"),
            _ => {}
        }
    }

    fn complete(&self, done: Completion, outcome: Outcome) {
        match done {
            Completion::Shard { shard, conn, user, room, id, seq } => {
                let stored = Delivery::Committed { conn, user, room, id, seq };
                self.router.deliver(shard, stored);
            }
            Completion::Everyone { shard, frame, acked } => {
                let first = outcome == Outcome::Done;
                self.router.deliver(shard, Delivery::EveryoneCommitted { frame, acked, first })
            }
            Completion::Sequenced { home, room, reply, seq } => {
                self.router.deliver(home, Delivery::Numbered { room, reply, seq })
            }
            Completion::Room { home, room, seq } => {
                self.router.deliver(home, Delivery::RoomCommitted { room, seq })
            }
            Completion::Reply(reply) => drop(reply.send(Ok(outcome))),
            Completion::None => {}
        }
    }

    /// Deletes expired messages in bounded batches, between the batches of other writes.
    fn purge_if_due(&mut self) {
        let Some(retention) = self.tuning.retention else { return };
        if Instant::now() < self.next_purge {
            return;
        }
        let before =
            millis(SystemTime::now().checked_sub(retention).unwrap_or(SystemTime::UNIX_EPOCH));
        let purge = [Write::Purge { before, limit: PURGE_BATCH }];
        let purged = match self.try_commit(&purge) {
            Ok(outcomes) => match outcomes.first() {
                Some(Outcome::Purged(purged)) => *purged,
                _ => 0,
            },
            Err(err) => {
                tracing::warn!(%err, "retention: could not delete old messages; trying again later");
                self.engine = None;
                0
            }
        };
        if purged > 0 {
            self.counters.purged.fetch_add(purged, Relaxed);
            tracing::info!(purged, "retention: deleted messages older than {retention:?}");
        }
        // A full batch means more are due: go on after the writes that are waiting.
        let full = purged >= PURGE_BATCH as u64;
        self.next_purge =
            if full { Instant::now() } else { Instant::now() + self.tuning.retention_every };
    }
}

/// The pause before retrying a batch after its `earlier` conflicts: none after the first, then 1,
/// 2, 4 ... ms up to 64 (about 0.13 s over all the retries, on top of the database's own
/// deadlock detection).
fn conflict_pause(earlier: u32) -> Duration {
    match earlier {
        0 => Duration::ZERO,
        n => Duration::from_millis(1 << (n - 1).min(6)),
    }
}

/// After a failed attempt, whose commit may have gone through with its answer lost, a message the
/// retry finds stored may be the batch's own: it counts as new, so a chat to everyone goes out
/// (twice, at worst) rather than never.
fn own_messages_as_new(writes: &[Write], outcomes: &mut [Outcome]) {
    for (write, outcome) in writes.iter().zip(outcomes) {
        if matches!(write, Write::Message(_)) && *outcome == Outcome::Exists {
            *outcome = Outcome::Done;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conflicts_are_retried_at_once_then_after_doubling_pauses() {
        let pauses: Vec<u64> =
            (0..CONFLICT_RETRIES).map(|n| conflict_pause(n).as_millis() as u64).collect();
        assert_eq!(pauses, [0, 1, 2, 4, 8, 16, 32, 64]);
        assert_eq!(conflict_pause(40), Duration::from_millis(64), "capped");
    }

    #[test]
    fn after_a_failed_attempt_a_message_found_stored_counts_as_new() {
        let message = crate::store::NewMessage {
            id: "m".into(),
            room: Some("r".into()),
            sender: "a".into(),
            kind: "chat",
            data: r#"{"content":"m"}"#.into(),
            created_at: 0,
            metadata: None,
            stream: None,
            target: None,
        };
        let writes = [
            Write::Message(message),
            Write::Purge { before: 0, limit: 1 },
            Write::CreateRoom {
                room: crate::store::RoomInfo {
                    id: "r".into(),
                    kind: crate::store::RoomType::Public,
                    created_at: 0,
                    created_by: "a".into(),
                    metadata: None,
                },
                members: Vec::new(),
            },
        ];
        let mut outcomes = vec![Outcome::Exists, Outcome::Purged(0), Outcome::Exists];
        own_messages_as_new(&writes, &mut outcomes);
        assert_eq!(outcomes, [Outcome::Done, Outcome::Purged(0), Outcome::Exists]);
    }
}
