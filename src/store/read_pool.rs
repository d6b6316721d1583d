//! The read pool: a few threads, each with its own database connection, answering reads.
//!
//! Owns: the read connections. Takes questions from one shared bounded queue, so a slow query
//! holds up one reader, never the writer. Must not: write.

use std::sync::Arc;

use super::jobs::ReadJob;
use super::ops;
use super::{DatabaseUrl, Engine};
use crate::metrics::StoreCounters;

/// Starts `count` reader threads on `jobs`; they stop once every handle is gone.
pub fn start(
    count: usize,
    url: &DatabaseUrl,
    jobs: &flume::Receiver<ReadJob>,
    counters: &Arc<StoreCounters>,
) -> std::io::Result<()> {
    for n in 0..count {
        let (url, jobs, counters) = (url.clone(), jobs.clone(), Arc::clone(counters));
        std::thread::Builder::new()
            .name(format!("wsbroker-reader-{n}"))
            .spawn(move || serve(&url, &jobs, &counters))?;
    }
    Ok(())
}

fn serve(url: &DatabaseUrl, jobs: &flume::Receiver<ReadJob>, counters: &StoreCounters) {
    let mut engine: Option<Box<dyn Engine>> = None;
    while let Ok(job) = jobs.recv() {
        let started = std::time::Instant::now();
        let answer = match engine.as_deref_mut() {
            Some(engine) => ops::read(engine, &job.read),
            None => url
                .connect()
                .and_then(|opened| ops::read(engine.insert(opened).as_mut(), &job.read)),
        };
        if answer.is_err() {
            // The connection may be broken: the next question opens a new one.
            engine = None;
        }
        counters.read_latency.record(started.elapsed());
        let _ = job.reply.send(answer);
    }
}
