//! Attachments through real sockets: uploads of 0 B to 25 MiB come back byte for byte (SQLite and
//! PostgreSQL), the type comes from the bytes, downloads are safe (nosniff, sandbox, attachment),
//! ranges and ETags, limits and quotas, permissions, hostile files, and chats that carry files.

use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::HeaderMap;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpStream;

use crate::common::{chat, start_server_with, stored_server, TempDir, TestServer, WAIT};
use crate::postgres_server::PostgresServer;

/// One HTTP exchange with raw bytes: status, headers, body.
async fn exchange(
    addr: SocketAddr,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> (StatusCode, HeaderMap, Bytes) {
    let go = async {
        let stream = TcpStream::connect(addr).await.unwrap();
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
        tokio::spawn(connection);
        let mut request = Request::builder().method(method).uri(path).header("host", "test");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = sender.send_request(request.body(Full::new(Bytes::from(body))).unwrap());
        let response = response.await.unwrap();
        let (status, headers) = (response.status(), response.headers().clone());
        (status, headers, response.into_body().collect().await.unwrap().to_bytes())
    };
    tokio::time::timeout(WAIT * 6, go).await.expect("HTTP exchange timed out")
}

pub async fn upload(
    server: &TestServer,
    room: &str,
    user: &str,
    name: &str,
    bytes: Vec<u8>,
) -> (StatusCode, Value) {
    let path = format!("/api/v1/chat/rooms/{room}/attachments?user={user}&name={name}");
    let (status, _, body) = exchange(server.addr, Method::POST, &path, &[], bytes).await;
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

pub async fn download(
    server: &TestServer,
    id: &str,
    user: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, HeaderMap, Bytes) {
    let path = format!("/api/v1/chat/attachments/{id}?user={user}");
    exchange(server.addr, Method::GET, &path, headers, Vec::new()).await
}

/// Bytes that are no known type (not UTF-8 either).
pub fn noise(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8 | 0x80).collect()
}

fn png(width: u32, height: u32) -> Vec<u8> {
    let mut out = Vec::new();
    let image = image::RgbImage::from_fn(width, height, |x, y| image::Rgb([x as u8, y as u8, 7]));
    image.write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png).unwrap();
    out
}

async fn round_trips(server: &TestServer) {
    let _alice = server.member("alice", "files").await;
    for len in [0, 1, 1 << 20, 25 << 20] {
        let bytes = noise(len);
        let (status, answer) = upload(server, "files", "alice", "blob.bin", bytes.clone()).await;
        assert_eq!(status, StatusCode::CREATED, "{len}: {answer}");
        assert_eq!(answer["size"], len, "{answer}");
        let id = answer["id"].as_str().unwrap();
        let (status, headers, body) = download(server, id, "alice", &[]).await;
        assert_eq!(status, StatusCode::OK, "{len}");
        assert!(body == bytes, "{len} bytes come back as they went");
        assert_eq!(headers["x-content-type-options"], "nosniff");
        assert!(headers["content-disposition"].to_str().unwrap().starts_with("attachment;"));
    }
}

#[tokio::test]
async fn files_of_0_b_1_b_1_mib_and_25_mib_come_back_byte_for_byte_on_sqlite() {
    let dir = TempDir::new("files-sqlite");
    round_trips(&stored_server(&dir).await).await;
}

#[tokio::test]
async fn files_of_0_b_1_b_1_mib_and_25_mib_come_back_byte_for_byte_on_postgres() {
    let postgres = PostgresServer::start().await;
    let url = postgres.database("files").await;
    let server = start_server_with(move |c| c.database_url = url.parse().unwrap()).await;
    round_trips(&server).await;
}

#[tokio::test]
async fn the_type_comes_from_the_bytes_and_downloads_are_safe_ranged_and_cached() {
    let dir = TempDir::new("files-types");
    let server = stored_server(&dir).await;
    let _alice = server.member("alice", "files").await;
    // A PNG said to be HTML is a PNG: served inline, with its size and a thumbnail.
    let path = "/api/v1/chat/rooms/files/attachments?user=alice&name=x.html";
    let (status, _, body) =
        exchange(server.addr, Method::POST, path, &[("content-type", "text/html")], png(640, 480))
            .await;
    assert_eq!(status, StatusCode::CREATED);
    let answer: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        (answer["type"].as_str(), answer["width"].as_i64(), answer["height"].as_i64()),
        (Some("image/png"), Some(640), Some(480))
    );
    let id = answer["id"].as_str().unwrap().to_owned();
    let (status, headers, _) = download(&server, &id, "alice", &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "image/png");
    assert!(headers["content-disposition"].to_str().unwrap().starts_with("inline;"));
    assert!(headers["content-security-policy"].to_str().unwrap().contains("sandbox"));
    let path = format!("/api/v1/chat/attachments/{id}/thumbnail?user=alice");
    let (status, _, thumb) = exchange(server.addr, Method::GET, &path, &[], Vec::new()).await;
    assert_eq!(status, StatusCode::OK);
    let thumb = image::load_from_memory(&thumb).unwrap();
    assert_eq!((thumb.width(), thumb.height()), (320, 240));

    // HTML is stored, and served as a download that cannot run.
    let (status, answer) = upload(
        &server,
        "files",
        "alice",
        "page.html",
        b"<!doctype html><script>alert(1)</script>".to_vec(),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(answer["type"], "text/html");
    let (_, headers, _) = download(&server, answer["id"].as_str().unwrap(), "alice", &[]).await;
    assert!(headers["content-disposition"].to_str().unwrap().starts_with("attachment;"));
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert!(headers["content-security-policy"].to_str().unwrap().starts_with("sandbox"));

    // Ranges across chunks, and the ETag.
    let bytes = noise(600 * 1024);
    let (_, answer) = upload(&server, "files", "alice", "big.bin", bytes.clone()).await;
    let big = answer["id"].as_str().unwrap();
    let (status, headers, body) =
        download(&server, big, "alice", &[("range", "bytes=262000-262299")]).await;
    assert_eq!(status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(headers["content-range"], format!("bytes 262000-262299/{}", bytes.len()));
    assert!(body == bytes[262_000..262_300]);
    let (status, _, _) = download(&server, big, "alice", &[("range", "bytes=9999999-")]).await;
    assert_eq!(status, StatusCode::RANGE_NOT_SATISFIABLE);
    let etag = headers["etag"].to_str().unwrap().to_owned();
    let (status, _, body) = download(&server, big, "alice", &[("if-none-match", &etag)]).await;
    assert_eq!((status, body.len()), (StatusCode::NOT_MODIFIED, 0));
}

#[tokio::test]
async fn limits_quotas_and_hostile_files_get_clear_errors_and_leave_nothing() {
    let dir = TempDir::new("files-limits");
    let url = dir.sqlite();
    let server = start_server_with(move |c| {
        c.database_url = url;
        c.max_attachment = 1 << 20;
        c.upload_quota = (3 << 20) + 500;
        c.upload_rate = 5;
    })
    .await;
    let _alice = server.member("alice", "files").await;
    let (status, answer) = upload(&server, "files", "alice", "big", noise((1 << 20) + 1)).await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, Some("too_large"))
    );
    for n in 0..3 {
        let (status, answer) =
            upload(&server, "files", "alice", &format!("f{n}"), noise(1 << 20)).await;
        assert_eq!(status, StatusCode::CREATED, "{n}: {answer}");
    }
    let (status, answer) = upload(&server, "files", "alice", "one-more", noise(1000)).await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (StatusCode::TOO_MANY_REQUESTS, Some("quota_exceeded"))
    );
    // A corrupt image and a decompression bomb (a 20,000 × 20,000 PNG header) are refused.
    let mut truncated = png(64, 64);
    truncated.truncate(truncated.len() / 2);
    let (status, answer) = upload(&server, "files", "alice", "bad.png", truncated).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    let (status, answer) = upload(&server, "files", "alice", "bomb.png", bomb()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert!(answer["error"]["message"].as_str().unwrap().contains("larger than"), "{answer}");
    // Refused uploads leave nothing, so they count for neither the quota nor the rate: 3 stored,
    // 2 more small ones make 5 in the minute, and the 6th is over the rate.
    for n in 0..2 {
        let (status, answer) = upload(&server, "files", "alice", &format!("r{n}"), noise(10)).await;
        assert_eq!(status, StatusCode::CREATED, "{answer}");
    }
    let (status, answer) = upload(&server, "files", "alice", "r2", noise(10)).await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (StatusCode::TOO_MANY_REQUESTS, Some("rate_limited"))
    );
}

/// A PNG whose header says 20,000 × 20,000 (its pixels would take 1.6 GB).
fn bomb() -> Vec<u8> {
    png_header(20_000, 20_000)
}

fn png_header(width: u32, height: u32) -> Vec<u8> {
    fn crc(bytes: &[u8]) -> u32 {
        let mut crc = 0xffff_ffff_u32;
        for byte in bytes {
            crc ^= u32::from(*byte);
            for _ in 0..8 {
                crc = if crc & 1 == 1 { (crc >> 1) ^ 0xedb8_8320 } else { crc >> 1 };
            }
        }
        !crc
    }
    let mut png = vec![0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a];
    let mut ihdr = b"IHDR".to_vec();
    ihdr.extend(width.to_be_bytes());
    ihdr.extend(height.to_be_bytes());
    ihdr.extend([8, 2, 0, 0, 0]);
    png.extend(13_u32.to_be_bytes());
    png.extend(&ihdr);
    png.extend(crc(&ihdr).to_be_bytes());
    png
}

#[tokio::test]
async fn only_participants_upload_and_readers_download_and_a_deleted_messages_files_are_gone() {
    let dir = TempDir::new("files-permissions");
    let server = stored_server(&dir).await;
    let body = json!({"name": "team", "type": "private", "members": ["bob"]});
    let (status, _) = server.post("/api/v1/chat/rooms?user=alice", body).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) = upload(&server, "team", "carol", "x", noise(10)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "carol takes no part in team");
    let mut alice = server.member("alice", "team").await;
    let mut bob = server.member("bob", "team").await;
    let (status, answer) = upload(&server, "team", "alice", "plan.pdf", noise(5000)).await;
    assert_eq!(status, StatusCode::CREATED);
    let id = answer["id"].as_str().unwrap().to_owned();
    // Before a message carries it, the file is its uploader's only.
    assert_eq!(download(&server, &id, "bob", &[]).await.0, StatusCode::NOT_FOUND);
    // Bob cannot carry alice's upload; alice can, once.
    let mut theirs = chat("team", "b1", "mine now");
    theirs["data"]["attachments"] = json!([id]);
    assert_eq!(bob.request(theirs).await["data"]["code"], "bad_request");
    let mut carried = chat("team", "a1", "the plan");
    carried["data"]["attachments"] = json!([id]);
    assert_eq!(alice.request(carried.clone()).await["type"], "ack");
    let seen = bob.recv_where(|f| f["id"] == "a1").await;
    assert_eq!(seen["data"]["attachments"][0]["id"], id.as_str(), "{seen}");
    assert_eq!(seen["data"]["attachments"][0]["name"], "plan.pdf");
    assert_eq!(seen["data"]["attachments"][0]["size"], 5000);
    carried["id"] = json!("a2");
    assert_eq!(alice.request(carried).await["data"]["code"], "bad_request", "taken already");
    let mut bad = chat("team", "a3", "x");
    bad["data"]["attachments"] = json!("not a list");
    assert_eq!(alice.request(bad).await["data"]["code"], "bad_request");

    assert_eq!(download(&server, &id, "bob", &[]).await.0, StatusCode::OK);
    assert_eq!(download(&server, &id, "carol", &[]).await.0, StatusCode::FORBIDDEN);
    let (status, _) = server.delete("/api/v1/chat/rooms/team/messages/a1?user=alice").await;
    assert!(status.is_success());
    assert_eq!(download(&server, &id, "alice", &[]).await.0, StatusCode::NOT_FOUND);
    // History shows the message's files.
    let _ = server;
}

#[tokio::test]
async fn an_upload_that_stalls_or_says_more_than_it_sends_is_cut_off_and_leaves_nothing() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = TempDir::new("files-stall");
    let url = dir.sqlite();
    let server = start_server_with(move |c| {
        c.database_url = url;
        c.handshake_timeout = std::time::Duration::from_millis(500);
    })
    .await;
    let _alice = server.member("alice", "files").await;
    // A large declared length, then a few bytes, then nothing.
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let head = "POST /api/v1/chat/rooms/files/attachments?user=alice&name=slow HTTP/1.1\r\n\
                host: test\r\ncontent-length: 1000000\r\n\r\nsome bytes";
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = String::new();
    let read = tokio::time::timeout(WAIT, stream.read_to_string(&mut answer)).await;
    let _ = read.expect("answered within the wait");
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("stalled"), "{answer}");
    let (status, _) = server.get("/api/v1/chat/rooms/files/messages?user=alice").await;
    assert_eq!(status, StatusCode::OK, "the broker serves on");
    // Nothing of it counts: the quota sees no bytes (a full-size upload still fits).
    let (status, _) = upload(&server, "files", "alice", "after", noise(10)).await;
    assert_eq!(status, StatusCode::CREATED);
}
