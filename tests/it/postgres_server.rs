//! A real PostgreSQL server of the test's own: `initdb` and `postgres` in a temporary directory, on
//! a free loopback port, as the `postgres` user. `scripts/test.sh` installs PostgreSQL when it is
//! missing; a test that cannot find it fails.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use crate::common::WAIT;

static NEXT: AtomicU32 = AtomicU32::new(0);

pub struct PostgresServer {
    pub port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

/// The directory of Debian's PostgreSQL binaries (the newest version installed).
fn bin_dir() -> PathBuf {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect(
            "PostgreSQL is not installed: scripts/test.sh installs it (apt-get install postgresql)",
        )
        .filter_map(|entry| entry.ok().map(|e| e.path().join("bin")))
        .filter(|bin| bin.join("postgres").exists())
        .collect();
    versions.sort();
    versions.pop().expect("no /usr/lib/postgresql/<version>/bin/postgres")
}

/// The uid and gid of the `postgres` user (PostgreSQL refuses to run as root).
fn postgres_ids() -> (u32, u32) {
    let id = |flag: &str| {
        let out = Command::new("id").args([flag, "postgres"]).output().expect("run id");
        String::from_utf8(out.stdout).unwrap().trim().parse::<u32>().expect("a postgres user")
    };
    (id("-u"), id("-g"))
}

fn as_postgres(program: &Path) -> Command {
    let (uid, gid) = postgres_ids();
    let mut command = Command::new(program);
    command.uid(uid).gid(gid).stdout(Stdio::null()).stderr(Stdio::null());
    command
}

impl PostgresServer {
    /// A new cluster in a temporary directory, started and accepting connections.
    pub async fn start() -> Self {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("wsbroker-pg-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let status = Command::new("chown").args(["postgres:postgres"]).arg(&dir).status().unwrap();
        assert!(status.success(), "chown the data directory");
        let initdb = as_postgres(&bin_dir().join("initdb"))
            .arg("-D")
            .arg(dir.join("data"))
            .args(["-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8"])
            .status()
            .expect("run initdb");
        assert!(initdb.success(), "initdb");
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut server = Self { port, dir, child: None };
        server.restart().await;
        server
    }

    /// The URL of database `name` on this server.
    pub fn url(&self, name: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }

    /// Creates database `name` and returns its URL.
    pub async fn database(&self, name: &str) -> String {
        let admin = self.url("postgres");
        let sql = format!("CREATE DATABASE {name}");
        tokio::task::spawn_blocking(move || {
            let mut client = postgres::Client::connect(&admin, postgres::NoTls).expect("connect");
            client.batch_execute(&sql).expect("create the database");
        })
        .await
        .unwrap();
        self.url(name)
    }

    /// Stops the server (fast shutdown: open connections are cut); its data stays.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").args(["-INT", &child.id().to_string()]).status();
            let _ = child.wait();
        }
    }

    /// Starts it (again) on the same port and data, and waits until it accepts connections.
    pub async fn restart(&mut self) {
        let child = as_postgres(&bin_dir().join("postgres"))
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(["-p", &self.port.to_string(), "-k"])
            .arg(&self.dir)
            .args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"])
            .spawn()
            .expect("start postgres");
        self.child = Some(child);
        let url = self.url("postgres");
        let accepting = async {
            loop {
                let url = url.clone();
                let up = tokio::task::spawn_blocking(move || {
                    postgres::Client::connect(&url, postgres::NoTls).is_ok()
                });
                if up.await.unwrap() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        };
        tokio::time::timeout(WAIT, accepting).await.expect("postgres accepts connections");
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
