//! The store: messages persisted per second through the writer (handed over as shards hand them,
//! `Store::accept`, a `try_send`), and the latency of a 100-message history page read through the
//! reader pool from a table of 1,000,000 messages. On SQLite (a temporary file) and on PostgreSQL
//! (a server of the bench's own, `initdb` + `postgres` as the `postgres` user, like the tests').
//!
//! `cargo bench --bench store` runs 1,000,000 messages per engine; under `cargo test` it runs 5,000
//! as a smoke check. STORE_BENCH_ENGINES (sqlite, postgres), STORE_BENCH_MESSAGES, STORE_BENCH_READS
//! and STORE_BENCH_BATCH (the writer's --store-batch, 16384) vary a run. STORE_BENCH_REACT_EVERY=N
//! makes every Nth write a reaction (a room event on the message written ROOMS writes before it:
//! its own row, and a row of chat_reactions, in the same batches as the chats). Each message is
//! 12 made-up words drawn by Zipf's law from 5,000 (as natural languages draw theirs), so the
//! search index does the work it does for chat; STORE_BENCH_SEARCHES searches of them are timed
//! (`GET /search` for a participant of every room). Results: docs/benchmarks.md.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use wsbroker::metrics::StoreCounters;
use wsbroker::router::Router;
use wsbroker::store::ops::{Answer, Read, Write};
use wsbroker::store::search::{self, Scope, Search};
use wsbroker::store::{DatabaseUrl, NewMessage, Store, StoreSettings};

/// Rooms the messages are spread over; history pages are read from random ones.
const ROOMS: u64 = 1_000;
/// Messages in flight (queued or in a transaction) before the producer waits.
const IN_FLIGHT: u64 = 32_768;

fn main() {
    let full = std::env::args().any(|arg| arg == "--bench");
    let (messages, reads) = if full { (1_000_000, 20_000) } else { (5_000, 200) };
    let messages = std::env::var("STORE_BENCH_MESSAGES").map_or(messages, |n| n.parse().unwrap());
    let reads = std::env::var("STORE_BENCH_READS").map_or(reads, |n| n.parse().unwrap());
    let dir = std::env::temp_dir().join(format!("wsbroker-store-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // STORE_BENCH_ENGINES=sqlite (or postgres) runs one engine only.
    let engines = std::env::var("STORE_BENCH_ENGINES").unwrap_or_else(|_| "sqlite,postgres".into());
    if engines.contains("sqlite") {
        run("sqlite", &DatabaseUrl::Sqlite(dir.join("bench.db")), messages, reads);
    }
    if engines.contains("postgres") {
        let postgres = PostgresServer::start(&dir);
        run("postgres", &postgres.url.parse().unwrap(), messages, reads);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

fn run(engine: &str, url: &DatabaseUrl, messages: u64, reads: u64) {
    let settings = StoreSettings {
        queue: 65_536,
        batch: std::env::var("STORE_BENCH_BATCH").map_or(16_384, |n| n.parse().unwrap()),
        linger: Duration::from_millis(2),
        readers: 2,
        retention: None,
        retention_every: Duration::from_secs(3600),
        file_bytes_per_second: None,
    };
    let counters = Arc::new(StoreCounters::default());
    let (router, _inboxes) = Router::new(1);
    let store =
        Store::start(url, &settings, router, Arc::clone(&counters)).expect("open the store");
    // The rooms exist, and user-0 takes part in every one (GET /rooms reads them all for it).
    let base = create_rooms(&store);
    let epoch: Arc<str> = Arc::from("bench");
    let mut text = Text::new();
    let react_every: u64 =
        std::env::var("STORE_BENCH_REACT_EVERY").map_or(0, |n| n.parse().unwrap());
    let start = Instant::now();
    for n in 0..messages {
        while (n + base).saturating_sub(counters.committed.load(Relaxed)) >= IN_FLIGHT {
            std::thread::sleep(Duration::from_micros(200));
        }
        let mut message = NewMessage {
            id: format!("m{n}"),
            room: Some(Arc::from(format!("room-{}", n % ROOMS))),
            sender: Arc::from(format!("user-{}", n % 5_000)),
            kind: "chat",
            data: format!(r#"{{"content":"{}"}}"#, text.message()).into(),
            created_at: 1_700_000_000_000 + n as i64,
            metadata: None,
            stream: Some(((n / ROOMS) as i64 + 1, Arc::clone(&epoch))),
            target: None,
        };
        if react_every > 0 && n % react_every == 0 && n >= ROOMS {
            let (target, author) =
                (format!("m{}", n - ROOMS), format!("user-{}", (n - ROOMS) % 5_000));
            let reaction = format!(r#"{{"id":"{target}","from":"{author}","emoji":"👍"}}"#);
            (message.kind, message.data, message.target) =
                ("reaction_added", reaction.into(), Some(target));
        }
        while store
            .write(Write::Message(message.clone()), wsbroker::store::Completion::None)
            .is_err()
        {
            std::thread::sleep(Duration::from_micros(200));
        }
    }
    while counters.committed.load(Relaxed) < messages + base {
        std::thread::sleep(Duration::from_millis(1));
    }
    let elapsed = start.elapsed();
    let batches = counters.batches.load(Relaxed).saturating_sub(base).max(1);
    let rate = messages as f64 / elapsed.as_secs_f64();
    println!(
        "{engine}: {messages} messages persisted in {elapsed:.2?}: {rate:.0} messages/s \
         ({batches} transactions, {:.0} messages each)",
        messages as f64 / batches as f64
    );
    if let (DatabaseUrl::Postgres(url), Ok(_)) = (url, std::env::var("STORE_BENCH_ANALYZE")) {
        // What autovacuum does on its own some time after a bulk load: the planner's statistics.
        let mut client = postgres::Client::connect(url, postgres::NoTls).unwrap();
        let started = Instant::now();
        client.batch_execute("ANALYZE").unwrap();
        println!("{engine}: ANALYZE of the whole database took {:.2?}", started.elapsed());
    }
    history_latency(engine, &store, messages, reads, react_every == 0);
    rooms_latency(engine, &store, messages, reads);
    let searches = std::env::var("STORE_BENCH_SEARCHES").map_or(reads, |n| n.parse().unwrap());
    for kind in [Query::OneWord, Query::TwoWords, Query::Prefix] {
        search_latency(engine, &store, messages, searches, kind, &mut text);
    }
}

/// Words to make messages of: VOCABULARY made-up ones, the rank-r one drawn r times less often
/// than the first (Zipf's law).
struct Text {
    words: Vec<String>,
    cumulative: Vec<f64>,
    seed: u64,
}

const VOCABULARY: usize = 5_000;

impl Text {
    fn new() -> Self {
        // Syllables no one of which starts another: each word is spelled one way only.
        const SYLLABLES: [&str; 16] = [
            "ka", "lo", "mi", "ne", "ru", "ta", "shi", "po", "an", "el", "or", "ve", "di", "gu",
            "be", "za",
        ];
        let word = |rank: usize| {
            let (mut n, mut word) = (rank + 16, String::new());
            while n > 0 {
                word.push_str(SYLLABLES[n % 16]);
                n /= 16;
            }
            word
        };
        let weights: Vec<f64> = (1..=VOCABULARY).map(|rank| 1.0 / rank as f64).collect();
        let total: f64 = weights.iter().sum();
        let cumulative = weights
            .iter()
            .scan(0.0, |sum, weight| {
                *sum += weight / total;
                Some(*sum)
            })
            .collect();
        Self { words: (0..VOCABULARY).map(word).collect(), cumulative, seed: 0x9e37_79b9_7f4a_7c15 }
    }

    fn next(&mut self) -> u64 {
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        self.seed
    }

    fn zipf_word(&mut self) -> &str {
        let x = (self.next() >> 11) as f64 / (1u64 << 53) as f64;
        let rank = self.cumulative.partition_point(|c| *c < x).min(VOCABULARY - 1);
        &self.words[rank]
    }

    /// Any word of the vocabulary, each as likely: searches for rare words as much as common ones.
    fn any_word(&mut self) -> String {
        let rank = (self.next() % VOCABULARY as u64) as usize;
        self.words[rank].clone()
    }

    fn message(&mut self) -> String {
        let words: Vec<String> = (0..12).map(|_| self.zipf_word().to_owned()).collect();
        words.join(" ")
    }
}

#[derive(Debug, Clone, Copy)]
enum Query {
    /// One word of the vocabulary, each as likely.
    OneWord,
    /// Two such words, both in a message.
    TwoWords,
    /// The first 4 letters of such a word, as typed so far.
    Prefix,
}

/// `GET /search` as the store answers it for user-0, a participant of every room: a page of 50,
/// newest first, over every message.
fn search_latency(
    engine: &str,
    store: &Store,
    messages: u64,
    searches: u64,
    kind: Query,
    text: &mut Text,
) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let mut latencies: Vec<Duration> = Vec::with_capacity(searches as usize);
    let mut found = 0;
    runtime.block_on(async {
        for _ in 0..searches {
            let q = match kind {
                Query::OneWord => text.any_word(),
                Query::TwoWords => format!("{} {}", text.any_word(), text.any_word()),
                Query::Prefix => text.any_word().chars().take(4).collect(),
            };
            let scope = Scope::Readable("user-0".into());
            let search = Search { words: search::words(&q), scope, before: None, limit: 50 };
            let started = Instant::now();
            let Ok(Answer::Messages(page)) = store.read(Read::Search(search)).await else {
                panic!("search")
            };
            latencies.push(started.elapsed());
            found += page.len();
        }
    });
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    println!(
        "{engine}: search ({kind:?}) over {messages} messages: p50 {:.2?}, p99 {:.2?}, max {:.2?} \
         ({searches} searches, {:.1} found each)",
        at(0.5),
        at(0.99),
        latencies.last().unwrap(),
        found as f64 / searches as f64
    );
}

/// Creates the rooms and makes user-0 a participant of each; the writes it made.
fn create_rooms(store: &Store) -> u64 {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        for room in 0..ROOMS {
            let info = wsbroker::store::RoomInfo {
                id: format!("room-{room}"),
                kind: wsbroker::store::RoomType::Public,
                created_at: 1_700_000_000_000,
                created_by: "user-0".into(),
                metadata: None,
            };
            let write = Write::CreateRoom { room: info, members: Vec::new() };
            store.write_and_wait(write).await.expect("create a room");
        }
    });
    ROOMS
}

/// `GET /rooms` as the store answers it for user-0, a participant of every room: a page of 100
/// rooms (`Read::Rooms`), then their heads, unread counts and newest messages (`Read::Heads`).
fn rooms_latency(engine: &str, store: &Store, messages: u64, reads: u64) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let mut latencies: Vec<Duration> = Vec::with_capacity(reads as usize);
    runtime.block_on(async {
        for n in 0..reads {
            let after = (n % 10 > 0).then(|| format!("room-{}", (n % 10) * 100));
            let started = Instant::now();
            let read = Read::Rooms { user: "user-0".into(), after, limit: 100 };
            let Ok(Answer::Rooms(rooms)) = store.read(read).await else { panic!("rooms") };
            let ids = rooms.iter().map(|room| room.id.clone()).collect();
            let read = Read::Heads { user: "user-0".into(), rooms: ids };
            let Ok(Answer::Heads(heads)) = store.read(read).await else { panic!("heads") };
            latencies.push(started.elapsed());
            assert!(!heads.is_empty() && heads.iter().all(|head| head.last_read.is_some()));
        }
    });
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    println!(
        "{engine}: a page of 100 of a user's {ROOMS} rooms with unread counts and newest messages, \
         over {messages} messages: p50 {:.2?}, p99 {:.2?}, max {:.2?} ({reads} reads)",
        at(0.5),
        at(0.99),
        latencies.last().unwrap()
    );
}

/// Reads `reads` history pages of 100 from random rooms through the readers, one at a time.
fn history_latency(engine: &str, store: &Store, messages: u64, reads: u64, full_pages: bool) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let mut latencies: Vec<Duration> = Vec::with_capacity(reads as usize);
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    runtime.block_on(async {
        for _ in 0..reads {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let room = format!("room-{}", seed % ROOMS);
            let started = Instant::now();
            let read = Read::History { room, before: None, after: None, limit: 100 };
            let Ok(Answer::Messages(page)) = store.read(read).await else {
                panic!("a read failed")
            };
            latencies.push(started.elapsed());
            let most = 100.min(messages / ROOMS);
            assert!(page.len() as u64 == most || !full_pages && page.len() as u64 <= most);
        }
    });
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    println!(
        "{engine}: history of 100 from a table of {messages}: p50 {:.2?}, p99 {:.2?}, max {:.2?} ({reads} reads)",
        at(0.5),
        at(0.99),
        latencies.last().unwrap()
    );
}

/// A PostgreSQL server of the bench's own, stopped when dropped.
struct PostgresServer {
    url: String,
    child: Child,
}

impl PostgresServer {
    fn start(dir: &std::path::Path) -> Self {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .expect("PostgreSQL is needed (scripts/test.sh installs it)")
            .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
            .filter(|bin| bin.join("postgres").exists())
            .max()
            .expect("a PostgreSQL server");
        let data: PathBuf = dir.join("pg");
        std::fs::create_dir_all(&data).unwrap();
        Command::new("chown").args(["-R", "postgres:postgres"]).arg(dir).status().unwrap();
        let id = |flag| {
            let out = Command::new("id").args([flag, "postgres"]).output().unwrap();
            String::from_utf8(out.stdout).unwrap().trim().parse::<u32>().unwrap()
        };
        let (uid, gid) = (id("-u"), id("-g"));
        let status = Command::new(bin.join("initdb"))
            .uid(uid)
            .gid(gid)
            .arg("-D")
            .arg(data.join("data"))
            .args(["-A", "trust", "-U", "postgres", "--no-sync"])
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "initdb");
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new(bin.join("postgres"))
            .uid(uid)
            .gid(gid)
            .arg("-D")
            .arg(data.join("data"))
            .args(["-p", &port.to_string(), "-k"])
            .arg(&data)
            .args(["-c", "listen_addresses=127.0.0.1"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let url = format!("postgres://postgres@127.0.0.1:{port}/postgres");
        let deadline = Instant::now() + Duration::from_secs(20);
        while postgres::Client::connect(&url, postgres::NoTls).is_err() {
            assert!(Instant::now() < deadline, "postgres did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Self { url, child }
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-INT", &self.child.id().to_string()]).status();
        let _ = self.child.wait();
    }
}
