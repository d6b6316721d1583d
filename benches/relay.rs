//! Relay throughput: messages per second the relay thread publishes into Redis, fed as shards feed
//! it (`Broker::publish`, a `try_send` into its bounded queue), with a ~200-byte chat frame to one
//! room. Starts its own `redis-server` on a free loopback port.
//!
//! Then the same for cluster room messages, numbered by the stamp script (`Broker::stamp`).
//!
//! `cargo bench --bench relay` runs 2,000,000 messages; under `cargo test` it runs 20,000 as a smoke
//! check. Results and the `redis-benchmark` baselines: docs/benchmarks.md.

use std::process::{Command, Stdio};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::value::RawValue;
use wsbroker::broker::{Broker, Numbering, Sequencer};
use wsbroker::cluster::redis::RedisBroker;
use wsbroker::mailbox::{Delivery, Inbox, Origin, Stamp, Target, ToSequence};
use wsbroker::metrics::RelayCounters;
use wsbroker::protocol::{self, MessageType};
use wsbroker::router::Router;
use wsbroker::Config;

/// Messages allowed in flight (queued or in a pipeline) before the producer waits: the relay's pace,
/// not the queue's size, is what is measured.
const IN_FLIGHT: u64 = 32_768;

fn main() {
    let full = std::env::args().any(|arg| arg == "--bench");
    let messages: u64 = if full { 2_000_000 } else { 20_000 };
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut redis = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server is needed (scripts/test.sh installs it)");
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let result = runtime.block_on(publish_all(port, messages));
    let stamped = runtime.block_on(stamp_all(port, messages));
    let _ = redis.kill();
    let _ = redis.wait();
    let (published, dropped, elapsed) = result;
    let rate = published as f64 / elapsed.as_secs_f64();
    println!("relay: {published} published, {dropped} dropped in {elapsed:.2?}: {rate:.0} messages/s into Redis");
    assert_eq!((published, dropped), (messages, 0), "every message reached Redis");
    let (numbered, refused, elapsed) = stamped;
    let rate = numbered as f64 / elapsed.as_secs_f64();
    println!("relay stamp: {numbered} numbered and published by the script, {refused} refused in {elapsed:.2?}: {rate:.0} publishes/s");
    assert_eq!((numbered, refused), (messages, 0), "every message was numbered");
}

/// A broker on `port` whose relay has connected, with the inbox of its one shard.
async fn connected_broker(port: u16) -> (RedisBroker, Arc<RelayCounters>, Vec<Inbox>) {
    let url = format!("redis://127.0.0.1:{port}");
    let mut config = Config::with_listen("127.0.0.1:0".parse().unwrap());
    config.redis_url = Some(url.clone());
    let counters = Arc::new(RelayCounters::default());
    let (router, inboxes) = Router::new(1);
    let broker = RedisBroker::start(&config, &url, router, Arc::clone(&counters)).unwrap();
    let connected = async {
        while counters.redis_up.load(Relaxed) == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), connected)
        .await
        .expect("the relay connects to redis");
    (broker, counters, inboxes)
}

/// Cluster room messages: each is numbered by the stamp script (HINCRBY, XADD to the capped
/// stream, PUBLISH), pipelined by the relay; the home shard hears each seq back.
async fn stamp_all(port: u16, messages: u64) -> (u64, u64, Duration) {
    let (broker, _counters, mut inboxes) = connected_broker(port).await;
    let data = RawValue::from_string(format!(r#"{{"content":"{}"}}"#, "x".repeat(100))).unwrap();
    let item = || ToSequence {
        room: "bench".into(),
        id: protocol::new_message_id(),
        sender: "user-1".into(),
        kind: MessageType::Chat,
        data: data.clone(),
        at: 1_700_000_000_000,
        origin: Origin::Connection { shard: 0, conn: 1, acked: false, admin: false },
    };
    let mut tally = Tally::default();
    let deliveries = &mut inboxes[0].deliveries;
    let start = Instant::now();
    for sent in 0..messages {
        while sent - tally.answered() >= IN_FLIGHT {
            tally.count(deliveries.recv().await.unwrap());
        }
        if let Numbering::Refused(_) = broker.stamp(item(), 0) {
            tally.refused += 1;
        }
    }
    while tally.answered() < messages {
        tally.count(deliveries.recv().await.unwrap());
    }
    (tally.numbered, tally.refused, start.elapsed())
}

/// The stamps heard back so far.
#[derive(Default)]
struct Tally {
    numbered: u64,
    refused: u64,
    last: u64,
}

impl Tally {
    fn answered(&self) -> u64 {
        self.numbered + self.refused
    }

    fn count(&mut self, delivery: Delivery) {
        match delivery {
            Delivery::Stamped { stamped: Ok(Stamp { seq, .. }), .. } => {
                assert_eq!(seq, self.last + 1, "seqs come back in order, without a gap");
                self.last = seq;
                self.numbered += 1;
            }
            Delivery::Stamped { stamped: Err(_), .. } => self.refused += 1,
            _ => {}
        }
    }
}

async fn publish_all(port: u16, messages: u64) -> (u64, u64, Duration) {
    let (broker, counters, _inboxes) = connected_broker(port).await;
    let data = RawValue::from_string(format!(r#"{{"content":"{}"}}"#, "x".repeat(100))).unwrap();
    let frame = protocol::message_frame(
        MessageType::Chat,
        &protocol::new_message_id(),
        Some("bench"),
        "user-1",
        &data,
    );
    let target = Target::Room("bench".into());
    let done = || counters.published.load(Relaxed) + counters.dropped.load(Relaxed);
    let start = Instant::now();
    for sent in 0..messages {
        while sent - done() >= IN_FLIGHT {
            tokio::task::yield_now().await;
        }
        broker.publish(&target, &frame);
    }
    while done() < messages {
        tokio::time::sleep(Duration::from_micros(100)).await;
    }
    (counters.published.load(Relaxed), counters.dropped.load(Relaxed), start.elapsed())
}
