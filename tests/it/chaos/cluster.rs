//! A cluster run by the deployment's own script (`scripts/cluster.sh`: PostgreSQL, Redis, three
//! instances, nginx), for the tests that need a load balancer in front.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::SETTLE;

use crate::common::TempDir;

/// A cluster run by the deployment's own script, taken down when dropped.
pub(crate) struct Cluster {
    _dir: TempDir,
    /// The script's CLUSTER_DIR.
    pub(crate) home: PathBuf,
    pub(crate) nginx: SocketAddr,
}

fn script(home: &Path, args: &[&str]) {
    script_owned_by(home, args, std::process::id());
}

/// `scripts/cluster.sh ARGS`; a cluster it brings up goes down by itself once `owner` is gone.
fn script_owned_by(home: &Path, args: &[&str], owner: u32) {
    let status = Command::new(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/cluster.sh"))
        .args(args)
        .env("CLUSTER_DIR", home)
        .env("CLUSTER_OWNER", owner.to_string())
        .env("PORT", "0")
        // `CLUSTER_BROKER_BIN` runs another build (a heap profile's, a wrapper) under the tests.
        .env(
            "WSBROKER_BIN",
            std::env::var("CLUSTER_BROKER_BIN")
                .unwrap_or_else(|_| env!("CARGO_BIN_EXE_wsbroker").to_owned()),
        )
        .env("WSBROKER_ARGS", "--rate-limit 0 --recovery-window 1000 --shards 2")
        .status()
        .expect("run scripts/cluster.sh");
    assert!(
        status.success(),
        "scripts/cluster.sh {args:?} failed (scripts/test.sh installs nginx, Redis, PostgreSQL)"
    );
}

impl Cluster {
    pub(crate) fn up() -> Self {
        let dir = TempDir::new("rolling");
        let home = dir.0.join("cluster");
        script(&home, &["up"]);
        let port = std::fs::read_to_string(home.join("nginx.port")).unwrap();
        let nginx = SocketAddr::from(([127, 0, 0, 1], port.trim().parse().unwrap()));
        Self { _dir: dir, home, nginx }
    }

    /// Instance `n` (1-3): SIGTERM, its exit, started again and ready.
    pub(crate) async fn restart(&self, n: usize) {
        let home = self.home.clone();
        let restarted =
            tokio::task::spawn_blocking(move || script(&home, &["restart", &n.to_string()]));
        tokio::time::timeout(SETTLE, restarted).await.expect("the restart finished").unwrap();
    }
}

impl Cluster {
    /// The process id of instance `n` (1-3).
    pub(crate) fn pid(&self, n: usize) -> u32 {
        let pid = std::fs::read_to_string(self.home.join(format!("instance{n}.pid"))).unwrap();
        pid.trim().parse().unwrap()
    }

    /// Instance `n`'s own address (not through nginx).
    pub(crate) fn instance(&self, n: usize) -> SocketAddr {
        let port = std::fs::read_to_string(self.home.join(format!("instance{n}.port"))).unwrap();
        SocketAddr::from(([127, 0, 0, 1], port.trim().parse().unwrap()))
    }

    /// `scripts/cluster.sh stop PART`: postgres, redis, instanceN.
    pub(crate) fn stop(&self, part: &str) {
        script(&self.home, &["stop", part]);
    }

    /// PostgreSQL's port.
    pub(crate) fn postgres_port(&self) -> u16 {
        std::fs::read_to_string(self.home.join("postgres.port")).unwrap().trim().parse().unwrap()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        script(&self.home, &["down"]);
    }
}

/// A test killed with its cluster up (SIGKILL: no `Drop`) leaves nothing running: the cluster
/// goes down once the process that brought it up is gone.
#[test]
fn a_cluster_whose_owner_is_gone_takes_itself_down() {
    let mut owner = Command::new("sleep").arg("600").spawn().expect("start a stand-in owner");
    let dir = TempDir::new("owned");
    let home = dir.0.join("cluster");
    script_owned_by(&home, &["up"], owner.id());
    let pid = |part: &str| std::fs::read_to_string(home.join(format!("{part}.pid"))).unwrap();
    let running: Vec<String> = ["postgres", "redis", "instance1", "nginx"].map(pid).into();
    owner.kill().unwrap();
    owner.wait().unwrap();
    // `down` stops the parts in turn, each given up to 30 s (an instance drains its connections
    // first), so on a busy machine it takes longer than one restart's `SETTLE`.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(150);
    while home.exists() {
        assert!(std::time::Instant::now() < deadline, "the cluster is still up in {home:?}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    for pid in running {
        // Gone, or a zombie nobody reaped yet (their parent, the script, exited long ago).
        let status = std::fs::read_to_string(format!("/proc/{}/status", pid.trim()));
        let alive = status.is_ok_and(|s| !s.lines().any(|l| l.starts_with("State:\tZ")));
        assert!(!alive, "process {} outlived its cluster", pid.trim());
    }
}
