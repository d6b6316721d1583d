//! Counters and the fan-out latency histogram, rendered as Prometheus text at `/metrics`.
//!
//! Owns: one cache-padded block of counters per shard, so the cores never write the same cache line;
//! the blocks are summed only when scraped. May be touched by: the shard it belongs to and the sessions
//! pinned to that shard (relaxed atomic adds). Must not: influence behaviour; it only counts.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_utils::CachePadded;

mod http;
mod labelled;

pub use http::HttpCounters;
pub use labelled::{EndCause, Labelled, UnavailableCause};

/// Upper bounds of the fan-out latency buckets, in microseconds.
const LATENCY_BOUNDS_US: [u64; 14] = [
    25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 1_000_000,
];

/// A Prometheus histogram with fixed buckets, updated with relaxed atomics.
#[derive(Debug, Default)]
pub struct LatencyHistogram {
    buckets: [AtomicU64; LATENCY_BOUNDS_US.len()],
    count: AtomicU64,
    sum_us: AtomicU64,
}

impl LatencyHistogram {
    pub fn record(&self, latency: Duration) {
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        if let Some(bucket) = LATENCY_BOUNDS_US.iter().position(|bound| us <= *bound) {
            self.buckets[bucket].fetch_add(1, Relaxed);
        }
        self.count.fetch_add(1, Relaxed);
        self.sum_us.fetch_add(us, Relaxed);
    }
}

/// What one shard and its sessions count.
#[derive(Debug, Default)]
pub struct ShardCounters {
    pub connections_opened: AtomicU64,
    pub connections_closed: AtomicU64,
    pub frames_in: AtomicU64,
    pub frames_out: AtomicU64,
    pub messages_dropped: AtomicU64,
    pub slow_consumer_evictions: AtomicU64,
    pub idle_evictions: AtomicU64,
    /// Lane writes at a batch's end that the kernel took only in part (the rest stayed queued).
    pub partial_writes: AtomicU64,
    /// From a publish being accepted to its frame sitting in every local recipient's queue.
    pub fanout_latency: LatencyHistogram,
    /// Chats accepted and refused, connection ends: by label.
    pub labelled: Labelled,
}

/// The Redis relay's counters (written by the relay thread, and by publishers for drops).
#[derive(Debug, Default)]
pub struct RelayCounters {
    pub published: AtomicU64,
    pub received: AtomicU64,
    pub dropped: AtomicU64,
    /// 1 while Redis is reachable (cluster mode only).
    pub redis_up: AtomicU64,
    /// Connections to Redis made again after it was lost.
    pub reconnects: AtomicU64,
}

/// The store's counters (written by the writer, the readers and the handles).
#[derive(Debug, Default)]
pub struct StoreCounters {
    /// 1 while the database takes writes.
    pub up: AtomicU64,
    /// Writes handed to the writer and not yet taken into a batch.
    pub queued: AtomicU64,
    /// Writes committed.
    pub committed: AtomicU64,
    /// Transactions committed.
    pub batches: AtomicU64,
    /// Commits that failed (each is retried).
    pub failures: AtomicU64,
    /// Batches the database aborted as a deadlock's victim or could not serialize (retried at once,
    /// the store staying up).
    pub conflicts: AtomicU64,
    /// Writes refused: the queue was full or the database down.
    pub refused: AtomicU64,
    /// Messages deleted by retention.
    pub purged: AtomicU64,
    pub commit_latency: LatencyHistogram,
    pub read_latency: LatencyHistogram,
}

/// What a scrape needs to know of the instance besides its counters.
#[derive(Debug, Clone, Copy)]
pub struct Scrape {
    /// Rooms with members here (the directory's count).
    pub rooms: usize,
    /// Frames waiting in the connections' outboxes (asked of the shards); `None` when a shard did
    /// not answer in time (the gauge is left out: a scrape never waits on a stuck shard).
    pub queued: Option<u64>,
    /// Whether `/readyz` answers 200.
    pub ready: bool,
    /// Cluster mode: it uses Redis.
    pub redis: bool,
    /// It has a store.
    pub store: bool,
}

/// Picks one counter out of a shard's block.
type CounterField = fn(&ShardCounters) -> &AtomicU64;

pub fn incr(counter: &AtomicU64) {
    counter.fetch_add(1, Relaxed);
}

#[derive(Debug)]
pub struct Metrics {
    shards: Box<[CachePadded<ShardCounters>]>,
    /// Shared with the Redis broker, which counts what it drops.
    pub relay: Arc<RelayCounters>,
    /// Shared with the store's writer, readers and handles.
    pub store: Arc<StoreCounters>,
    /// Written by the HTTP handlers.
    pub http: HttpCounters,
}

impl Metrics {
    pub fn new(shard_count: usize) -> Self {
        let shards = (0..shard_count).map(|_| CachePadded::new(ShardCounters::default())).collect();
        Self { shards, relay: Arc::default(), store: Arc::default(), http: HttpCounters::default() }
    }

    pub fn shard(&self, shard: usize) -> &ShardCounters {
        &self.shards[shard]
    }

    fn sum(&self, field: impl Fn(&ShardCounters) -> &AtomicU64) -> u64 {
        self.shards.iter().map(|s| field(s).load(Relaxed)).sum()
    }

    pub fn connections_open(&self) -> u64 {
        let opened = self.sum(|s| &s.connections_opened);
        opened.saturating_sub(self.sum(|s| &s.connections_closed))
    }

    /// The Prometheus text exposition of every counter.
    pub fn render(&self, scrape: Scrape) -> String {
        let Scrape { rooms, queued, ready, redis, store } = scrape;
        let mut out = String::with_capacity(4096);
        let gauges = [
            ("wsbroker_connections_open", "Connections open now.", Some(self.connections_open())),
            (
                "wsbroker_rooms",
                "Rooms with at least one member on this instance.",
                Some(rooms as u64),
            ),
            (
                "wsbroker_queued_frames",
                "Frames waiting in the connections' outboxes for their sockets.",
                queued,
            ),
        ];
        let counters: [(&str, &str, CounterField); 8] = [
            ("wsbroker_connections_opened_total", "Connections accepted.", |s| {
                &s.connections_opened
            }),
            ("wsbroker_connections_closed_total", "Connections closed, for any reason.", |s| {
                &s.connections_closed
            }),
            ("wsbroker_frames_in_total", "Data frames received from clients.", |s| &s.frames_in),
            ("wsbroker_frames_out_total", "Frames handed to client sockets.", |s| &s.frames_out),
            (
                "wsbroker_messages_dropped_total",
                "Frames not queued: the recipient was full or gone.",
                |s| &s.messages_dropped,
            ),
            (
                "wsbroker_slow_consumer_evictions_total",
                "Connections closed 1008 for a full queue.",
                |s| &s.slow_consumer_evictions,
            ),
            (
                "wsbroker_idle_evictions_total",
                "Connections closed for no traffic within the idle timeout.",
                |s| &s.idle_evictions,
            ),
            (
                "wsbroker_partial_writes_total",
                "Fast-path writes the kernel took in part; the connection's session writes the rest.",
                |s| &s.partial_writes,
            ),
        ];
        for (name, help, value) in gauges {
            let Some(value) = value else { continue };
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}");
        }
        for (name, help, field) in counters {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                self.sum(field)
            );
        }
        self.render_relay(&mut out, redis);
        self.render_store(&mut out, store);
        self.render_latency(&mut out);
        self.render_labelled(&mut out, ready);
        self.http.render(&mut out);
        crate::process::Process::read().render(&mut out);
        out
    }

    /// `present`: the instance has a store; without one there is no `wsbroker_store_up`, so no
    /// alert takes a broker that stores nothing for one whose store is down.
    fn render_store(&self, out: &mut String, present: bool) {
        let store = &self.store;
        if present {
            let up =
                [("wsbroker_store_up", "gauge", "1 while the database takes writes.", &store.up)];
            render_values(out, &up);
        }
        let lines = [
            (
                "wsbroker_store_queue_depth",
                "gauge",
                "Writes waiting for the writer.",
                &store.queued,
            ),
            ("wsbroker_store_writes_total", "counter", "Writes committed.", &store.committed),
            ("wsbroker_store_batches_total", "counter", "Transactions committed.", &store.batches),
            (
                "wsbroker_store_failures_total",
                "counter",
                "Commits that failed and were retried.",
                &store.failures,
            ),
            (
                "wsbroker_store_conflicts_total",
                "counter",
                "Batches the database aborted as a deadlock's victim, retried at once.",
                &store.conflicts,
            ),
            (
                "wsbroker_store_refused_total",
                "counter",
                "Writes refused: queue full or database down.",
                &store.refused,
            ),
            (
                "wsbroker_store_purged_total",
                "counter",
                "Messages deleted by retention.",
                &store.purged,
            ),
        ];
        render_values(out, &lines);
        let histograms = [
            ("wsbroker_store_commit_seconds", "Time to commit one batch.", &store.commit_latency),
            ("wsbroker_store_read_seconds", "Time to answer one read.", &store.read_latency),
        ];
        for (name, help, histogram) in histograms {
            render_histogram(out, name, help, |field| field(histogram).load(Relaxed));
        }
    }

    /// `clustered`: the instance uses Redis; a standalone one has no `wsbroker_redis_up`.
    fn render_relay(&self, out: &mut String, clustered: bool) {
        let relay = &self.relay;
        if clustered {
            let up =
                [("wsbroker_redis_up", "gauge", "1 while Redis is reachable.", &relay.redis_up)];
            render_values(out, &up);
        }
        let lines = [
            (
                "wsbroker_redis_reconnects_total",
                "counter",
                "Connections to Redis made again after it was lost (cluster mode).",
                &relay.reconnects,
            ),
            (
                "wsbroker_relay_published_total",
                "counter",
                "Messages published to Redis.",
                &relay.published,
            ),
            (
                "wsbroker_relay_received_total",
                "counter",
                "Messages from other instances fanned out here.",
                &relay.received,
            ),
            (
                "wsbroker_relay_dropped_total",
                "counter",
                "Messages not sent to Redis: the relay queue was full or Redis away.",
                &relay.dropped,
            ),
        ];
        render_values(out, &lines);
    }

    fn render_latency(&self, out: &mut String) {
        let name = "wsbroker_fanout_latency_seconds";
        let help = "Publish accepted to frame queued for every local recipient.";
        render_histogram(out, name, help, |field| self.sum(|s| field(&s.fanout_latency)));
    }
}

/// Writes one gauge or counter per `(name, kind, help, value)`.
fn render_values(out: &mut String, lines: &[(&str, &str, &str, &AtomicU64)]) {
    for (name, kind, help, value) in lines {
        let value = value.load(Relaxed);
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}");
    }
}

/// Picks one counter out of a histogram.
type HistogramField<'a> = &'a dyn Fn(&LatencyHistogram) -> &AtomicU64;

/// Writes a histogram; `value` reads one of its counters (summed over shards where there are several).
fn render_histogram(
    out: &mut String,
    name: &str,
    help: &str,
    value: impl Fn(HistogramField<'_>) -> u64,
) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
    histogram_lines(out, name, "", value);
}

/// A histogram's series, each with `labels` (`a="x",b="y"`, or empty) besides `le`.
fn histogram_lines(
    out: &mut String,
    name: &str,
    labels: &str,
    value: impl Fn(HistogramField<'_>) -> u64,
) {
    let (with, bare) = if labels.is_empty() {
        (String::new(), String::new())
    } else {
        (format!("{labels},"), format!("{{{labels}}}"))
    };
    let mut cumulative = 0;
    for (index, bound) in LATENCY_BOUNDS_US.iter().enumerate() {
        cumulative += value(&|h| &h.buckets[index]);
        let le = *bound as f64 / 1e6;
        let _ = writeln!(out, "{name}_bucket{{{with}le=\"{le}\"}} {cumulative}");
    }
    let count = value(&|h| &h.count);
    let sum_seconds = value(&|h| &h.sum_us) as f64 / 1e6;
    let _ = writeln!(
        out,
        "{name}_bucket{{{with}le=\"+Inf\"}} {count}\n{name}_sum{bare} {sum_seconds}\n{name}_count{bare} {count}"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_of_all_shards_are_summed_and_histogram_is_cumulative() {
        let metrics = Metrics::new(2);
        incr(&metrics.shard(0).connections_opened);
        incr(&metrics.shard(1).connections_opened);
        incr(&metrics.shard(1).connections_closed);
        metrics.shard(0).fanout_latency.record(Duration::from_micros(40));
        metrics.shard(1).fanout_latency.record(Duration::from_millis(3));
        metrics.shard(1).fanout_latency.record(Duration::from_secs(5));
        let scrape = Scrape { rooms: 7, queued: Some(0), ready: true, redis: false, store: false };
        let text = metrics.render(scrape);
        assert!(!text.contains("wsbroker_redis_up") && !text.contains("wsbroker_store_up"));
        assert!(text.contains("wsbroker_connections_open 1\n"), "{text}");
        assert!(text.contains("wsbroker_rooms 7\n"));
        assert!(text.contains("wsbroker_connections_opened_total 2\n"));
        assert!(
            text.contains("wsbroker_fanout_latency_seconds_bucket{le=\"0.00005\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("wsbroker_fanout_latency_seconds_bucket{le=\"0.005\"} 2\n"));
        assert!(text.contains("wsbroker_fanout_latency_seconds_bucket{le=\"+Inf\"} 3\n"));
        assert!(text.contains("wsbroker_queued_frames 0\n"));
        let scrape = Scrape { queued: None, ..scrape };
        let text = metrics.render(scrape);
        assert!(!text.contains("wsbroker_queued_frames"), "a shard did not answer: left out");
        assert!(text.contains("wsbroker_connections_open 1\n"), "the rest is there");
    }
}
