//! Global messages (`--globals N`): worker 0 opens one extra connection, in no room, that sends N
//! messages without a room, spread over the run; every connection of every worker must get each
//! exactly once, in order.
//!
//! Owns: the announcer connection and the counting of global deliveries. Must not: count the
//! announcer among the run's connections (it receives its own globals, uncounted).

use std::rc::Rc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

use super::{bump, connect_to, Worker};
use crate::wire::{self, Probe};

impl Worker {
    /// Counts one global delivery to a connection whose last global was `last`.
    pub(super) fn record_global(&self, last: &mut u64, probe: Probe) {
        self.note_delivery(probe);
        match probe.s {
            s if s > *last => {
                *last = s;
                bump(&self.counters.global_received, 1);
            }
            s if s == *last => bump(&self.counters.duplicated, 1),
            _ => bump(&self.counters.out_of_order, 1),
        }
    }
}

/// In worker 0 of a run with globals: connects the announcer and starts it (it sends once the
/// coordinator says `go`). A failed connect counts as a connect failure.
pub(super) async fn start_announcer(worker: &Rc<Worker>) {
    let plan = &worker.plan;
    if plan.globals == 0 || plan.worker != 0 {
        return;
    }
    let base = &plan.urls[0];
    let separator = if base.contains('?') { '&' } else { '?' };
    let url = format!("{base}{separator}user=lg-announcer");
    match connect_to(url, plan.source_of(0)).await {
        Ok(socket) => drop(tokio::task::spawn_local(announce(Rc::clone(worker), socket))),
        Err(error) => worker.fail(format!("the announcer: {error}")),
    }
}

/// Sends the globals evenly over the run, and reads (and drops) what comes back.
async fn announce(worker: Rc<Worker>, socket: super::Socket) {
    let (mut sink, mut stream) = socket.split();
    tokio::task::spawn_local(async move { while let Some(Ok(_)) = stream.next().await {} });
    let mut go = worker.go.clone();
    let Ok(go_at) = go.wait_for(Option::is_some).await.map(|at| at.expect("waited for Some"))
    else {
        return;
    };
    let plan = &worker.plan;
    let period = Duration::from_secs_f64(plan.duration / plan.globals as f64);
    let mut ticker = tokio::time::interval_at(go_at + period / 2, period);
    let mut text = String::with_capacity(128);
    for seq in 1..=plan.globals {
        ticker.tick().await;
        wire::write_global(&mut text, seq);
        if sink.send(Message::text(text.clone())).await.is_err() {
            bump(&worker.counters.publish_failures, 1);
            return;
        }
        bump(&worker.counters.global_sent, 1);
    }
}
