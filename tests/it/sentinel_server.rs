//! Redis under Sentinel on loopback: a master, a replica and three sentinels (`redis-sentinel`,
//! which scripts/test.sh installs), ready to fail over within a few seconds of the master's death.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::common::TempDir;
use crate::redis_server::RedisServer;

/// The monitored master's name.
pub const MASTER: &str = "mymaster";

/// How long a failover may take, from the master's death to a new master the sentinels name.
pub const FAILOVER: Duration = Duration::from_secs(30);

pub struct Sentinels {
    master: Option<RedisServer>,
    _replica: RedisServer,
    sentinels: Vec<(u16, Child)>,
    _dir: TempDir,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn spawn(program: &str, args: &[String]) -> Child {
    Command::new(program).args(args).stdout(Stdio::null()).spawn().unwrap_or_else(|err| {
        panic!("{program}: {err} (scripts/test.sh installs redis-server and redis-sentinel)")
    })
}

async fn query<T: redis::FromRedisValue>(port: u16, command: &redis::Cmd) -> redis::RedisResult<T> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}"))?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    command.query_async(&mut conn).await
}

/// Polls `check` until it holds, for at most `within`.
async fn until(what: &str, within: Duration, mut check: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + within;
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "not within {within:?}: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

impl Sentinels {
    /// Starts them all and waits until the replica is in sync and every sentinel knows the master,
    /// the replica and the two other sentinels (so that they can agree on a failover).
    pub async fn start() -> Self {
        let dir = TempDir::new("sentinel");
        let master = RedisServer::start().await;
        let replica = RedisServer::start_replica_of(master.port).await;
        let mut sentinels = Vec::new();
        for n in 0..3 {
            let port = free_port();
            let conf: PathBuf = dir.0.join(format!("sentinel-{n}.conf"));
            let text = format!(
                "port {port}\nbind 127.0.0.1\ndaemonize no\n\
                 sentinel monitor {MASTER} 127.0.0.1 {} 2\n\
                 sentinel down-after-milliseconds {MASTER} 1000\n\
                 sentinel failover-timeout {MASTER} 5000\n\
                 sentinel parallel-syncs {MASTER} 1\n",
                master.port
            );
            std::fs::write(&conf, text).unwrap();
            sentinels.push((port, spawn("redis-sentinel", &[conf.display().to_string()])));
        }
        let set = Self { master: Some(master), _replica: replica, sentinels, _dir: dir };
        let master_port = set.master.as_ref().unwrap().port;
        until("the replica is in sync", FAILOVER, async || {
            let info: redis::RedisResult<String> =
                query(master_port, redis::cmd("INFO").arg("replication")).await;
            // Listed is not in sync: a replica is listed while it waits for the master's snapshot
            // (5 s, diskless), and a master killed then leaves it empty. `online` is in sync.
            info.is_ok_and(|info| {
                info.contains("connected_slaves:1") && info.contains("state=online")
            })
        })
        .await;
        for (port, _) in &set.sentinels {
            let port = *port;
            until("each sentinel knows the replica and the others", FAILOVER, async || {
                let replicas: redis::RedisResult<Vec<redis::Value>> =
                    query(port, redis::cmd("SENTINEL").arg("replicas").arg(MASTER)).await;
                let others: redis::RedisResult<Vec<redis::Value>> =
                    query(port, redis::cmd("SENTINEL").arg("sentinels").arg(MASTER)).await;
                replicas.is_ok_and(|r| r.len() == 1) && others.is_ok_and(|o| o.len() == 2)
            })
            .await;
        }
        set
    }

    /// `redis+sentinel://` with the three sentinels.
    pub fn url(&self) -> String {
        let hosts: Vec<String> =
            self.sentinels.iter().map(|(port, _)| format!("127.0.0.1:{port}")).collect();
        format!("redis+sentinel://{}/{MASTER}", hosts.join(","))
    }

    /// Kills the master (as a crash would) and waits until the sentinels name the replica instead.
    pub async fn kill_master(&mut self) {
        let old = self.master.take().expect("a master to kill");
        let old_port = old.port;
        drop(old);
        let sentinel = self.sentinels[0].0;
        until("the sentinels promoted the replica", FAILOVER, async || {
            let named: redis::RedisResult<(String, u16)> =
                query(sentinel, redis::cmd("SENTINEL").arg("get-master-addr-by-name").arg(MASTER))
                    .await;
            named.is_ok_and(|(_, port)| port != old_port)
        })
        .await;
    }
}

impl Drop for Sentinels {
    fn drop(&mut self) {
        for (_, child) in &mut self.sentinels {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
