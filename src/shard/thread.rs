//! Shard threads: each shard runs on its own OS thread, in a single-threaded tokio runtime with its
//! own I/O reactor and timers; its reader (`reader`) and the sessions of its TLS connections run there
//! too.
//!
//! Owns: the shard threads and their runtimes. Must not: run anything but a shard, its reader and its sessions on a
//! shard runtime; the HTTP side has its own runtime.
//!
//! Why: a shard's fan-out wakes each recipient's reader or session. On one thread that wake is a push onto a
//! local run queue. On a work-stealing pool it crossed threads (futex wake-ups, stolen tasks).

use std::io;

use tokio::runtime::Handle;
use tokio::sync::oneshot;

use super::Shard;
use crate::hub::Hub;
use crate::mailbox::Inbox;

/// A running shard thread.
#[derive(Debug)]
pub struct ShardThread {
    /// Where the shard's reader and sessions are spawned.
    pub runtime: Handle,
    /// Completes when the shard has stopped (after shutdown, once its last connection is gone).
    pub stopped: oneshot::Receiver<()>,
}

/// Starts one thread per inbox; shard `i` reads `inboxes[i]`.
pub fn start_all(hub: &Hub, inboxes: Vec<Inbox>) -> io::Result<Vec<ShardThread>> {
    inboxes.into_iter().enumerate().map(|(id, inbox)| start(id, Hub::clone(hub), inbox)).collect()
}

fn start(id: usize, hub: Hub, inbox: Inbox) -> io::Result<ShardThread> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let handle = runtime.handle().clone();
    let (stopped_tx, stopped) = oneshot::channel();
    std::thread::Builder::new().name(format!("shard-{id}")).spawn(move || {
        runtime.block_on(Shard::new(id, hub).run(inbox));
        let _ = stopped_tx.send(());
        // Dropping the runtime here drops any task still parked on it; by now every connection has ended.
    })?;
    Ok(ShardThread { runtime: handle, stopped })
}
