//! Redis fails over under Sentinel while clients chat: two instances on one PostgreSQL reach Redis
//! through `redis+sentinel://` (three sentinels, a master and a replica). The master is killed; the
//! sentinels promote the replica; each instance's relay asks them again and carries on. Clients
//! that saw a hole resume; what an instance could not recover is said (`recovered:false`), and a
//! client never told so lost nothing acked. Every acked message is stored once.

use std::time::{Duration, Instant};

use super::{Crowd, CLIENTS, ROOMS};
use crate::common::{spawn_broker, BrokerProcess, TestServer};
use crate::postgres_server::PostgresServer;
use crate::sentinel_server::{Sentinels, FAILOVER};

async fn instance(redis: &str, database: &str, id: &str) -> (BrokerProcess, TestServer) {
    let args = ["--redis-url", redis, "--instance-id", id, "--database-url", database];
    let more = ["--recovery-window", "1000", "--rate-limit", "0", "--shards", "2"];
    let (process, server) = spawn_broker(&[&args[..], &more[..]].concat()).await;
    server.wait_get("/readyz", |status, _| status == 200).await;
    (process, server)
}

/// Polls `server` until its relay has connected to Redis again (to the new master), for at most
/// [`FAILOVER`].
async fn reconnected(server: &TestServer) {
    let deadline = tokio::time::Instant::now() + FAILOVER;
    while server.metric("wsbroker_redis_reconnects_total").await == 0 {
        assert!(tokio::time::Instant::now() < deadline, "the relay never reconnected");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sentinel_failover_under_chat_loses_nothing_acked() {
    let mut sentinels = Sentinels::start().await;
    let postgres = PostgresServer::start().await;
    let database = postgres.database("failover").await;
    let url = sentinels.url();
    let brokers = [instance(&url, &database, "a").await, instance(&url, &database, "b").await];
    let rooms = |n: usize| vec![format!("room-{}", n % ROOMS)];
    let crowd = Crowd::start(
        brokers.iter().map(|(_, server)| server.addr).collect(),
        false,
        (CLIENTS, CLIENTS),
        &rooms,
    )
    .await;
    let traffic = Duration::from_millis(1000);
    tokio::time::sleep(traffic).await;

    let killed = Instant::now();
    sentinels.kill_master().await;
    let promoted = killed.elapsed();
    for (_, server) in &brokers {
        reconnected(server).await;
        assert_eq!(server.metric("wsbroker_redis_up").await, 1);
    }
    let back = killed.elapsed();
    tokio::time::sleep(traffic).await;
    let front = TestServer::attach(brokers[0].1.addr);
    let summary = crowd.wind_down(&front, (&rooms, ROOMS)).await;
    println!(
        "sentinel failover: promoted after {promoted:?}, both instances on the new master after {back:?}; {summary}"
    );
    let first: Vec<&String> = summary.violations.iter().take(5).collect();
    assert!(first.is_empty(), "once each, in seq order: {first:?}");
    assert!(summary.acked > 100, "traffic flowed: {summary}");
    // A resume while Redis is away is answered `interrupted` (not a loss), and the hole it left is
    // filled by a resume once Redis is back: every client recovered, so none was let off below.
    assert_eq!(summary.not_recovered, 0, "every resume recovered: {summary}");
    assert_eq!(summary.lost_acked, 0, "every acked message reached every member: {summary}");
    assert_eq!(summary.unstored, 0, "every acked message is stored once: {summary}");
}
