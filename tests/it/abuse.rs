//! Protection against abusive clients: foreign origins, slow handshakes, floods, too many connections.

use std::time::Duration;

use hyper::StatusCode;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::{start_server_with, TestServer, WAIT};

#[tokio::test]
async fn an_upgrade_from_a_foreign_origin_is_refused() {
    let server =
        start_server_with(|c| c.allowed_origins = vec!["https://chat.example.com".into()]).await;
    let origin = |o: &str| [("origin", o.to_string())];
    let refused =
        server.try_connect_with("/ws?user=victim&room=r", &origin("https://evil.example")).await;
    assert_eq!(refused.err(), Some(StatusCode::FORBIDDEN));
    assert_eq!(
        server.metric("wsbroker_connections_opened_total").await,
        0,
        "nothing reached the cache"
    );
    assert!(server
        .try_connect_with("/ws?user=a", &origin("https://chat.example.com"))
        .await
        .is_ok());
    assert!(server.try_connect_with("/ws?user=b", &[]).await.is_ok(), "no Origin: not a browser");
    assert_eq!(server.metric("wsbroker_connections_opened_total").await, 2);
}

#[tokio::test]
async fn a_client_that_never_finishes_its_headers_is_disconnected() {
    let timeout = Duration::from_millis(300);
    let server = start_server_with(|c| c.handshake_timeout = timeout).await;
    let mut slowloris = TcpStream::connect(server.addr).await.unwrap();
    slowloris.write_all(b"GET /ws HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    let started = tokio::time::Instant::now();
    let mut rest = Vec::new();
    // Ends (cleanly or by reset) only when the server hangs up.
    let _ = tokio::time::timeout(WAIT, slowloris.read_to_end(&mut rest))
        .await
        .expect("the server hung up");
    assert!(started.elapsed() >= timeout - Duration::from_millis(50), "not before the timeout");
    assert!(server.try_connect("/ws?user=after", None).await.is_ok(), "others still get in");
}

#[tokio::test]
async fn a_user_over_the_rate_limit_is_refused_on_every_device_and_nothing_extra_is_delivered() {
    let server = start_server_with(|c| (c.rate_limit, c.rate_burst) = (10.0, 20)).await;
    let mut phone = server.member("alice", "r").await;
    let mut laptop = server.member("alice", "r").await;
    let mut bob = server.member("bob", "r").await;
    let started = std::time::Instant::now();
    for n in 0..30 {
        let device = if n % 2 == 0 { &mut phone } else { &mut laptop };
        device.send(json!({"type": "chat", "room": "r", "id": format!("m{n}"), "data": {"content": "x"}})).await;
    }
    let (mut acked, mut limited) = (0, 0);
    for device in [&mut phone, &mut laptop] {
        for _ in 0..15 {
            let reply = device.recv_where(|f| f["type"] == "ack" || f["type"] == "error").await;
            match reply["type"].as_str() {
                Some("ack") => acked += 1,
                _ => {
                    assert_eq!(reply["data"]["code"], "rate_limited");
                    limited += 1;
                }
            }
        }
    }
    // The burst of 20, plus what 10/s refilled while the 30 went through (real time, so measured).
    let refilled = (started.elapsed().as_secs_f64() * 10.0).ceil() as usize;
    assert!(
        (20..=20 + refilled).contains(&acked),
        "the two devices shared one burst of 20 (+{refilled} refilled): {acked} acked"
    );
    assert_eq!(acked + limited, 30);
    bob.send(json!({"type": "chat", "room": "r", "data": {"content": "marker"}})).await;
    let mut delivered = 0;
    while bob.recv_type("chat").await["data"]["content"] != "marker" {
        delivered += 1;
    }
    assert_eq!(delivered, acked, "refused messages were not delivered");
}

#[tokio::test]
async fn a_connection_that_keeps_flooding_is_closed_1008() {
    let server =
        start_server_with(|c| (c.rate_limit, c.rate_burst, c.flood_close_after) = (1.0, 1, 5))
            .await;
    let mut flooder = server.member("flooder", "r").await;
    let mut bob = server.member("bob", "r").await;
    for _ in 0..10 {
        flooder.send(json!({"type": "chat", "room": "r", "data": {"content": "spam"}})).await;
    }
    let close = flooder.closed().await.expect("a close frame");
    assert_eq!((u16::from(close.code), close.reason.as_str()), (1008, "rate limit exceeded"));
    bob.recv_presence_change("flooder", "leave").await;
}

#[tokio::test]
async fn a_user_over_its_connection_cap_is_refused_and_its_devices_keep_working() {
    let server = start_server_with(|c| c.max_conns_per_user = 2).await;
    let mut phone = server.member("alice", "r").await;
    let mut laptop = server.member("alice", "r").await;
    let refused = server.try_connect_from("/ws?user=alice&room=r", "127.0.0.1").await;
    assert_eq!(refused.err(), Some(StatusCode::TOO_MANY_REQUESTS), "two per user at most");
    let mut bob = server.member("bob", "r").await;
    assert_eq!(
        server.metric("wsbroker_connections_opened_total").await,
        3,
        "the refusal never reached the cache"
    );
    bob.send(json!({"type": "chat", "room": "r", "data": {"content": "hi"}})).await;
    assert_eq!(phone.recv_type("chat").await["data"]["content"], "hi");
    assert_eq!(laptop.recv_type("chat").await["data"]["content"], "hi");
    drop(phone);
    connects_again(&server, "/ws?user=alice&room=r", "the closed device's slot").await;
}

#[tokio::test]
async fn connections_over_the_caps_are_refused_before_the_upgrade() {
    let server = start_server_with(|c| (c.max_connections, c.max_conns_per_ip) = (3, 2)).await;
    let first = server.try_connect_from("/ws?user=a", "127.0.0.1").await.unwrap();
    let _second = server.try_connect_from("/ws?user=b", "127.0.0.1").await.unwrap();
    let refused = server.try_connect_from("/ws?user=c", "127.0.0.1").await;
    assert_eq!(refused.err(), Some(StatusCode::TOO_MANY_REQUESTS), "two from one address at most");
    let _third = server.try_connect_from("/ws?user=c", "127.0.0.2").await.unwrap();
    let refused = server.try_connect_from("/ws?user=d", "127.0.0.3").await;
    assert_eq!(refused.err(), Some(StatusCode::SERVICE_UNAVAILABLE), "three in all at most");
    assert_eq!(
        server.metric("wsbroker_connections_opened_total").await,
        3,
        "refusals never reached the cache"
    );
    drop(first);
    connects_again(&server, "/ws?user=e", "the closed slot").await;
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_address_cap_counts_the_clients_it_forwards() {
    let from = |client: &str| vec![("x-forwarded-for", format!("6.6.6.6, {client}"))];
    let server = start_server_with(|c| {
        c.max_conns_per_ip = 1;
        c.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
    })
    .await;
    let _a = server.try_connect_with("/ws?user=a", &from("198.51.100.1")).await.unwrap();
    let _b = server.try_connect_with("/ws?user=b", &from("198.51.100.2")).await.unwrap();
    let refused = server.try_connect_with("/ws?user=c", &from("198.51.100.1")).await;
    assert_eq!(refused.err(), Some(StatusCode::TOO_MANY_REQUESTS), "one per forwarded client");
    // Without the flag the header is nobody's word: every connection is 127.0.0.1's.
    let server = start_server_with(|c| c.max_conns_per_ip = 1).await;
    let _a = server.try_connect_with("/ws?user=a", &from("198.51.100.1")).await.unwrap();
    let refused = server.try_connect_with("/ws?user=b", &from("198.51.100.2")).await;
    assert_eq!(refused.err(), Some(StatusCode::TOO_MANY_REQUESTS), "the header is ignored");
}

/// Retries a connection from 127.0.0.1 until a slot freed by a close is taken (within `WAIT`).
async fn connects_again(server: &TestServer, path: &str, what: &str) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while let Err(status) = server.try_connect_from(path, "127.0.0.1").await {
        assert!(tokio::time::Instant::now() < deadline, "{what} never came back: {status}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
