//! A real `redis-server` on a free loopback port, for the cluster tests. `scripts/test.sh` installs
//! it when missing; a test that cannot find it fails.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::net::TcpStream;

use crate::common::WAIT;

pub struct RedisServer {
    pub port: u16,
    /// A replica's master's port.
    replica_of: Option<u16>,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts `redis-server` on a free port, without persistence, and waits until it accepts.
    pub async fn start() -> Self {
        Self::start_as(None).await
    }

    /// A replica of the server on `master`'s port, started the same way.
    pub async fn start_replica_of(master: u16) -> Self {
        Self::start_as(Some(master)).await
    }

    async fn start_as(replica_of: Option<u16>) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut server = Self { port, replica_of, child: None };
        server.restart().await;
        server
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the server (as a crash would); its data is gone.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again, empty, on the same port.
    pub async fn restart(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            // A replica writes the snapshot its master sends: into the temporary directory, not
            // the crate's (a dump.rdb once reached git that way).
            .args(["--dir", &std::env::temp_dir().to_string_lossy(), "--dbfilename", &format!("wsbroker-test-{}.rdb", self.port)])
            .args(self.replica_of.iter().flat_map(|master| ["--replicaof".to_owned(), "127.0.0.1".to_owned(), master.to_string()]))
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server is not installed: scripts/test.sh installs it (apt-get install redis-server)");
        self.child = Some(child);
        let accepting = async {
            while TcpStream::connect(("127.0.0.1", self.port)).await.is_err() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        tokio::time::timeout(WAIT, accepting).await.expect("redis-server accepts connections");
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}
