//! The coordinator: splits a run over worker processes, drives their phases, merges their results.
//!
//! Owns: the process layout (how many workers the open-file limit requires), the progress bars, the
//! broker's memory and CPU readings, and the final summary. Must not: open broker connections itself.

use std::process::{ExitCode, Stdio};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::plan::{Args, Plan};
use crate::report::{self, Event, ServerStats, Summary, WorkerReport};

/// File descriptors a worker keeps for itself besides its sockets.
const RESERVED_FDS: u64 = 64;
/// Ephemeral ports toward one destination from one source address (Linux default range).
const PORTS_PER_SOURCE: usize = 28_000;

/// Raises the soft open-file limit to the hard one; returns the limit now in force.
fn raise_open_files() -> u64 {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => limit,
        Err(err) => {
            eprintln!("loadgen: could not raise the open-file limit: {err}");
            rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(1024, |(soft, _)| soft)
        }
    }
}

/// How many workers the run needs, or an explanation of why it cannot work as asked.
fn plan_workers(args: &Args, plan: &Plan, fd_limit: u64) -> Result<usize, String> {
    let per_process = fd_limit.saturating_sub(RESERVED_FDS).max(1) as usize;
    let needed = plan.conns.div_ceil(per_process).max(1);
    let workers = args.workers.unwrap_or(needed);
    if plan.conns.div_ceil(workers) > per_process {
        return Err(format!(
            "{} connections over {workers} workers is {} each, but a process may open only {fd_limit} files here; \
             pass --workers {needed} or more, or raise the limit (ulimit -n, or LimitNOFILE= for a service)",
            plan.conns,
            plan.conns.div_ceil(workers),
        ));
    }
    let per_destination = plan.conns / plan.urls.len().max(1);
    let sources = plan.bind_ips.len().max(1);
    if per_destination > PORTS_PER_SOURCE * sources {
        return Err(format!(
            "{per_destination} connections to one broker need more than {sources} source address(es) can give \
             (~{PORTS_PER_SOURCE} ports each): pass --bind-ips 127.0.0.2-127.0.0.40"
        ));
    }
    Ok(workers)
}

pub async fn run(args: Args, mut plan: Plan) -> ExitCode {
    let fd_limit = raise_open_files();
    plan.workers = match plan_workers(&args, &plan, fd_limit) {
        Ok(workers) => workers,
        Err(message) => {
            eprintln!("loadgen: {message}");
            return ExitCode::from(2);
        }
    };
    let rss_baseline: Vec<Option<u64>> =
        args.server_pids.iter().map(|p| report::rss_kib(*p)).collect();
    let (events, mut incoming) = mpsc::unbounded_channel();
    let mut children = Vec::with_capacity(plan.workers);
    for worker in 0..plan.workers {
        match spawn_worker(&plan, worker, events.clone()) {
            Ok(child) => children.push(child),
            Err(err) => {
                eprintln!("loadgen: cannot start worker {worker}: {err}");
                return ExitCode::FAILURE;
            }
        }
    }
    drop(events);
    if !await_ready(&plan, &mut incoming, args.json).await {
        return ExitCode::FAILURE;
    }
    let rss_connected: Vec<Option<u64>> =
        args.server_pids.iter().map(|p| report::rss_kib(*p)).collect();
    let cpu_start: Vec<Option<f64>> =
        args.server_pids.iter().map(|p| report::cpu_secs(*p)).collect();
    let started = Instant::now();
    for child in &mut children {
        if let Some(stdin) = child.stdin.as_mut() {
            let _ = stdin.write_all(b"go\n").await;
        }
    }
    let reports = await_done(&plan, &mut incoming, args.json).await;
    let elapsed = started.elapsed().as_secs_f64();
    // Read while the workers still hold their connections open; then they may exit.
    let rss_end: Vec<Option<u64>> = args.server_pids.iter().map(|p| report::rss_kib(*p)).collect();
    for child in &mut children {
        if let Some(stdin) = child.stdin.as_mut() {
            let _ = stdin.write_all(b"exit\n").await;
        }
    }
    let (mut summary, histogram) = report::merge(&plan, &reports);
    let instances = args.server_pids.len();
    for (k, pid) in args.server_pids.iter().copied().enumerate() {
        let (Some(baseline), Some(connected)) = (rss_baseline[k], rss_connected[k]) else {
            continue;
        };
        let cpu_secs =
            cpu_start[k].and_then(|start| Some(report::cpu_secs(pid)? - start)).unwrap_or(0.0);
        let cpu_percent = 100.0 * cpu_secs / elapsed;
        // Connection i goes to --url i % instances.
        let connections = (summary.connected + (instances - 1 - k) as u64) / instances as u64;
        let end = rss_end[k].unwrap_or(0);
        let per_conn = |kib: u64| (kib.saturating_sub(baseline) * 1024) / connections.max(1);
        summary.instances.push(ServerStats {
            pid,
            connections,
            rss_baseline_kib: baseline,
            rss_connected_kib: connected,
            rss_end_kib: end,
            rss_per_conn_bytes: per_conn(connected),
            rss_end_per_conn_bytes: per_conn(end),
            cpu_percent,
            cpu_secs,
        });
    }
    let server_cpu_secs = summary.instances.iter().map(|i| i.cpu_secs).fold(0.0, |a, b| a + b);
    let deliveries = summary.received + summary.global_received;
    summary.server_cpu_us_per_delivery = report::per_delivery_us(server_cpu_secs, deliveries);
    summary.server = summary.instances.first().cloned();
    finish(&args, &summary, &histogram)
}

fn finish(args: &Args, summary: &Summary, histogram: &hdrhistogram::Histogram<u64>) -> ExitCode {
    if args.json {
        println!("{}", serde_json::to_string_pretty(summary).expect("the summary is plain data"));
    } else {
        print!("{}", report::table(summary));
    }
    if let Some(path) = &args.hgrm {
        if let Err(err) = report::write_hgrm(path, histogram) {
            eprintln!("loadgen: cannot write {}: {err}", path.display());
        }
    }
    if args.assert_clean && !summary.is_clean() {
        eprintln!(
            "loadgen: the run was not clean (connect failures, loss, duplicates or reordering)"
        );
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

fn spawn_worker(
    plan: &Plan,
    worker: usize,
    events: mpsc::UnboundedSender<(usize, Event)>,
) -> std::io::Result<Child> {
    let plan = Plan { worker, ..plan.clone() };
    let mut child = Command::new(std::env::current_exe()?)
        .arg("--worker-plan")
        .arg(serde_json::to_string(&plan).expect("the plan is plain data"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let stdout = child.stdout.take().expect("stdout is piped");
    tokio::spawn(async move {
        let mut lines = BufReader::new(stdout).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            match serde_json::from_str::<Event>(&line) {
                Ok(event) => drop(events.send((worker, event))),
                Err(_) => eprintln!("worker {worker}: {line}"),
            }
        }
    });
    Ok(child)
}

fn bar(len: u64, template: &str, quiet: bool) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template(template).expect("static template").progress_chars("=> "),
    );
    bar
}

/// Waits for every worker to finish connecting, showing progress; `false` if a worker died.
async fn await_ready(
    plan: &Plan,
    incoming: &mut mpsc::UnboundedReceiver<(usize, Event)>,
    quiet: bool,
) -> bool {
    let progress =
        bar(plan.conns as u64, "connecting [{bar:40}] {pos}/{len} {per_sec} {msg}", quiet);
    let mut settled = vec![0u64; plan.workers];
    let mut failed = vec![0u64; plan.workers];
    let mut ready = 0;
    while ready < plan.workers {
        let Some((worker, event)) = incoming.recv().await else {
            progress.abandon_with_message("a worker exited early");
            return false;
        };
        match event {
            Event::Progress { connected, failed: f }
            | Event::Ready { connected, failed: f, .. } => {
                settled[worker] = connected + f;
                failed[worker] = f;
                ready += usize::from(matches!(event, Event::Ready { .. }));
            }
            Event::Done(_) => {}
        }
        progress.set_position(settled.iter().sum());
        progress.set_message(format!("{} failed", failed.iter().sum::<u64>()));
    }
    progress.finish();
    true
}

async fn await_done(
    plan: &Plan,
    incoming: &mut mpsc::UnboundedReceiver<(usize, Event)>,
    quiet: bool,
) -> Vec<WorkerReport> {
    let seconds = plan.duration.ceil() as u64;
    let progress = bar(seconds, "running    [{bar:40}] {pos}/{len} s {msg}", quiet);
    let ticker = {
        let progress = progress.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.tick().await;
            for _ in 0..seconds {
                tick.tick().await;
                progress.inc(1);
            }
            progress.set_message("draining");
        })
    };
    let mut reports = Vec::with_capacity(plan.workers);
    while reports.len() < plan.workers {
        match incoming.recv().await {
            Some((_, Event::Done(report))) => reports.push(*report),
            Some(_) => {}
            None => break,
        }
    }
    ticker.abort();
    progress.finish_and_clear();
    reports
}
