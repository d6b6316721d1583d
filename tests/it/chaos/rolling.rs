//! A rolling restart behind a real load balancer: `scripts/cluster.sh` (PostgreSQL, Redis, three
//! instances, nginx with least connections and no sticky sessions). The chaos clients connect only
//! to nginx and chat steadily; each instance in turn gets SIGTERM and is started again. Every
//! client whose instance went comes back through nginx, resumes with `since` and resends what had
//! no answer; at the end every acked message reached every member once, in order, and is stored
//! once, with no `recovered:false`.

use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::client::{client, Shared};
use super::cluster::Cluster;
use super::{everyone, wind_down, CLIENTS, ROOMS};
use crate::common::TestServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_behind_nginx_loses_nothing_and_repeats_nothing() {
    let cluster = Cluster::up();
    let (progress, mut progressed) = tokio::sync::mpsc::unbounded_channel();
    let shared = Arc::new(Shared {
        live: Mutex::new(vec![cluster.nginx]),
        publishing: AtomicBool::new(false),
        chaos: AtomicBool::new(true),
        drops: false,
        progress,
        ends: Mutex::new(None),
        phase: tokio::sync::watch::Sender::new(0),
    });
    let rooms = |n: usize| vec![format!("room-{}", n % ROOMS)];
    let clients: Vec<_> =
        (0..CLIENTS).map(|n| tokio::spawn(client(n, rooms(n), Arc::clone(&shared)))).collect();
    everyone(&mut progressed, "joined its room").await;
    shared.publishing.store(true, SeqCst);
    shared.phase.send_replace(1);
    // Traffic between the restarts: the chats go on at their pace meanwhile.
    let between = Duration::from_millis(700);
    for n in 1..=3 {
        tokio::time::sleep(between).await;
        cluster.restart(n).await;
    }
    tokio::time::sleep(between).await;
    let front = TestServer::attach(cluster.nginx);
    let summary = wind_down(&shared, clients, &mut progressed, &front, &rooms).await;
    println!("rolling restart behind nginx: {summary}");
    let first: Vec<&String> = summary.violations.iter().take(5).collect();
    assert!(first.is_empty(), "once each, in seq order: {first:?}");
    assert!(summary.resumes > 0, "clients of the restarted instances moved: {summary}");
    assert!(summary.acked > 100, "traffic flowed: {summary}");
    assert_eq!(summary.not_recovered, 0, "every resume recovered: {summary}");
    assert_eq!(summary.lost_acked, 0, "every acked message reached every member: {summary}");
    assert_eq!(summary.unstored, 0, "every acked message is stored once: {summary}");
}
