//! The summary as loadgen prints it, and the latency distribution as an `.hgrm` file.
//!
//! Owns: the layout of both. Must not: compute figures (the summary holds them).

use std::fmt::Write as _;
use std::path::Path;

use hdrhistogram::Histogram;

use super::Summary;

pub fn table(summary: &Summary) -> String {
    let s = summary;
    let l = &s.latency_ms;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "scenario      {} ({} conns, {} rooms, {} publishers, {} workers)",
        s.scenario, s.conns, s.rooms, s.publishers, s.workers
    );
    let _ = writeln!(
        out,
        "connect       {} ok, {} failed in {:.2} s ({:.0} conns/s)",
        s.connected, s.connect_failures, s.connect_secs, s.connects_per_sec
    );
    let _ = writeln!(
        out,
        "published     {} in {:.0} s ({:.0}/s)",
        s.published, s.duration_secs, s.publishes_per_sec
    );
    let _ = writeln!(
        out,
        "deliveries    {} expected, {} received, {} lost, {} duplicated, {} out of order",
        s.expected, s.received, s.lost, s.duplicated, s.out_of_order
    );
    if s.rooms_with_problems > 0 {
        let listed: Vec<String> =
            s.room_problems.iter().map(|p| format!("r{} (lost {})", p.room, p.lost)).collect();
        let _ = writeln!(out, "bad rooms     {}: {}", s.rooms_with_problems, listed.join(", "));
    }
    let _ = writeln!(
        out,
        "closed        {} connections closed by the broker, {} publishes failed",
        s.closed_by_server, s.publish_failures
    );
    let _ = writeln!(out, "throughput    {:.0} deliveries/s", s.deliveries_per_sec);
    let _ = writeln!(
        out,
        "latency (ms)  p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}",
        l.p50, l.p90, l.p99, l.p999, l.max
    );
    for server in s.server.iter().chain(s.instances.iter().skip(1)) {
        let _ = writeln!(
            out,
            "broker {:>6} RSS {:.1} MiB with its {} conns (baseline {:.1} MiB, {} B/conn), {:.1} MiB after the run ({} B/conn), CPU {:.0} %",
            server.pid,
            server.rss_connected_kib as f64 / 1024.0,
            server.connections,
            server.rss_baseline_kib as f64 / 1024.0,
            server.rss_per_conn_bytes,
            server.rss_end_kib as f64 / 1024.0,
            server.rss_end_per_conn_bytes,
            server.cpu_percent
        );
    }
    if s.globals_sent > 0 {
        let _ = writeln!(
            out,
            "globals       {} sent, {} deliveries expected, {} received, {} lost",
            s.globals_sent, s.global_expected, s.global_received, s.global_lost
        );
    }
    if let Some(storm) = &s.reconnect_storm {
        let _ = writeln!(
            out,
            "storm         {} back ({} failed) in {:.2} s; {} rooms whole ({} not) in {:.2} s",
            storm.reconnected,
            storm.failed,
            storm.reconnect_secs,
            storm.rooms_whole,
            storm.rooms_not_whole,
            storm.presence_secs
        );
    }
    if let Some(resume) = &s.resume {
        let _ = writeln!(out, "{}", resume.line());
    }
    let _ = writeln!(
        out,
        "cpu/delivery  broker {:.2} us, loadgen {:.2} us ({:.2} allocations)",
        s.server_cpu_us_per_delivery,
        s.loadgen_cpu_us_per_delivery,
        s.loadgen_allocations_per_delivery
    );
    if let Some(error) = &s.first_error {
        let _ = writeln!(out, "first error   {error}");
    }
    out
}

/// Writes the percentile distribution in HdrHistogram's `.hgrm` text format (values in ms).
pub fn write_hgrm(path: &Path, histogram: &Histogram<u64>) -> std::io::Result<()> {
    let mut out = String::from("       Value     Percentile TotalCount 1/(1-Percentile)\n\n");
    for step in histogram.iter_quantiles(1) {
        let quantile = step.quantile_iterated_to();
        let inverse = if quantile < 1.0 { 1.0 / (1.0 - quantile) } else { f64::INFINITY };
        let value = step.value_iterated_to() as f64 / 1000.0;
        let _ = writeln!(
            out,
            "{value:12.3} {quantile:14.12} {:10} {inverse:14.2}",
            step.count_since_last_iteration()
        );
    }
    let _ = writeln!(
        out,
        "#[Mean = {:.3}, StdDeviation = {:.3}]",
        histogram.mean() / 1000.0,
        histogram.stdev() / 1000.0
    );
    let _ = writeln!(
        out,
        "#[Max = {:.3}, Total count = {}]",
        histogram.max() as f64 / 1000.0,
        histogram.len()
    );
    std::fs::write(path, out)
}
