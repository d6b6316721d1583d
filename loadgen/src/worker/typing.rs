//! Typing traffic (`--typing-every S`): each connection that does not publish tells its room it
//! started typing, then S seconds later that it stopped, and so on, staggered over the period, for
//! the run's duration. The typing events that come back are not counted; they only load the broker
//! and the receivers as a chatty room would.
//!
//! Owns: the schedule of one connection's typing frames. Must not: count anything as a delivery.

use std::rc::Rc;
use std::time::Duration;

use futures_util::{Sink, SinkExt};
use tokio_tungstenite::tungstenite::Message;

use super::Worker;

/// Sends `conn`'s typing frames from `go` to the end of the run.
pub(super) async fn type_along(
    worker: Rc<Worker>,
    conn: usize,
    mut sink: impl Sink<Message> + Unpin,
) {
    let plan = &worker.plan;
    let mut go = worker.go.clone();
    let Ok(go_at) = go.wait_for(Option::is_some).await.map(|at| at.expect("waited for Some"))
    else {
        return;
    };
    let period = Duration::from_secs_f64(plan.typing_every);
    let offset = period.mul_f64((conn % 1000) as f64 / 1000.0);
    let end = go_at + Duration::from_secs_f64(plan.duration);
    let mut ticker = tokio::time::interval_at(go_at + offset, period);
    let room = format!("r{}", plan.room_of(conn));
    let mut typing = true;
    loop {
        ticker.tick().await;
        if tokio::time::Instant::now() >= end {
            return;
        }
        let frame = format!(r#"{{"type":"typing","room":"{room}","data":{{"typing":{typing}}}}}"#);
        if sink.send(Message::text(frame)).await.is_err() {
            return;
        }
        typing = !typing;
    }
}
