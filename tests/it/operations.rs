//! The labelled series of `/metrics` move with real traffic: chats accepted and refused, errors,
//! connection ends, HTTP requests. (The alerts and the dashboard are checked against a real
//! Prometheus in `prometheus.rs`; `promtool check rules` and `promtool test rules` run in
//! scripts/test.sh.)

use hyper::{Method, StatusCode};

use crate::common::{chat, http_text, stored_server, TempDir};

/// The value of the series `name{labels}` (labels as they are written) in a scrape.
fn series(scrape: &str, name_and_labels: &str) -> u64 {
    let line = scrape
        .lines()
        .find(|line| line.split(' ').next() == Some(name_and_labels))
        .unwrap_or_else(|| panic!("no {name_and_labels} in {scrape}"));
    line.split(' ').nth(1).unwrap().parse().unwrap()
}

async fn scrape(server: &crate::common::TestServer) -> String {
    http_text(server.addr, Method::GET, "/metrics", None).await.1
}

#[tokio::test]
async fn chats_errors_ends_and_http_requests_are_counted_by_label() {
    let dir = TempDir::new("labelled");
    let server = stored_server(&dir).await;
    let before = scrape(&server).await;
    assert_eq!(series(&before, "wsbroker_ready"), 1);
    let mut alice = server.member("alice", "lobby").await;
    assert_eq!(alice.request(chat("lobby", "c1", "hello")).await["type"], "ack");
    let refused = alice.request(chat("elsewhere", "c2", "hello")).await;
    assert_eq!(refused["data"]["code"], "not_member");
    drop(alice); // the client goes away without a close frame: lost
    let mut bob = server.connect("/ws?user=bob").await;
    bob.ws.close(None).await.unwrap();
    server.wait_metric("wsbroker_connections_open", 0).await;
    let (status, _) = server.get("/api/v1/chat/rooms/lobby/messages").await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = server.get("/api/v1/chat/rooms/no-such-room/messages").await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Every write taken off the queues is one put on them (the blob writer's sweep included).
    server.wait_metric("wsbroker_store_queue_depth", 0).await;
    let after = scrape(&server).await;
    assert_eq!(series(&after, "wsbroker_chats_accepted_total"), 1);
    assert_eq!(series(&after, r#"wsbroker_chats_refused_total{reason="not_member"}"#), 1);
    // Error counts are the process's (other tests' brokers share it): at least this one more.
    let errors = r#"wsbroker_errors_total{code="not_member"}"#;
    assert!(series(&after, errors) > series(&before, errors), "{after}");
    let ends = |reason: &str| {
        format!(r#"wsbroker_connection_ends_total{{code="none",reason="{reason}"}}"#)
    };
    assert_eq!(
        series(&after, &ends("client_closed")) + series(&after, &ends("lost")),
        2,
        "{after}"
    );
    let route = r#"method="GET",route="/api/v1/chat/rooms/:id/messages""#;
    assert_eq!(
        series(&after, &format!("wsbroker_http_requests_total{{{route},status=\"200\"}}")),
        1
    );
    assert_eq!(
        series(&after, &format!("wsbroker_http_requests_total{{{route},status=\"404\"}}")),
        1
    );
    assert_eq!(series(&after, &format!("wsbroker_http_request_seconds_count{{{route}}}")), 2);
    let upgrades = r#"wsbroker_http_requests_total{method="GET",route="/ws",status="101"}"#;
    assert_eq!(series(&after, upgrades), 2, "{after}");
}
