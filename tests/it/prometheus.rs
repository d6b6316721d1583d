//! The alerts and the dashboard against a real Prometheus (Debian's `prometheus`, which
//! scripts/test.sh installs) scraping the three instances of `scripts/cluster.sh`'s cluster
//! (PostgreSQL, Redis, nginx in front): every alert expression parses and the series it compares
//! exist, every dashboard query returns series, and with the database stopped the store alert
//! fires.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use hyper::{Method, StatusCode};
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use serde_json::Value;

use crate::chaos::cluster::Cluster;
use crate::common::{chat, http_text, TempDir, TestServer};

/// How long a series or an alert may take to show (the store alert waits its `for: 1m`).
const PATIENCE: Duration = Duration::from_secs(150);

struct Prometheus {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn repo(path: &str) -> String {
    format!("{}/{path}", env!("CARGO_MANIFEST_DIR"))
}

impl Prometheus {
    /// Scrapes `targets` every second and evaluates deploy/prometheus/alerts.yml every second;
    /// returns once it has scraped them.
    async fn start(dir: &TempDir, targets: &[SocketAddr]) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let config = format!(
            "global: {{ scrape_interval: 1s, evaluation_interval: 1s }}\n\
             rule_files: ['{}']\n\
             scrape_configs:\n  - job_name: wsbroker\n    static_configs:\n      - targets: [{}]\n",
            repo("deploy/prometheus/alerts.yml"),
            targets.iter().map(|target| format!("'{target}'")).collect::<Vec<_>>().join(", ")
        );
        let file = dir.0.join("prometheus.yml");
        std::fs::write(&file, config).unwrap();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", file.display()))
            .arg(format!("--storage.tsdb.path={}", dir.0.join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus is not installed: scripts/test.sh installs it (apt-get install prometheus)");
        let prometheus = Self { child, addr: SocketAddr::from(([127, 0, 0, 1], port)) };
        let listening = async {
            while tokio::net::TcpStream::connect(prometheus.addr).await.is_err() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        };
        tokio::time::timeout(PATIENCE, listening).await.expect("prometheus listens");
        let ready = async {
            while http_text(prometheus.addr, Method::GET, "/-/ready", None).await.0
                != StatusCode::OK
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        };
        tokio::time::timeout(PATIENCE, ready).await.expect("prometheus is ready");
        let every = format!("count(up{{job=\"wsbroker\"}} == 1) == {}", targets.len());
        prometheus.series(&every).await;
        prometheus
    }

    /// The result of an instant query (`Err`: Prometheus refused it, with why).
    async fn query(&self, promql: &str) -> Result<Vec<Value>, String> {
        let path = format!("/api/v1/query?query={}", utf8_percent_encode(promql, NON_ALPHANUMERIC));
        let (status, text) = http_text(self.addr, Method::GET, &path, None).await;
        let answer: Value = serde_json::from_str(&text).map_err(|_| text.clone())?;
        match status {
            StatusCode::OK => Ok(answer["data"]["result"].as_array().cloned().unwrap_or_default()),
            _ => Err(answer.to_string()),
        }
    }

    /// Polls `promql` until it returns series; panics with the last answer after [`PATIENCE`].
    async fn series(&self, promql: &str) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let answer = self.query(promql).await;
            if let Ok(series) = &answer {
                if !series.is_empty() {
                    return series.clone();
                }
            }
            assert!(tokio::time::Instant::now() < deadline, "{promql} gave no series: {answer:?}");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Polls the alerts until `name` is firing.
    async fn firing(&self, name: &str) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let (_, text) = http_text(self.addr, Method::GET, "/api/v1/alerts", None).await;
            let answer: Value = serde_json::from_str(&text).unwrap_or_default();
            let alerts = answer["data"]["alerts"].as_array().cloned().unwrap_or_default();
            let fires =
                |alert: &Value| alert["labels"]["alertname"] == name && alert["state"] == "firing";
            if alerts.iter().any(fires) {
                return;
            }
            assert!(tokio::time::Instant::now() < deadline, "{name} never fired: {answer}");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

/// Each alert's `expr` from alerts.yml.
fn alert_expressions() -> Vec<String> {
    let rules = std::fs::read_to_string(repo("deploy/prometheus/alerts.yml")).unwrap();
    let exprs: Vec<String> = rules
        .lines()
        .filter_map(|line| line.trim().strip_prefix("expr: "))
        .map(str::to_owned)
        .collect();
    assert!(exprs.len() >= 9, "{exprs:?}");
    exprs
}

/// An alert's expression without its final comparison (`X > 0.8` -> `X`): what must have series.
fn compared(expr: &str) -> &str {
    let at = [" == ", " > ", " < "].iter().filter_map(|op| expr.rfind(op)).max();
    at.map_or(expr, |at| &expr[..at])
}

/// Every query of deploy/grafana/wsbroker.json.
fn dashboard_queries() -> Vec<String> {
    let text = std::fs::read_to_string(repo("deploy/grafana/wsbroker.json")).unwrap();
    let dashboard: Value = serde_json::from_str(&text).unwrap();
    let panels = dashboard["panels"].as_array().unwrap();
    let targets = panels.iter().flat_map(|panel| panel["targets"].as_array().unwrap().iter());
    let queries: Vec<String> = targets.map(|t| t["expr"].as_str().unwrap().to_owned()).collect();
    assert!(queries.len() >= 16, "{queries:?}");
    queries
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_alert_and_dashboard_query_has_series_and_the_store_alert_fires() {
    let cluster = Cluster::up();
    let instances: Vec<SocketAddr> = (1..=3).map(|n| cluster.instance(n)).collect();
    let dir = TempDir::new("prometheus");
    let prometheus = Prometheus::start(&dir, &instances).await;
    // Traffic for every series, through nginx: chats (one refused), an HTTP read, connections
    // that end.
    let front = TestServer::attach(cluster.nginx);
    let mut alice = front.member("alice", "lobby").await;
    assert_eq!(alice.request(chat("lobby", "c1", "hello")).await["type"], "ack");
    assert_eq!(alice.request(chat("elsewhere", "c2", "no")).await["type"], "error");
    let (status, _) = front.get("/api/v1/chat/rooms/lobby/messages").await;
    assert_eq!(status, StatusCode::OK);
    drop(front.connect("/ws?user=bob").await);

    for expr in alert_expressions() {
        prometheus.query(&expr).await.unwrap_or_else(|why| panic!("{expr} does not parse: {why}"));
        prometheus.series(compared(&expr)).await;
    }
    for query in dashboard_queries() {
        prometheus.series(&query).await;
    }

    // A member on each instance, so that each writer learns the database is gone when it next
    // commits.
    let mut members = Vec::new();
    for instance in &instances {
        members.push(TestServer::attach(*instance).member("carol", "lobby").await);
    }
    cluster.stop("postgres");
    for (n, member) in members.iter_mut().enumerate() {
        member.send(chat("lobby", &format!("c3-{n}"), "into the void")).await;
    }
    let down = prometheus.series("wsbroker_store_up == 0").await;
    assert!(!down.is_empty());
    prometheus.firing("WsbrokerStoreUnavailable").await;
}
