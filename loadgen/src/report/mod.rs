//! What workers report, how the coordinator merges it, and how the summary is shown.
//!
//! Owns: the line protocol between worker and coordinator (`Event`), the merged `Summary`, and
//! reading a process's memory and CPU from `/proc`; its `text` part shows the summary as a table
//! and writes the `.hgrm` file.

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::plan::Plan;

mod resume;
mod text;

pub use resume::ResumeReport;
pub use text::{table, write_hgrm};

/// A line a worker prints on stdout.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "lowercase")]
pub enum Event {
    Progress { connected: u64, failed: u64 },
    Ready { connected: u64, failed: u64, connect_secs: f64 },
    Done(Box<WorkerReport>),
}

/// What one room saw: deliveries expected (publishes × members), received, and the bad ones.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomCounts {
    pub expected: u64,
    pub received: u64,
    pub duplicated: u64,
    pub out_of_order: u64,
}

impl RoomCounts {
    pub fn lost(&self) -> u64 {
        self.expected.saturating_sub(self.received - self.duplicated)
    }

    fn add(&mut self, other: &RoomCounts) {
        self.expected += other.expected;
        self.received += other.received;
        self.duplicated += other.duplicated;
        self.out_of_order += other.out_of_order;
    }
}

/// A room where something went wrong, as the summary lists it.
#[derive(Debug, Serialize)]
pub struct RoomProblem {
    pub room: usize,
    pub expected: u64,
    pub received: u64,
    pub lost: u64,
    pub duplicated: u64,
    pub out_of_order: u64,
}

/// One worker's counts after a run.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct WorkerReport {
    pub connected: u64,
    pub failed: u64,
    pub connect_secs: f64,
    pub sent: u64,
    pub expected: u64,
    pub received: u64,
    pub duplicated: u64,
    pub out_of_order: u64,
    pub closed: u64,
    pub publish_failures: u64,
    pub global_sent: u64,
    pub global_received: u64,
    /// The same counts per room, indexed by room.
    pub rooms: Vec<RoomCounts>,
    /// Recorded latencies in microseconds, as `(value, count)` pairs.
    pub histogram: Vec<(u64, u64)>,
    pub first_error: Option<String>,
    /// This worker's CPU time (user + system) from `go` to its report, in seconds.
    pub cpu_secs: f64,
    /// The `reconnect-storm` scenario's figures.
    pub storm: Option<StormReport>,
    /// Resume mode's figures (`--resume`).
    pub resume: Option<ResumeReport>,
    /// Heap allocations from `go` to the report.
    pub allocations: u64,
}

/// What one worker's storm measured.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct StormReport {
    pub reconnected: u64,
    pub failed: u64,
    /// From the drop until every connection of this worker was open again.
    pub reconnect_secs: f64,
    /// Rooms whose presence held every member again (checked by this worker), and those that never
    /// did within the limit.
    pub rooms_whole: u64,
    pub rooms_not_whole: u64,
    /// From the drop until every room this worker checks was whole.
    pub presence_secs: f64,
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Default, Serialize)]
pub struct Latency {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

/// The broker process, as `/proc` shows it.
#[derive(Debug, Default, Clone, Serialize)]
pub struct ServerStats {
    pub pid: u32,
    /// The connections loadgen opened to this instance.
    pub connections: u64,
    pub rss_baseline_kib: u64,
    pub rss_connected_kib: u64,
    /// After the run, once every delivery is in, with every connection still open.
    pub rss_end_kib: u64,
    /// (RSS with every connection open - RSS before any) / this instance's connections.
    pub rss_per_conn_bytes: u64,
    /// The same after the run: what the load left behind per connection.
    pub rss_end_per_conn_bytes: u64,
    /// CPU time over the publishing phase / its wall time (100 = one core).
    pub cpu_percent: f64,
    /// CPU time over the publishing phase, in seconds.
    pub cpu_secs: f64,
}

#[derive(Debug, Default, Serialize)]
pub struct Summary {
    pub scenario: String,
    pub conns: usize,
    pub rooms: usize,
    pub publishers: usize,
    pub workers: usize,
    pub connected: u64,
    pub connect_failures: u64,
    pub connect_secs: f64,
    pub connects_per_sec: f64,
    pub duration_secs: f64,
    pub published: u64,
    pub publishes_per_sec: f64,
    pub expected: u64,
    pub received: u64,
    pub lost: u64,
    pub duplicated: u64,
    pub out_of_order: u64,
    /// Connections the broker closed during the run (slow consumers, timeouts).
    pub closed_by_server: u64,
    pub publish_failures: u64,
    /// Rooms with any loss, duplicate or reordering, and (the first 20 of) them.
    pub rooms_with_problems: usize,
    pub room_problems: Vec<RoomProblem>,
    pub deliveries_per_sec: f64,
    pub latency_ms: Latency,
    /// The first (or only) instance.
    pub server: Option<ServerStats>,
    /// Every instance given with `--server-pid`, in order (the first is `server`).
    pub instances: Vec<ServerStats>,
    /// Global messages sent; deliveries of them expected (sent × connections), received and lost.
    pub globals_sent: u64,
    pub global_expected: u64,
    pub global_received: u64,
    pub global_lost: u64,
    /// The `reconnect-storm` figures over every worker (the times are the slowest worker's).
    pub reconnect_storm: Option<StormReport>,
    /// Resume mode's figures over every worker (`--resume`).
    pub resume: Option<ResumeReport>,
    /// Every instance's CPU time over the publishing phase per delivery received (globals
    /// included), in µs.
    pub server_cpu_us_per_delivery: f64,
    /// loadgen's own (its workers') CPU time over the same phase per delivery received, in µs.
    pub loadgen_cpu_us_per_delivery: f64,
    /// loadgen's heap allocations over the same phase per delivery received (publishing included).
    pub loadgen_allocations_per_delivery: f64,
    pub first_error: Option<String>,
}

impl Summary {
    pub fn is_clean(&self) -> bool {
        let broken = self.connect_failures + self.closed_by_server + self.publish_failures;
        let storm_whole = self.reconnect_storm.as_ref().is_none_or(|storm| {
            storm.reconnected == self.connected
                && storm.rooms_whole == self.rooms.min(self.conns) as u64
        });
        broken == 0
            && storm_whole
            && self.resume.as_ref().is_none_or(ResumeReport::is_clean)
            && self.global_lost == 0
            && self.lost == 0
            && self.duplicated == 0
            && self.out_of_order == 0
    }
}

pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("static histogram bounds are valid")
}

/// Merges the workers' reports into one summary and one histogram.
pub fn merge(plan: &Plan, reports: &[WorkerReport]) -> (Summary, Histogram<u64>) {
    let mut histogram = new_histogram();
    for (value, count) in reports.iter().flat_map(|r| r.histogram.iter()) {
        histogram.saturating_record_n(*value, *count);
    }
    let sum = |field: fn(&WorkerReport) -> u64| reports.iter().map(field).sum::<u64>();
    let connect_secs = reports.iter().map(|r| r.connect_secs).fold(0.0, f64::max);
    let connected = sum(|r| r.connected);
    let (expected, received, duplicated) =
        (sum(|r| r.expected), sum(|r| r.received), sum(|r| r.duplicated));
    let ms = |quantile: f64| histogram.value_at_quantile(quantile) as f64 / 1000.0;
    let mut rooms = vec![RoomCounts::default(); plan.rooms];
    for report in reports {
        for (total, counts) in rooms.iter_mut().zip(&report.rooms) {
            total.add(counts);
        }
    }
    let problems: Vec<RoomProblem> = (rooms.iter().enumerate())
        .filter(|(_, c)| c.lost() + c.duplicated + c.out_of_order > 0)
        .map(|(room, c)| RoomProblem {
            room,
            expected: c.expected,
            received: c.received,
            lost: c.lost(),
            duplicated: c.duplicated,
            out_of_order: c.out_of_order,
        })
        .collect();
    let summary = Summary {
        scenario: plan.scenario.clone(),
        conns: plan.conns,
        rooms: plan.rooms,
        publishers: plan.publishers,
        workers: reports.len(),
        connected,
        connect_failures: sum(|r| r.failed),
        connect_secs,
        connects_per_sec: if connect_secs > 0.0 { connected as f64 / connect_secs } else { 0.0 },
        duration_secs: plan.duration,
        published: sum(|r| r.sent),
        publishes_per_sec: sum(|r| r.sent) as f64 / plan.duration,
        expected,
        received,
        lost: expected.saturating_sub(received - duplicated),
        duplicated,
        out_of_order: sum(|r| r.out_of_order),
        closed_by_server: sum(|r| r.closed),
        publish_failures: sum(|r| r.publish_failures),
        rooms_with_problems: problems.len(),
        room_problems: problems.into_iter().take(20).collect(),
        deliveries_per_sec: received as f64 / plan.duration,
        latency_ms: Latency {
            p50: ms(0.5),
            p90: ms(0.9),
            p99: ms(0.99),
            p999: ms(0.999),
            max: histogram.max() as f64 / 1000.0,
        },
        server: None,
        instances: Vec::new(),
        globals_sent: sum(|r| r.global_sent),
        global_expected: sum(|r| r.global_sent) * connected,
        global_received: sum(|r| r.global_received),
        global_lost: (sum(|r| r.global_sent) * connected)
            .saturating_sub(sum(|r| r.global_received)),
        reconnect_storm: merge_storms(reports),
        resume: resume::merge(
            &reports.iter().filter_map(|r| r.resume.as_ref()).collect::<Vec<_>>(),
        ),
        loadgen_allocations_per_delivery: sum(|r| r.allocations) as f64
            / (received + sum(|r| r.global_received)).max(1) as f64,
        server_cpu_us_per_delivery: 0.0,
        loadgen_cpu_us_per_delivery: per_delivery_us(
            reports.iter().map(|r| r.cpu_secs).fold(0.0, |a, b| a + b),
            received + sum(|r| r.global_received),
        ),
        first_error: reports.iter().find_map(|r| r.first_error.clone()),
    };
    (summary, histogram)
}

fn merge_storms(reports: &[WorkerReport]) -> Option<StormReport> {
    let storms: Vec<&StormReport> = reports.iter().filter_map(|r| r.storm.as_ref()).collect();
    if storms.is_empty() {
        return None;
    }
    let sum = |field: fn(&StormReport) -> u64| storms.iter().map(|s| field(s)).sum::<u64>();
    let slowest =
        |field: fn(&StormReport) -> f64| storms.iter().map(|s| field(s)).fold(0.0, f64::max);
    Some(StormReport {
        reconnected: sum(|s| s.reconnected),
        failed: sum(|s| s.failed),
        reconnect_secs: slowest(|s| s.reconnect_secs),
        rooms_whole: sum(|s| s.rooms_whole),
        rooms_not_whole: sum(|s| s.rooms_not_whole),
        presence_secs: slowest(|s| s.presence_secs),
    })
}

/// `cpu_secs` spread over `deliveries`, in µs each (0 without deliveries).
pub fn per_delivery_us(cpu_secs: f64, deliveries: u64) -> f64 {
    if deliveries == 0 {
        return 0.0;
    }
    cpu_secs * 1e6 / deliveries as f64
}

/// Resident set size of `pid` in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// User + system CPU time of `pid` in seconds (`/proc` counts in USER_HZ, 100 per second on Linux).
pub fn cpu_secs(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merging_adds_counts_and_histograms_and_derives_loss() {
        let plan = Plan {
            duration: 2.0,
            ..crate::plan::Plan::from_args(&clap::Parser::parse_from(["loadgen"])).unwrap()
        };
        let worker = |received, duplicated, latency_us| WorkerReport {
            connected: 5,
            connect_secs: 0.5,
            sent: 10,
            expected: 50,
            received,
            duplicated,
            histogram: vec![(latency_us, received)],
            cpu_secs: 0.49,
            ..WorkerReport::default()
        };
        let room = |expected, received, duplicated| RoomCounts {
            expected,
            received,
            duplicated,
            out_of_order: 0,
        };
        let mut first = worker(50, 0, 100);
        first.rooms = vec![room(25, 25, 0), room(25, 25, 0)];
        let mut second = worker(48, 1, 3000);
        second.rooms = vec![room(25, 25, 0), room(25, 23, 1)];
        let (summary, histogram) = merge(&Plan { rooms: 2, ..plan.clone() }, &[first, second]);
        assert_eq!(summary.rooms_with_problems, 1);
        assert_eq!((summary.room_problems[0].room, summary.room_problems[0].lost), (1, 3));
        assert_eq!(
            (summary.expected, summary.received, summary.lost, summary.duplicated),
            (100, 98, 3, 1)
        );
        assert_eq!(summary.deliveries_per_sec, 49.0);
        assert!((summary.loadgen_cpu_us_per_delivery - 10_000.0).abs() < 0.01, "0.98 s over 98");
        assert_eq!(histogram.len(), 98);
        assert!((summary.latency_ms.p99 - 3.0).abs() < 0.01, "{}", summary.latency_ms.p99);
        assert!(!summary.is_clean());
        let closed = WorkerReport { closed: 1, ..WorkerReport::default() };
        let (summary, _) = merge(&plan, &[closed]);
        assert_eq!(summary.closed_by_server, 1);
        assert!(!summary.is_clean(), "a connection the broker closed is not a clean run");
    }

    #[test]
    fn proc_readings_of_this_process_are_plausible() {
        let pid = std::process::id();
        assert!(rss_kib(pid).unwrap() > 100);
        assert!(cpu_secs(pid).unwrap() >= 0.0);
    }
}
