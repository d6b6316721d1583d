//! The soak: a mixed load on the `scripts/cluster.sh` cluster for `SOAK_MINUTES` (1 by default;
//! `scripts/soak.sh MINUTES` runs it long, in release). The chaos clients chat, drop and resume
//! through nginx; beside them, other users join and leave rooms, read history and publish over
//! HTTP. Every sampling period it records each instance's RSS, open files, store queue and frames
//! queued for its connections, its CPU time, the database's size and the clients' own memory and CPU
//! (`target/soak/soak.csv`, and the RSS plotted in `target/soak/rss.svg`), and at the end each
//! instance's warnings, counted, and its messages refused `unavailable` by cause
//! (`target/soak/warnings.txt`).
//!
//! It fails if anything acked is lost or stored twice and, in a run longer than 7 minutes, if an
//! instance's memory or open files (besides its connections) grow by more than 5 % after the first
//! 5 minutes, in which the windows (recovery, dedup) fill up. The 1-minute run in the test suite
//! checks the losses only: it has no "after the warm-up".

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;
use wsbroker::metrics::UnavailableCause;

use super::cluster::Cluster;
use super::{Crowd, CLIENTS, ROOMS};
use crate::common::TestServer;

/// One sample of one instance.
#[derive(Debug, Clone, Copy)]
struct Sample {
    at_s: u64,
    rss_kib: u64,
    /// Open files that are not client connections (those come and go with the clients).
    other_files: u64,
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let line = status.lines().find(|line| line.starts_with("VmRSS:")).unwrap_or("VmRSS: 0 kB");
    line.split_whitespace().nth(1).and_then(|kib| kib.parse().ok()).unwrap_or(0)
}

/// CPU seconds `pid` has used (user and system), from `/proc/PID/stat` (in ticks of 1/100 s).
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command's `(name)`: state is the first, utime the 12th, stime the 13th.
    let fields: Vec<&str> = stat.rsplit_once(')').map_or("", |(_, rest)| rest).split(' ').collect();
    let ticks = |n: usize| fields.get(n).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(12) + ticks(13)) / 100.0
}

fn open_files(pid: u32) -> u64 {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |dir| dir.count() as u64)
}

async fn database_bytes(port: u16) -> u64 {
    let url = format!("postgres://postgres@127.0.0.1:{port}/chat");
    tokio::task::spawn_blocking(move || {
        let mut client = postgres::Client::connect(&url, postgres::NoTls).ok()?;
        let row = client.query_one("SELECT pg_database_size('chat')", &[]).ok()?;
        u64::try_from(row.get::<_, i64>(0)).ok()
    })
    .await
    .unwrap()
    .unwrap_or(0)
}

/// Users who come and go: join a room, leave it, read its history, publish into it over HTTP.
async fn side_traffic(nginx: SocketAddr, stop: Arc<AtomicBool>) -> (u64, u64) {
    let front = TestServer::attach(nginx);
    let (mut rounds, mut busy) = (0u64, 0u64);
    while !stop.load(SeqCst) {
        let room = format!("room-{}", rounds % ROOMS as u64);
        let url = format!("ws://{nginx}/ws?user=visitor-{}", rounds % 20);
        if let Ok((mut ws, _)) = tokio_tungstenite::connect_async(url).await {
            let join = json!({"type": "join", "room": "lounge", "id": "j"}).to_string();
            let leave = json!({"type": "leave", "room": "lounge", "id": "l"}).to_string();
            let _ = ws.send(Message::text(join)).await;
            let _ = ws.send(Message::text(leave)).await;
            let answered = async {
                while let Some(Ok(message)) = ws.next().await {
                    if message.to_text().is_ok_and(|text| text.contains("\"id\":\"l\"")) {
                        break;
                    }
                }
            };
            let _ = tokio::time::timeout(Duration::from_secs(5), answered).await;
            let _ = ws.close(None).await;
        }
        // 503 is the API's "busy, try later" (a full store queue, Redis away): counted, not an
        // error; anything else must succeed.
        let (status, _) = front.get(&format!("/api/v1/chat/rooms/{room}/messages?limit=50")).await;
        assert!([200, 503].contains(&status.as_u16()), "history of {room}: {status}");
        let publish = json!({"type": "chat", "data": {"content": format!("http {rounds}")}});
        let (status, _) = front.post(&format!("/api/v1/chat/rooms/{room}/messages"), publish).await;
        assert!([202, 503].contains(&status.as_u16()), "an HTTP publish into {room}: {status}");
        busy += u64::from(status == 503);
        rounds += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (rounds, busy)
}

/// RSS over time, one line per instance, as an SVG (no library: a polyline per instance).
fn plot(samples: &[Vec<Sample>]) -> String {
    let (width, height) = (720.0, 320.0);
    let last = samples.iter().flatten().map(|s| s.at_s).max().unwrap_or(1).max(1) as f64;
    let top = samples.iter().flatten().map(|s| s.rss_kib).max().unwrap_or(1).max(1) as f64 * 1.1;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"{w}\" height=\"{h}\" fill=\"white\"/>\n\
         <text x=\"50\" y=\"16\">RSS of each instance (MiB) over the soak (minutes)</text>\n",
        w = width + 60.0,
        h = height + 50.0
    );
    let x = |at: u64| 50.0 + at as f64 / last * width;
    let y = |kib: u64| 20.0 + height - kib as f64 / top * height;
    for step in 0..=4 {
        let kib = (top * f64::from(step) / 4.0) as u64;
        let (right, level, mib) = (width + 50.0, y(kib), kib as f64 / 1024.0);
        let _ = writeln!(
            svg,
            "<line x1=\"50\" x2=\"{right}\" y1=\"{level}\" y2=\"{level}\" stroke=\"#ddd\"/>\
             <text x=\"4\" y=\"{level}\">{mib:.0}</text>"
        );
    }
    let (bottom, right, minutes) = (height + 40.0, width + 30.0, last / 60.0);
    let _ = writeln!(
        svg,
        "<text x=\"50\" y=\"{bottom}\">0</text><text x=\"{right}\" y=\"{bottom}\">{minutes:.0}</text>"
    );
    for (n, (instance, colour)) in samples.iter().zip(["#1f77b4", "#d62728", "#2ca02c"]).enumerate()
    {
        let points: Vec<String> =
            instance.iter().map(|s| format!("{:.1},{:.1}", x(s.at_s), y(s.rss_kib))).collect();
        let _ = writeln!(
            svg,
            "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\" points=\"{}\"/>",
            points.join(" ")
        );
        let _ = writeln!(
            svg,
            "<text x=\"{}\" y=\"{}\" fill=\"{colour}\">instance {}</text>",
            width - 60.0,
            40 + 14 * n,
            n + 1
        );
    }
    svg.push_str("</svg>\n");
    svg
}

/// Each instance's warnings and errors, counted by what they say (the scratch directory with the
/// logs goes with the cluster): what a refused chat or a failed commit was about.
fn warnings(cluster: &Cluster) -> String {
    let mut out = String::new();
    for n in 1..=3 {
        let log = std::fs::read_to_string(cluster.home.join(format!("instance{n}.log")));
        let mut seen: std::collections::BTreeMap<String, usize> = Default::default();
        for line in log.unwrap_or_default().lines() {
            // `TIME  LEVEL target: message fields`: counted without the time.
            let Some((_, rest)) = line.split_once(' ') else { continue };
            if rest.trim_start().starts_with("WARN") || rest.trim_start().starts_with("ERROR") {
                *seen.entry(rest.trim().to_owned()).or_default() += 1;
            }
        }
        for (line, count) in seen {
            let _ = writeln!(out, "instance {n}: {count} × {line}");
        }
    }
    out
}

/// Each instance's messages refused `unavailable`, by cause (`wsbroker_unavailable_total`).
async fn unavailable(cluster: &Cluster) -> String {
    let mut out = String::new();
    for n in 1..=3 {
        let server = TestServer::attach(cluster.instance(n));
        for cause in UnavailableCause::ALL.map(UnavailableCause::as_str) {
            let series = format!("wsbroker_unavailable_total{{cause=\"{cause}\"}}");
            let count = server.metric(&series).await;
            let _ = writeln!(out, "instance {n}: {count} refused unavailable, {cause}");
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mixed_load_on_the_cluster_neither_grows_nor_loses_anything() {
    let minutes: u64 = std::env::var("SOAK_MINUTES").ok().and_then(|m| m.parse().ok()).unwrap_or(1);
    let run = Duration::from_secs(minutes * 60);
    let period = if minutes >= 10 { Duration::from_secs(60) } else { run / 12 };
    let warm_up = Duration::from_secs(300);
    let cluster = Cluster::up();
    let rooms = |n: usize| vec![format!("room-{}", n % ROOMS)];
    let crowd = Crowd::start(vec![cluster.nginx], true, (CLIENTS, CLIENTS), &rooms).await;
    let stop = Arc::new(AtomicBool::new(false));
    let side = tokio::spawn(side_traffic(cluster.nginx, Arc::clone(&stop)));

    let started = Instant::now();
    let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); 3];
    let mut csv = String::from(
        "seconds,instance,rss_kib,open_files,files_besides_connections,store_queue,queued_frames,cpu_s,database_bytes,clients_rss_kib,clients_cpu_s\n",
    );
    loop {
        let at_s = started.elapsed().as_secs();
        let database = database_bytes(cluster.postgres_port()).await;
        // The clients' own memory and CPU (this process).
        let (clients, clients_cpu) = (rss_kib(std::process::id()), cpu_seconds(std::process::id()));
        for (n, instance) in samples.iter_mut().enumerate() {
            let pid = cluster.pid(n + 1);
            let server = TestServer::attach(cluster.instance(n + 1));
            let store_queue = server.metric("wsbroker_store_queue_depth").await;
            let queued = server.metric("wsbroker_queued_frames").await;
            let connections = server.metric("wsbroker_connections_open").await;
            let fds = open_files(pid);
            let other_files = fds.saturating_sub(connections);
            let sample = Sample { at_s, rss_kib: rss_kib(pid), other_files };
            let (rss, files, cpu) = (sample.rss_kib, sample.other_files, cpu_seconds(pid));
            let _ = writeln!(
                csv,
                "{at_s},{},{rss},{fds},{files},{store_queue},{queued},{cpu:.1},{database},{clients},{clients_cpu:.1}",
                n + 1
            );
            instance.push(sample);
        }
        if started.elapsed() >= run {
            break;
        }
        tokio::time::sleep(period).await;
    }
    // The samples are kept before the end's checks, which read every stored message back.
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/soak");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("soak.csv"), &csv).unwrap();
    std::fs::write(out.join("rss.svg"), plot(&samples)).unwrap();
    let warned = warnings(&cluster) + &unavailable(&cluster).await;
    std::fs::write(out.join("warnings.txt"), warned).unwrap();
    stop.store(true, SeqCst);
    let (rounds, busy) = side.await.unwrap();
    let front = TestServer::attach(cluster.nginx);
    let summary = crowd.wind_down(&front, (&rooms, ROOMS)).await;
    println!("soak of {minutes} min: {rounds} visitor rounds ({busy} HTTP publishes answered 503); {summary}\n{csv}");

    let long_enough = minutes > 7;
    for (n, instance) in samples.iter().enumerate().filter(|_| long_enough) {
        let after: Vec<&Sample> = instance.iter().filter(|s| s.at_s >= warm_up.as_secs()).collect();
        let base = after.first().expect("samples after the warm-up");
        let rss = after.iter().map(|s| s.rss_kib).max().unwrap();
        let files = after.iter().map(|s| s.other_files).max().unwrap();
        let instance = n + 1;
        assert!(
            rss * 100 <= base.rss_kib * 105,
            "instance {instance}: RSS grew from {} to {rss} KiB",
            base.rss_kib
        );
        assert!(
            files * 100 <= base.other_files * 105 + 200,
            "instance {instance}: files besides connections grew from {} to {files}",
            base.other_files
        );
    }
    let first: Vec<&String> = summary.violations.iter().take(5).collect();
    assert!(first.is_empty(), "once each, in seq order: {first:?}");
    assert_eq!(summary.lost_acked, 0, "every acked message reached every member: {summary}");
    assert_eq!(summary.unstored, 0, "every acked message is stored once: {summary}");
}
