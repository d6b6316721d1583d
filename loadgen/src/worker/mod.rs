//! A worker process: opens its share of the connections on one thread, publishes, and measures.
//!
//! Owns: its connections and its counters. Everything runs on one thread (a `LocalSet`), so the
//! counters are plain `Cell`s and the histogram a `RefCell`: no locks or atomics per delivery, and
//! parsing a delivery borrows from the frame instead of allocating.
//!
//! Phases, driven by the coordinator over stdin/stdout: connect everything and print `ready`; wait for
//! `go`; publish for the run's duration; wait until deliveries stop (at most `DRAIN_LIMIT`); print
//! `done` with the counts and the latency histogram; hold the connections open until `exit` (the
//! coordinator reads the broker's memory after the run first).

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, Stream, StreamExt};
use hdrhistogram::Histogram;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::{watch, Notify, Semaphore};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

mod dial;
mod global;
mod resume;
mod storm;
mod typing;

use crate::plan::Plan;
use crate::report::{self, Event, RoomCounts, WorkerReport};
use crate::wire::{self, Probe};
pub(crate) use dial::connect;
use dial::connect_to;
use storm::Storm;

/// Handshakes in flight at once per worker.
pub(crate) const CONNECT_CONCURRENCY: usize = 256;
/// Deliveries are over when none arrived for this long...
const DRAIN_QUIET: Duration = Duration::from_secs(1);
/// ...or, at the latest, this long after publishing stopped.
const DRAIN_LIMIT: Duration = Duration::from_secs(30);

#[derive(Default)]
struct Counters {
    connected: Cell<u64>,
    failed: Cell<u64>,
    sent: Cell<u64>,
    expected: Cell<u64>,
    received: Cell<u64>,
    duplicated: Cell<u64>,
    out_of_order: Cell<u64>,
    /// Connections that ended before the run did (closed by the broker, e.g. evicted).
    closed: Cell<u64>,
    publish_failures: Cell<u64>,
    /// Global messages sent (worker 0's announcer) and received by this worker's connections.
    global_sent: Cell<u64>,
    global_received: Cell<u64>,
}

fn bump(cell: &Cell<u64>, by: u64) {
    cell.set(cell.get() + by);
}

pub(crate) struct Worker {
    pub(crate) plan: Plan,
    counters: Counters,
    rooms: RefCell<Vec<RoomCounts>>,
    latency_us: RefCell<Histogram<u64>>,
    last_delivery: Cell<Instant>,
    pub(crate) first_error: RefCell<Option<String>>,
    settled: Notify,
    /// When the coordinator said `go`.
    go: watch::Receiver<Option<Instant>>,
    padding: String,
    pub(crate) storm: Storm,
    resume: resume::Counters,
}

impl Worker {
    /// Records a delivery's latency, and that deliveries are still coming.
    fn note_delivery(&self, probe: Probe) {
        let latency_us = wire::now_ns().saturating_sub(probe.t) / 1000;
        self.latency_us.borrow_mut().saturating_record(latency_us.max(1));
        self.last_delivery.set(Instant::now());
    }

    /// Counts one delivery to a member of `room`.
    fn record(&self, room: usize, last_seq: &mut Vec<(u32, u64)>, probe: Probe) {
        self.note_delivery(probe);
        bump(&self.counters.received, 1);
        let mut rooms = self.rooms.borrow_mut();
        let counts = &mut rooms[room];
        counts.received += 1;
        match last_seq.iter_mut().find(|(publisher, _)| *publisher == probe.p) {
            Some((_, last)) if probe.s > *last => *last = probe.s,
            Some((_, last)) if probe.s == *last => {
                bump(&self.counters.duplicated, 1);
                counts.duplicated += 1;
            }
            Some(_) => {
                bump(&self.counters.out_of_order, 1);
                counts.out_of_order += 1;
            }
            None => last_seq.push((probe.p, probe.s)),
        }
    }

    fn fail(&self, error: String) {
        bump(&self.counters.failed, 1);
        self.first_error.borrow_mut().get_or_insert(error);
        self.settled.notify_one();
    }

    fn settled_count(&self) -> u64 {
        self.counters.connected.get() + self.counters.failed.get()
    }

    fn report(&self, connect_secs: f64, cpu_secs: f64) -> WorkerReport {
        let c = &self.counters;
        let histogram = self.latency_us.borrow();
        WorkerReport {
            connected: c.connected.get(),
            failed: c.failed.get(),
            connect_secs,
            sent: c.sent.get(),
            expected: c.expected.get(),
            received: c.received.get(),
            duplicated: c.duplicated.get(),
            out_of_order: c.out_of_order.get(),
            closed: c.closed.get(),
            publish_failures: c.publish_failures.get(),
            global_sent: c.global_sent.get(),
            global_received: c.global_received.get(),
            rooms: self.rooms.borrow().clone(),
            histogram: histogram
                .iter_recorded()
                .map(|v| (v.value_iterated_to(), v.count_at_value()))
                .collect(),
            first_error: self.first_error.borrow().clone(),
            cpu_secs,
            storm: None,
            resume: None,
            allocations: 0,
        }
    }
}

fn emit(event: &Event) {
    println!("{}", serde_json::to_string(event).expect("events are plain data"));
}

/// Runs one worker to completion on the current thread.
pub fn main(plan: Plan) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    tokio::task::LocalSet::new().block_on(&runtime, run(plan));
}

async fn run(plan: Plan) {
    let (go_tx, go) = watch::channel(None);
    tokio::task::spawn_local(async move {
        let mut lines = BufReader::new(tokio::io::stdin()).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            match line.trim() {
                "go" => drop(go_tx.send(Some(Instant::now()))),
                // After the report: the coordinator has read the broker's memory with every
                // connection still open.
                "exit" => std::process::exit(0),
                _ => {}
            }
        }
        // stdin closed: the coordinator is gone, and so is the point of running.
        std::process::exit(2);
    });
    let padding = "x".repeat(plan.payload);
    let worker = Rc::new(Worker {
        rooms: RefCell::new(vec![RoomCounts::default(); plan.rooms]),
        plan,
        counters: Counters::default(),
        latency_us: RefCell::new(report::new_histogram()),
        last_delivery: Cell::new(Instant::now()),
        first_error: RefCell::new(None),
        settled: Notify::new(),
        go,
        padding,
        storm: Storm::default(),
        resume: resume::Counters::default(),
    });
    let connect_secs = connect_all(&worker).await;
    global::start_announcer(&worker).await;
    let c = &worker.counters;
    emit(&Event::Ready { connected: c.connected.get(), failed: c.failed.get(), connect_secs });
    let mut go = worker.go.clone();
    let Ok(go_at) = go.wait_for(Option::is_some).await.map(|at| at.expect("waited for Some"))
    else {
        return;
    };
    let (cpu_at_go, allocs_at_go) = (own_cpu_secs(), crate::allocs::count());
    let storm = match worker.plan.reconnect_storm {
        true => Some(storm::run(&worker, worker.counters.connected.get()).await),
        false => None,
    };
    tokio::time::sleep_until(go_at + Duration::from_secs_f64(worker.plan.duration)).await;
    let stopped = Instant::now();
    while stopped.elapsed() < DRAIN_LIMIT && worker.last_delivery.get().elapsed() < DRAIN_QUIET {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (cpu_secs, allocations) =
        (own_cpu_secs() - cpu_at_go, crate::allocs::count() - allocs_at_go);
    let resume = worker.plan.resume.then(|| worker.resume.report());
    let report =
        WorkerReport { storm, resume, allocations, ..worker.report(connect_secs, cpu_secs) };
    emit(&Event::Done(Box::new(report)));
    std::future::pending::<()>().await;
}

fn own_cpu_secs() -> f64 {
    report::cpu_secs(std::process::id()).unwrap_or(0.0)
}

/// Opens this worker's connections at the paced rate; returns how long it took.
async fn connect_all(worker: &Rc<Worker>) -> f64 {
    let plan = &worker.plan;
    let mine = plan.my_connections().count() as u64;
    let started = Instant::now();
    let rate = plan.connect_rate / plan.workers as f64;
    let mut pacer =
        (rate > 0.0).then(|| tokio::time::interval(Duration::from_secs_f64(1.0 / rate)));
    let in_flight = Arc::new(Semaphore::new(CONNECT_CONCURRENCY));
    let progress = tokio::task::spawn_local(report_progress(Rc::clone(worker)));
    for conn in plan.my_connections() {
        if let Some(pacer) = pacer.as_mut() {
            pacer.tick().await;
        }
        let permit =
            Arc::clone(&in_flight).acquire_owned().await.expect("the semaphore is never closed");
        let worker = Rc::clone(worker);
        tokio::task::spawn_local(async move {
            match connect(&worker.plan, conn).await {
                Ok(socket) => {
                    drop(permit);
                    bump(&worker.counters.connected, 1);
                    worker.settled.notify_one();
                    drive(worker, conn, socket).await;
                }
                Err(error) => worker.fail(error),
            }
        });
    }
    while worker.settled_count() < mine {
        worker.settled.notified().await;
    }
    progress.abort();
    started.elapsed().as_secs_f64()
}

async fn report_progress(worker: Rc<Worker>) {
    loop {
        let c = &worker.counters;
        emit(&Event::Progress { connected: c.connected.get(), failed: c.failed.get() });
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

pub(crate) type Socket = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

/// Serves one connection until the process ends: reads (and measures) everything; a publisher also
/// publishes on its own paced schedule.
async fn drive(worker: Rc<Worker>, conn: usize, socket: Socket) {
    let room = worker.plan.room_of(conn);
    if worker.plan.reconnect_storm {
        storm::ride(&worker, conn, socket).await;
    } else if worker.plan.resume {
        resume::ride(worker, conn, socket).await;
    } else if worker.plan.is_publisher(conn) {
        let (sink, stream) = socket.split();
        tokio::task::spawn_local(publish(Rc::clone(&worker), conn, sink));
        read_all(&worker, room, stream).await;
    } else if worker.plan.typing_every > 0.0 {
        let (sink, stream) = socket.split();
        tokio::task::spawn_local(typing::type_along(Rc::clone(&worker), conn, sink));
        read_all(&worker, room, stream).await;
    } else {
        read_all(&worker, room, socket).await;
    }
}

/// Reads until the connection ends; the process exits when the run is over, so an end seen here
/// means the broker closed the connection during the run.
pub(crate) async fn read_all(
    worker: &Worker,
    room: usize,
    mut stream: impl Stream<Item = Result<Message, WsError>> + Unpin,
) {
    let (mut last_seq, mut last_global) = (Vec::new(), 0);
    loop {
        match stream.next().await {
            Some(Ok(Message::Text(text))) => match wire::parse_probe(&text) {
                Some(probe) if probe.p == wire::GLOBAL_PUBLISHER => {
                    worker.record_global(&mut last_global, probe)
                }
                Some(probe) => worker.record(room, &mut last_seq, probe),
                None => {}
            },
            Some(Ok(Message::Close(frame))) => {
                if let Some(frame) = frame {
                    let reason = format!("closed by the broker: {} {}", frame.code, frame.reason);
                    worker.first_error.borrow_mut().get_or_insert(reason);
                }
            }
            Some(Ok(_)) => {}
            Some(Err(_)) | None => break,
        }
    }
    bump(&worker.counters.closed, 1);
}

async fn publish(
    worker: Rc<Worker>,
    conn: usize,
    mut sink: impl futures_util::Sink<Message> + Unpin,
) {
    let plan = &worker.plan;
    let mut go = worker.go.clone();
    let Ok(go_at) = go.wait_for(Option::is_some).await.map(|at| at.expect("waited for Some"))
    else {
        return;
    };
    let period = Duration::from_secs_f64(plan.publishers as f64 / plan.rate);
    let offset = period.mul_f64(conn as f64 / plan.publishers as f64);
    let end = go_at + Duration::from_secs_f64(plan.duration);
    let mut ticker = tokio::time::interval_at(go_at + offset, period);
    let room = plan.room_of(conn);
    let (room_name, members) = (format!("r{room}"), plan.members_of(room));
    let mut text = String::with_capacity(160 + worker.padding.len());
    let mut seq = 0;
    loop {
        ticker.tick().await;
        if Instant::now() >= end {
            return;
        }
        seq += 1;
        wire::write_chat(&mut text, &room_name, conn as u32, seq, &worker.padding);
        if sink.send(Message::text(text.clone())).await.is_err() {
            bump(&worker.counters.publish_failures, 1);
            return;
        }
        bump(&worker.counters.sent, 1);
        bump(&worker.counters.expected, members);
        worker.rooms.borrow_mut()[room].expected += members;
    }
}
