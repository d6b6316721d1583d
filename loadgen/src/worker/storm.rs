//! The `reconnect-storm` scenario: every connection drops at once and reconnects as fast as loadgen
//! can, as after a deploy or a load-balancer failover.
//!
//! Owns: the storm's signal and counters in one worker, and the presence check. Each room's first
//! connection (connection `r` is the first member of room `r`) asks the broker who is in the room
//! until the answer holds every member, so "back" means connected again and seen again by presence
//! (cluster-wide, over several instances). Must not: publish.

use std::cell::Cell;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use tokio::sync::{watch, Notify, Semaphore};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

use super::{connect, read_all, Socket, Worker, CONNECT_CONCURRENCY};
use crate::report::StormReport;

/// How long a storm may take before the run gives up on it.
const STORM_LIMIT: Duration = Duration::from_secs(120);
/// Attempts to reconnect one connection before it counts as failed.
const RECONNECT_ATTEMPTS: usize = 5;
/// Between two presence queries of a room that is not whole yet.
const REQUERY_AFTER: Duration = Duration::from_millis(20);

/// One worker's storm.
pub struct Storm {
    dropped: watch::Sender<bool>,
    in_flight: Arc<Semaphore>,
    reconnected: Cell<u64>,
    failed: Cell<u64>,
    rooms_whole: Cell<u64>,
    rooms_not_whole: Cell<u64>,
    progress: Notify,
}

impl Default for Storm {
    fn default() -> Self {
        Self {
            dropped: watch::channel(false).0,
            in_flight: Arc::new(Semaphore::new(CONNECT_CONCURRENCY)),
            reconnected: Cell::default(),
            failed: Cell::default(),
            rooms_whole: Cell::default(),
            rooms_not_whole: Cell::default(),
            progress: Notify::new(),
        }
    }
}

fn bump(cell: &Cell<u64>) {
    cell.set(cell.get() + 1);
}

/// Drops every connection of the worker at once, then waits until they are back and every room it
/// checks is whole again (at most `STORM_LIMIT`).
pub async fn run(worker: &Worker, connected: u64) -> StormReport {
    let storm = &worker.storm;
    let checked = worker.plan.my_connections().filter(|&c| c < worker.plan.rooms).count() as u64;
    let started = Instant::now();
    storm.dropped.send_replace(true);
    let reconnect_secs =
        wait_until(storm, started, || storm.reconnected.get() + storm.failed.get() >= connected)
            .await;
    let presence_secs = wait_until(storm, started, || {
        storm.rooms_whole.get() + storm.rooms_not_whole.get() >= checked
    })
    .await;
    StormReport {
        reconnected: storm.reconnected.get(),
        failed: storm.failed.get(),
        reconnect_secs,
        rooms_whole: storm.rooms_whole.get(),
        rooms_not_whole: storm.rooms_not_whole.get(),
        presence_secs,
    }
}

/// Waits until `done` (woken by the storm's progress), at most `STORM_LIMIT` after `started`;
/// returns the seconds since `started`.
async fn wait_until(storm: &Storm, started: Instant, done: impl Fn() -> bool) -> f64 {
    let deadline = started + STORM_LIMIT;
    while !done() && Instant::now() < deadline {
        let _ = tokio::time::timeout_at(deadline, storm.progress.notified()).await;
    }
    started.elapsed().as_secs_f64()
}

/// One connection through the storm: read until the drop, reconnect, check its room if it is the
/// room's first member, then read until the run ends.
pub async fn ride(worker: &Worker, conn: usize, mut socket: Socket) {
    let room = worker.plan.room_of(conn);
    let mut dropped = worker.storm.dropped.subscribe();
    tokio::select! {
        () = read_all(worker, room, &mut socket) => return,
        _ = dropped.wait_for(|dropped| *dropped) => {}
    }
    drop(socket);
    let storm = &worker.storm;
    let Some(mut socket) = reconnect(worker, conn).await else {
        bump(&storm.failed);
        return storm.progress.notify_one();
    };
    bump(&storm.reconnected);
    storm.progress.notify_one();
    if conn < worker.plan.rooms {
        let whole = until_whole(worker, room, &mut socket).await;
        bump(if whole { &storm.rooms_whole } else { &storm.rooms_not_whole });
        storm.progress.notify_one();
    }
    read_all(worker, room, socket).await;
}

async fn reconnect(worker: &Worker, conn: usize) -> Option<Socket> {
    let _permit = Arc::clone(&worker.storm.in_flight).acquire_owned().await.ok()?;
    for _ in 0..RECONNECT_ATTEMPTS {
        match connect(&worker.plan, conn).await {
            Ok(socket) => return Some(socket),
            Err(error) => drop(worker.first_error.borrow_mut().get_or_insert(error)),
        }
    }
    None
}

#[derive(Deserialize)]
struct PresenceAnswer {
    id: Option<String>,
    data: Option<Users>,
}

#[derive(Deserialize)]
struct Users {
    users: Vec<String>,
}

/// Asks who is in `room` until the answer is exactly its members; `false` if it never is.
async fn until_whole(worker: &Worker, room: usize, socket: &mut Socket) -> bool {
    let members = worker.plan.members_of(room) as usize;
    let deadline = Instant::now() + STORM_LIMIT;
    for attempt in 0u64.. {
        let id = format!("storm-{attempt}");
        let query = format!(r#"{{"type":"presence","room":"r{room}","id":"{id}"}}"#);
        if socket.send(Message::text(query)).await.is_err() {
            return false;
        }
        let users = loop {
            match tokio::time::timeout_at(deadline, socket.next()).await {
                Ok(Some(Ok(Message::Text(text)))) => {
                    let Ok(answer) = serde_json::from_str::<PresenceAnswer>(&text) else {
                        continue;
                    };
                    if answer.id.as_deref() == Some(id.as_str()) {
                        break answer.data.map_or(0, |d| d.users.len());
                    }
                }
                Ok(Some(Ok(_))) => {}
                _ => return false,
            }
        };
        if users == members {
            return true;
        }
        if Instant::now() + REQUERY_AFTER > deadline {
            return false;
        }
        tokio::time::sleep(REQUERY_AFTER).await;
    }
    false
}
