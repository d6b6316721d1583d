//! Attachments across a cluster (an upload to one instance is at once downloadable from
//! another), what a 25 MiB upload costs the broker's memory, and the store's write rate for files.

use hyper::StatusCode;
use serde_json::json;

use crate::attachments::{download, noise, upload};
use crate::common::{chat, spawn_broker, start_server_with, TempDir};
use crate::postgres_server::PostgresServer;
use crate::redis_server::RedisServer;

#[tokio::test]
async fn an_upload_to_one_instance_is_carried_and_downloaded_on_another() {
    let (redis, postgres) = (RedisServer::start().await, PostgresServer::start().await);
    let url = postgres.database("files_cluster").await;
    let instance = |id: &'static str| {
        let (redis, url) = (redis.url(), url.clone());
        start_server_with(move |c| {
            c.database_url = url.parse().unwrap();
            c.redis_url = Some(redis);
            c.instance_id = Some(id.into());
        })
    };
    let (a, b) = (instance("a").await, instance("b").await);
    let mut alice = a.member("alice", "shared").await;
    let mut bob = b.member("bob", "shared").await;
    let bytes = noise(700 * 1024);
    let (status, answer) = upload(&a, "shared", "alice", "report.bin", bytes.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    let id = answer["id"].as_str().unwrap();
    let mut carried = chat("shared", "a1", "the report");
    carried["data"]["attachments"] = json!([id]);
    assert_eq!(alice.request(carried).await["type"], "ack");
    let seen = bob.recv_where(|f| f["id"] == "a1").await;
    assert_eq!(seen["data"]["attachments"][0]["size"], bytes.len(), "{seen}");
    let (status, _, body) = download(&b, id, "bob", &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body == bytes, "byte for byte from the other instance");
}

/// A process's resident set and its high-water mark, in KiB.
fn memory(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        let line = status.lines().find(|l| l.starts_with(name)).unwrap();
        line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap()
    };
    (field("VmRSS:"), field("VmHWM:"))
}

#[tokio::test]
async fn a_25_mib_upload_grows_the_brokers_memory_by_less_than_2_mib() {
    let dir = TempDir::new("files-rss");
    let url = dir.sqlite_url();
    let (broker, server) = spawn_broker(&["--database-url", &url]).await;
    let pid = broker.0.id();
    let _alice = server.member("alice", "files").await;
    // Warm up: a first upload (and download) makes the writer and a reader allocate their usual.
    let (status, answer) = upload(&server, "files", "alice", "warm.bin", noise(1 << 20)).await;
    assert_eq!(status, StatusCode::CREATED);
    download(&server, answer["id"].as_str().unwrap(), "alice", &[]).await;
    let (before, _) = memory(pid);
    // The high-water mark starts again from now (Linux: 5 into clear_refs).
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").unwrap();
    let (status, answer) = upload(&server, "files", "alice", "big.bin", noise(25 << 20)).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    let (after, peak) = memory(pid);
    let grew = peak.saturating_sub(before);
    println!("RSS before {before} KiB, after {after} KiB, peak during the upload {peak} KiB: +{grew} KiB");
    assert!(grew < 2048, "a 25 MiB upload grew the broker by {grew} KiB");
}

#[tokio::test]
async fn uploads_together_are_written_no_faster_than_the_attachment_write_rate() {
    let dir = TempDir::new("files-rate");
    let url = dir.sqlite_url().parse().unwrap();
    let server = start_server_with(move |c| {
        c.database_url = url;
        c.attachment_write_rate = 4;
    })
    .await;
    let _alice = server.member("alice", "files").await;
    let _bob = server.member("bob", "files").await;
    let (one, two) = (noise(2 << 20), noise(2 << 20));
    let started = std::time::Instant::now();
    let (first, second) = tokio::join!(
        upload(&server, "files", "alice", "one.bin", one.clone()),
        upload(&server, "files", "bob", "two.bin", two.clone()),
    );
    let took = started.elapsed();
    assert_eq!((first.0, second.0), (StatusCode::CREATED, StatusCode::CREATED));
    // 4 MiB at 4 MiB/s: a second, less the last chunk's share, whose wait follows its commit.
    assert!(took.as_secs_f64() > 0.75, "4 MiB stored at 4 MiB/s in {took:?}");
    for ((_, answer), bytes, user) in [(first, one, "alice"), (second, two, "bob")] {
        let (_, _, body) = download(&server, answer["id"].as_str().unwrap(), user, &[]).await;
        assert!(body == bytes, "byte for byte");
    }
}
