//! What a run does: the flags, the scenario presets, and how connections are assigned.
//!
//! Owns: the deterministic assignment of connection `i` to its worker, room, URL, source address and
//! publisher role. Workers and the coordinator compute the same answers from the same `Plan`.

use std::net::{IpAddr, Ipv4Addr};

use clap::{Parser, ValueEnum};
use serde::{Deserialize, Serialize};

/// A named preset; explicit flags override what it sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
pub enum Scenario {
    /// 10,000 connections, 100 rooms of 100, 100 publishers, 1,000 publishes/s, 60 s.
    #[value(name = "fanout-10k")]
    Fanout10k,
    /// 5,000 connections in one room, 1 publisher, 40 publishes/s, 60 s.
    #[value(name = "broadcast-5k")]
    Broadcast5k,
    /// 19,000 idle connections in 1,000 rooms, connected as fast as possible, held 10 s.
    #[value(name = "idle-19k")]
    Idle19k,
    /// 19,000 connections in 1,000 rooms that all drop at once and reconnect as fast as they can;
    /// reports the time until all are back and every room's presence holds all its members.
    #[value(name = "reconnect-storm")]
    ReconnectStorm,
    /// A few hundred connections for a few seconds: the CI smoke test.
    Smoke,
}

/// What loadgen runs besides a load run.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Command {
    /// A bare one-thread epoll server (the room in the URL, chat fanned out to it, nothing else):
    /// the reference for the CPU a delivery costs on this machine.
    ReferenceServer {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8090")]
        listen: std::net::SocketAddr,
    },
}

/// Load generator for wsbroker.
#[derive(Debug, Clone, Parser)]
#[command(name = "loadgen", about)]
pub struct Args {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Broker WebSocket URL; repeat to spread connections over several brokers.
    #[arg(long = "url", default_value = "ws://127.0.0.1:8080/ws")]
    pub urls: Vec<String>,
    /// A preset; other flags override it.
    #[arg(long, value_enum)]
    pub scenario: Option<Scenario>,
    /// Connections in all.
    #[arg(long)]
    pub conns: Option<usize>,
    /// Rooms; connections are spread evenly (connection i joins room i mod rooms).
    #[arg(long)]
    pub rooms: Option<usize>,
    /// Connections that publish (one per room first, round robin).
    #[arg(long)]
    pub publishers: Option<usize>,
    /// Publishes per second over all publishers, paced evenly.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Seconds of publishing (or of holding, without publishers).
    #[arg(long)]
    pub duration: Option<f64>,
    /// Global messages (no room: to every connection) sent over the run from one extra connection;
    /// each must reach every connection once.
    #[arg(long, default_value_t = 0)]
    pub globals: u64,
    /// Each connection that does not publish sends `typing` this often (seconds; starts and stops
    /// alternating, staggered over the period); 0: no typing traffic.
    #[arg(long, default_value_t = 0.0)]
    pub typing_every: f64,
    /// Bytes of `data.content` in each message.
    #[arg(long)]
    pub payload: Option<usize>,
    /// New connections per second over all workers; 0 for as fast as possible.
    #[arg(long)]
    pub connect_rate: Option<f64>,
    /// Source addresses to rotate, e.g. 127.0.0.2-127.0.0.40, for more than ~28k connections.
    #[arg(long, value_parser = parse_ip_range)]
    pub bind_ips: Option<IpRange>,
    /// Worker processes [default: as many as the open-file limit requires].
    #[arg(long)]
    pub workers: Option<usize>,
    /// The broker's pid, to report its memory and CPU; one per `--url`, in the same order, for
    /// several instances (each is reported with its own connection count).
    #[arg(long = "server-pid")]
    pub server_pids: Vec<u32>,
    /// Write the latency percentile distribution (HdrHistogram .hgrm text) to this file.
    #[arg(long)]
    pub hgrm: Option<std::path::PathBuf>,
    /// Print the summary as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Print the resolved plan (presets and flags applied) as JSON and exit.
    #[arg(long)]
    pub plan: bool,
    /// Clients come back as the client libraries do: a connection the broker closes during the run
    /// reconnects after a jittered backoff and resumes its room with `since`; publishers' chats
    /// carry ids, and each one without an ack is sent again (for rolling restarts behind a load
    /// balancer: the broker's closes are then not failures, and a delivery is expected per ack).
    #[arg(long)]
    pub resume: bool,
    /// Exit 1 when anything was lost, duplicated, reordered, or failed to connect.
    #[arg(long)]
    pub assert_clean: bool,
    /// Internal: run as worker N of a run, taking the plan as JSON on this flag.
    #[arg(long, hide = true)]
    pub worker_plan: Option<String>,
}

/// A fully resolved run, shared with the workers as JSON.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Plan {
    pub scenario: String,
    pub urls: Vec<String>,
    pub conns: usize,
    pub rooms: usize,
    pub publishers: usize,
    pub rate: f64,
    pub duration: f64,
    pub payload: usize,
    pub connect_rate: f64,
    pub bind_ips: Vec<IpAddr>,
    pub workers: usize,
    pub worker: usize,
    /// Every connection drops at once after `go` and reconnects (the `reconnect-storm` scenario).
    pub reconnect_storm: bool,
    /// Global messages sent over the run (by worker 0, from one extra connection in no room).
    pub globals: u64,
    /// Seconds between two `typing` frames of each connection that does not publish (0: none).
    pub typing_every: f64,
    /// Connections resume after the broker closes them (`--resume`).
    pub resume: bool,
    /// This run's name (its start in ms, base 36): in the ids of resumable chats, so that two runs
    /// against one store never send the same id (the broker would take the second for a resend).
    pub run: String,
}

struct Preset {
    conns: usize,
    rooms: usize,
    publishers: usize,
    rate: f64,
    duration: f64,
}

fn preset(scenario: Option<Scenario>) -> Preset {
    let p = |conns, rooms, publishers, rate, duration| Preset {
        conns,
        rooms,
        publishers,
        rate,
        duration,
    };
    match scenario {
        Some(Scenario::Fanout10k) => p(10_000, 100, 100, 1_000.0, 60.0),
        Some(Scenario::Broadcast5k) => p(5_000, 1, 1, 40.0, 60.0),
        Some(Scenario::Idle19k) => p(19_000, 1_000, 0, 0.0, 10.0),
        Some(Scenario::ReconnectStorm) => p(19_000, 1_000, 0, 0.0, 1.0),
        Some(Scenario::Smoke) => p(300, 6, 6, 300.0, 3.0),
        None => p(100, 10, 10, 100.0, 10.0),
    }
}

impl Plan {
    pub fn from_args(args: &Args) -> Result<Self, String> {
        let preset = preset(args.scenario);
        let name = args
            .scenario
            .and_then(|s| s.to_possible_value())
            .map_or("custom".into(), |v| v.get_name().into());
        let plan = Self {
            scenario: name,
            urls: args.urls.clone(),
            conns: args.conns.unwrap_or(preset.conns),
            rooms: args.rooms.unwrap_or(preset.rooms).max(1),
            publishers: args.publishers.unwrap_or(preset.publishers),
            rate: args.rate.unwrap_or(preset.rate),
            duration: args.duration.unwrap_or(preset.duration),
            payload: args.payload.unwrap_or(64),
            connect_rate: args.connect_rate.unwrap_or(0.0),
            bind_ips: args.bind_ips.clone().map(|range| range.0).unwrap_or_default(),
            workers: 1,
            worker: 0,
            reconnect_storm: args.scenario == Some(Scenario::ReconnectStorm),
            globals: args.globals,
            typing_every: args.typing_every,
            resume: args.resume,
            run: run_name(),
        };
        if plan.publishers > plan.conns {
            return Err(format!(
                "--publishers {} is more than --conns {}",
                plan.publishers, plan.conns
            ));
        }
        if plan.publishers > 0 && plan.rate <= 0.0 {
            return Err("--rate must be positive when there are publishers".into());
        }
        Ok(plan)
    }

    /// The connections this worker opens: every `workers`-th one.
    pub fn my_connections(&self) -> impl Iterator<Item = usize> + '_ {
        (self.worker..self.conns).step_by(self.workers)
    }

    pub fn room_of(&self, conn: usize) -> usize {
        conn % self.rooms
    }

    pub fn members_of(&self, room: usize) -> u64 {
        (self.conns / self.rooms + usize::from(room < self.conns % self.rooms)) as u64
    }

    pub fn is_publisher(&self, conn: usize) -> bool {
        conn < self.publishers
    }

    /// The URL (with user and room) connection `conn` opens.
    pub fn url_of(&self, conn: usize) -> String {
        self.url_joining(conn, &format!("room=r{}", self.room_of(conn)))
    }

    /// The URL connection `conn` comes back with: a resume of its room from `since` (the last seq
    /// it has and the stream's epoch), or a plain join without one.
    pub fn resume_url_of(&self, conn: usize, since: Option<(u64, &str)>) -> String {
        let Some((seq, epoch)) = since else { return self.url_of(conn) };
        self.url_joining(conn, &format!("since=r{}:{seq}:{epoch}", self.room_of(conn)))
    }

    /// Connection `conn`'s broker URL with its user and `join` (how it joins its room).
    fn url_joining(&self, conn: usize, join: &str) -> String {
        let base = &self.urls[conn % self.urls.len()];
        let separator = if base.contains('?') { '&' } else { '?' };
        format!("{base}{separator}user=lg-{conn}&{join}")
    }

    pub fn source_of(&self, conn: usize) -> Option<IpAddr> {
        (!self.bind_ips.is_empty()).then(|| self.bind_ips[conn % self.bind_ips.len()])
    }
}

fn run_name() -> String {
    let mut ms = crate::wire::now_ns() / 1_000_000;
    let mut name = Vec::new();
    while ms > 0 {
        name.push(b"0123456789abcdefghijklmnopqrstuvwxyz"[(ms % 36) as usize]);
        ms /= 36;
    }
    name.reverse();
    String::from_utf8(name).expect("ASCII digits")
}

/// Source addresses given as one range on the command line.
#[derive(Debug, Clone)]
pub struct IpRange(pub Vec<IpAddr>);

/// `127.0.0.2-127.0.0.40` (inclusive) or a single address.
fn parse_ip_range(text: &str) -> Result<IpRange, String> {
    let (first, last) = text.split_once('-').unwrap_or((text, text));
    let first: Ipv4Addr = first.trim().parse().map_err(|e| format!("{first}: {e}"))?;
    let last: Ipv4Addr = last.trim().parse().map_err(|e| format!("{last}: {e}"))?;
    let (first, last) = (u32::from(first), u32::from(last));
    if last < first || last - first > 65_535 {
        return Err("the range must go upwards and hold at most 65,536 addresses".into());
    }
    Ok(IpRange((first..=last).map(|ip| IpAddr::V4(Ipv4Addr::from(ip))).collect()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rooms_members_and_workers_partition_the_connections() {
        let args = Args::parse_from(["loadgen", "--scenario", "fanout-10k", "--conns", "1003"]);
        let mut plan = Plan::from_args(&args).unwrap();
        assert_eq!((0..plan.rooms).map(|r| plan.members_of(r)).sum::<u64>(), 1003);
        assert_eq!(plan.members_of(2), 11);
        assert_eq!(plan.members_of(3), 10);
        plan.workers = 3;
        let mut all: Vec<usize> = (0..3)
            .flat_map(|w| Plan { worker: w, ..plan.clone() }.my_connections().collect::<Vec<_>>())
            .collect();
        all.sort_unstable();
        assert_eq!(all, (0..1003).collect::<Vec<_>>());
        assert_eq!(plan.url_of(205), "ws://127.0.0.1:8080/ws?user=lg-205&room=r5");
    }

    #[test]
    fn ip_ranges_expand_inclusively() {
        let args = Args::parse_from(["loadgen", "--bind-ips", "127.0.0.2-127.0.0.3"]);
        assert_eq!(Plan::from_args(&args).unwrap().bind_ips.len(), 2);
        let ips = parse_ip_range("127.0.0.2-127.0.0.40").unwrap().0;
        assert_eq!((ips.len(), ips[0].to_string()), (39, "127.0.0.2".to_string()));
        assert!(parse_ip_range("127.0.0.9-127.0.0.2").is_err());
    }
}
