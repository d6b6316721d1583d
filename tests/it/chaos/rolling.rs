//! A rolling restart behind a real load balancer: `scripts/cluster.sh` (PostgreSQL, Redis, three
//! instances, nginx with least connections and no sticky sessions). The chaos clients connect only
//! to nginx and chat steadily; each instance in turn gets SIGTERM and is started again. Every
//! client whose instance went comes back through nginx, resumes with `since` and resends what had
//! no answer; at the end every acked message reached every member once, in order, and is stored
//! once, with no `recovered:false`. A watcher in every room sees no leave told for a client that
//! moved (the handover holds them back), and every client is soon listed in its room's presence.

use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use super::cluster::Cluster;
use super::{Crowd, CLIENTS, ROOMS, SETTLE};
use crate::common::TestServer;

/// A user in every room, through nginx, noting each chat client that leaves a room (reconnecting
/// when its own instance goes), until `stop`; `probed` is set once it has seen the probe leave.
async fn watch_leaves(
    (nginx, room_count): (std::net::SocketAddr, usize),
    stop: Arc<AtomicBool>,
    probed: Arc<AtomicBool>,
) -> Vec<String> {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let mut leaves = Vec::new();
    while !stop.load(SeqCst) {
        let url = format!("ws://{nginx}/ws?user=watcher");
        let Ok((mut ws, _)) = tokio_tungstenite::connect_async(url).await else { continue };
        for room in 0..room_count {
            let join = serde_json::json!({"type": "join", "room": format!("room-{room}")});
            let _ = ws.send(Message::text(join.to_string())).await;
        }
        while !stop.load(SeqCst) {
            let next = tokio::time::timeout(Duration::from_millis(100), ws.next()).await;
            let frame = match next {
                Err(_) => continue,
                Ok(Some(Ok(Message::Text(text)))) => text,
                Ok(Some(Ok(_))) => continue,
                Ok(_) => break,
            };
            let frame: serde_json::Value = serde_json::from_str(&frame).unwrap();
            if frame["type"] != "presence" {
                continue;
            }
            let changes = crate::common::presence_changes(&frame);
            if changes.iter().any(|(user, status)| user == "probe" && status == "leave") {
                probed.store(true, SeqCst);
            }
            let left = changes
                .into_iter()
                .filter(|(user, status)| status == "leave" && user.starts_with('c'));
            leaves.extend(left.map(|(user, _)| format!("{user} left {}", frame["room"])));
        }
    }
    leaves
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_behind_nginx_loses_nothing_and_repeats_nothing() {
    // ROLLING_CLIENTS makes a larger run (docs/benchmarks.md): a room per 20 clients, and one
    // client chatting in each (all of them in the small run).
    let size = std::env::var("ROLLING_CLIENTS").ok().and_then(|n| n.parse().ok());
    let clients_n: usize = size.unwrap_or(CLIENTS);
    let room_count = (clients_n / 20).max(ROOMS);
    let cluster = Cluster::up();
    let rooms = |n: usize| vec![format!("room-{}", n % room_count)];
    let crowd = Crowd::start(
        vec![cluster.nginx],
        false,
        (clients_n, CLIENTS.min(clients_n).max(room_count)),
        &rooms,
    )
    .await;
    let (watching, probed) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
    let watcher = tokio::spawn(watch_leaves(
        (cluster.nginx, room_count),
        Arc::clone(&watching),
        Arc::clone(&probed),
    ));
    // The watcher works: it sees a user join and leave.
    let probe_seen = async {
        while !probed.load(SeqCst) {
            let mut probe = TestServer::attach(cluster.nginx).member("probe", "room-0").await;
            let leave = serde_json::json!({"type": "leave", "room": "room-0", "id": "bye"});
            assert_eq!(probe.request(leave).await["type"], "ack");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    tokio::time::timeout(SETTLE, probe_seen).await.expect("the watcher saw the probe leave");
    // Traffic between the restarts: the chats go on at their pace meanwhile.
    let between = Duration::from_millis(700);
    for n in 1..=3 {
        tokio::time::sleep(between).await;
        cluster.restart(n).await;
    }
    // Every client is back in its room's presence, as the cluster tells it (a client that has
    // not found an instance yet is missing, so this also bounds how long clients stay away).
    let instance = TestServer::attach(cluster.instance(1));
    let back = std::time::Instant::now();
    let mut missing = Vec::new();
    loop {
        missing.clear();
        for room in 0..room_count {
            let path = format!("/api/v1/chat/rooms/room-{room}/online");
            let (_, answer) = instance.get(&path).await;
            let online = answer["users"].as_array().cloned().unwrap_or_default();
            let listed = |user: &str| online.iter().any(|listed| listed == user);
            let members = (0..clients_n).filter(|n| n % room_count == room);
            missing.extend(members.map(|n| format!("c{n}")).filter(|member| !listed(member)));
        }
        if missing.is_empty() || back.elapsed() > SETTLE {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let back = back.elapsed();
    watching.store(true, SeqCst);
    let leaves = watcher.await.unwrap();
    let front = TestServer::attach(cluster.nginx);
    let summary = crowd.wind_down(&front, (&rooms, room_count)).await;
    println!(
        "rolling restart behind nginx, {clients_n} clients in {room_count} rooms: {summary}; \
         every client listed in its room {back:?} after the last restart"
    );
    assert!(missing.is_empty(), "every client back in its room's presence: {missing:?}");
    // A leave told while a client moved is a flap its room saw: the handover holds it back.
    assert!(leaves.is_empty(), "no leave told for a client that moved: {leaves:?}");
    let first: Vec<&String> = summary.violations.iter().take(5).collect();
    assert!(first.is_empty(), "once each, in seq order: {first:?}");
    assert!(summary.resumes > 0, "clients of the restarted instances moved: {summary}");
    assert!(summary.acked > 100, "traffic flowed: {summary}");
    assert_eq!(summary.not_recovered, 0, "every resume recovered: {summary}");
    assert_eq!(summary.lost_acked, 0, "every acked message reached every member: {summary}");
    assert_eq!(summary.unstored, 0, "every acked message is stored once: {summary}");
}
