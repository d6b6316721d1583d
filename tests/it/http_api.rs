//! The HTTP side of the one port: publishing from back-end services, online queries, health, metrics.

use hyper::StatusCode;
use serde_json::{json, Value};

use crate::common::{start_server, TestServer, WAIT};

fn notification(text: &str) -> Value {
    json!({"from": "system", "type": "notification", "data": {"content": text}})
}

#[tokio::test]
async fn publish_into_a_room_reaches_its_members_with_the_assigned_id() {
    let server = start_server().await;
    let mut member = server.member("bob", "r").await;
    let mut outsider = server.member("eve", "other").await;
    let (status, body) =
        server.post("/api/v1/chat/rooms/r/messages", notification("deploy at 5")).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let got = member.recv_type("notification").await;
    assert_eq!(got["id"], body["id"]);
    assert_eq!((got["room"].as_str(), got["from"].as_str()), (Some("r"), Some("system")));
    assert_eq!(got["data"]["content"], "deploy at 5");
    server.post("/api/v1/chat/rooms/other/messages", notification("marker")).await;
    let next = outsider.recv_type("notification").await;
    assert_eq!(next["data"]["content"], "marker", "eve is not in r");
}

#[tokio::test]
async fn publish_to_global_reaches_everyone_without_a_room() {
    let server = start_server().await;
    let mut a = server.connect("/ws?user=a").await;
    let mut b = server.member("b", "r").await;
    let (status, _) = server.post("/api/v1/chat/rooms/_global/messages", notification("all")).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    for client in [&mut a, &mut b] {
        let got = client.recv_type("notification").await;
        assert!(got.get("room").is_none());
        assert_eq!(got["data"]["content"], "all");
    }
}

#[tokio::test]
async fn direct_delivery_reaches_every_device_of_the_user_only() {
    let server = start_server().await;
    let mut phone = server.connect("/ws?user=bob").await;
    let mut laptop = server.connect("/ws?user=bob").await;
    let mut alice = server.connect("/ws?user=alice").await;
    let (status, _) = server.post("/api/v1/chat/users/bob/messages", notification("for bob")).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    for device in [&mut phone, &mut laptop] {
        assert_eq!(device.recv_type("notification").await["data"]["content"], "for bob");
    }
    server.post("/api/v1/chat/users/alice/messages", notification("for alice")).await;
    assert_eq!(
        alice.recv_type("notification").await["data"]["content"],
        "for alice",
        "alice got only hers"
    );
}

#[tokio::test]
async fn a_list_of_users_gets_one_copy_each() {
    let server = start_server().await;
    let mut alice = server.connect("/ws?user=alice").await;
    let mut bob = server.connect("/ws?user=bob").await;
    let mut carol = server.connect("/ws?user=carol").await;
    let body =
        json!({"users": ["alice", "bob", "alice"], "type": "system", "data": {"content": "hi"}});
    let (status, _) = server.post("/api/v1/chat/messages", body).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(alice.recv_type("system").await["data"]["content"], "hi");
    assert_eq!(bob.recv_type("system").await["data"]["content"], "hi");
    server.post("/api/v1/chat/users/alice/messages", notification("second")).await;
    server.post("/api/v1/chat/users/carol/messages", notification("carol")).await;
    let next = alice.recv().await;
    assert_eq!(next["data"]["content"], "second", "alice got the list message once");
    assert_eq!(carol.recv().await["data"]["content"], "carol", "carol was not on the list");
}

#[tokio::test]
async fn bad_publishes_are_refused_with_a_json_error() {
    let server = start_server().await;
    let cases = [
        (
            "/api/v1/chat/rooms/r/messages",
            json!({"data": {"content": "x".repeat(4097)}}),
            "content_too_long",
        ),
        ("/api/v1/chat/rooms/r/messages", json!({"type": "ack", "data": {}}), "unknown_type"),
        ("/api/v1/chat/rooms/r/messages", json!({"data": "text"}), "bad_request"),
        ("/api/v1/chat/rooms/bad%20room/messages", json!({"data": {}}), "bad_request"),
        ("/api/v1/chat/messages", json!({"data": {}}), "bad_request"),
    ];
    for (path, body, code) in cases {
        let (status, reply) = server.post(path, body).await;
        assert_eq!(
            (status, reply["error"]["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some(code)),
            "{path}"
        );
    }
    let (status, reply) = server
        .post("/api/v1/chat/rooms/r/messages", json!({"data": {"content": "x".repeat(70_000)}}))
        .await;
    assert_eq!(
        (status, reply["error"]["code"].as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, Some("payload_too_large"))
    );
    let (status, _) = server.get("/api/v1/nothing").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

async fn wait_offline(server: &TestServer, user: &str) -> Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (_, body) = server.get(&format!("/api/v1/chat/users/{user}/online")).await;
        if body["online"] == false || tokio::time::Instant::now() > deadline {
            return body;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn online_queries_follow_connections_coming_and_going() {
    let server = start_server().await;
    let phone = server.member("alice", "r").await;
    let laptop = server.connect("/ws?user=alice").await;
    let _bob = server.connect("/ws?user=bob").await;
    let (_, online) = server.get("/api/v1/chat/online").await;
    assert_eq!(online, json!({"users": ["alice", "bob"]}));
    let (_, room) = server.get("/api/v1/chat/rooms/r/online").await;
    assert_eq!(room, json!({"room": "r", "users": ["alice"]}));
    let (_, alice) = server.get("/api/v1/chat/users/alice/online").await;
    assert_eq!(alice, json!({"user": "alice", "online": true, "status": "online"}));
    let (_, nobody) = server.get("/api/v1/chat/users/zed/online").await;
    assert_eq!(nobody, json!({"user": "zed", "online": false, "status": "offline"}));
    let (_, connections) = server.get("/api/v1/chat/users/alice/connections").await;
    let connections = connections["connections"].as_array().unwrap().clone();
    assert_eq!(connections.len(), 2);
    assert!(connections.iter().any(|c| c["rooms"] == json!(["r"])));
    assert!(connections.iter().all(|c| c["connected_at"].as_str().unwrap().ends_with('Z')));
    drop(phone);
    let (_, still) = server.get("/api/v1/chat/users/alice/online").await;
    assert_eq!(still["online"], true, "alice keeps her laptop");
    drop(laptop);
    assert_eq!(wait_offline(&server, "alice").await["status"], "offline");
    let (_, online) = server.get("/api/v1/chat/online").await;
    assert_eq!(online, json!({"users": ["bob"]}));
    let (_, room) = server.get("/api/v1/chat/rooms/r/online").await;
    assert_eq!(room["users"], json!([]));
}

#[tokio::test]
async fn health_readiness_and_metrics_answer() {
    let mut server = start_server().await;
    assert_eq!(server.get("/healthz").await, (StatusCode::OK, json!({"status": "ok"})));
    assert_eq!(server.get("/readyz").await, (StatusCode::OK, json!({"status": "ready"})));
    let mut client = server.member("m", "r").await;
    client.send(json!({"type": "chat", "room": "r", "id": "1", "data": {}})).await;
    client.recv_type("ack").await;
    assert_eq!(server.metric("wsbroker_connections_open").await, 1);
    assert_eq!(server.metric("wsbroker_connections_opened_total").await, 1);
    assert_eq!(server.metric("wsbroker_frames_in_total").await, 2, "the join and the chat");
    assert!(server.metric("wsbroker_frames_out_total").await >= 3, "presence, ack, echo, ack");
    assert!(server.metric("wsbroker_fanout_latency_seconds_count").await >= 1);
    assert_eq!(server.metric("wsbroker_slow_consumer_evictions_total").await, 0);
    // The process's own, as Prometheus's client libraries name them.
    assert!(server.metric("process_open_fds").await > 3);
    assert!(server.metric("process_max_fds").await > server.metric("process_open_fds").await);
    assert!(server.metric("process_resident_memory_bytes").await > 1 << 20);
    assert!(server.metric("process_threads").await > 1);
    let stopping = tokio::spawn(async move { server.shutdown().await });
    assert_eq!(client.closed().await.map(|c| u16::from(c.code)), Some(1001));
    assert!(stopping.await.unwrap());
}

/// The raw answer to `GET path`: status, headers and body.
async fn get_raw(addr: std::net::SocketAddr, path: &str) -> (StatusCode, hyper::HeaderMap, String) {
    use http_body_util::BodyExt;
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.unwrap();
    tokio::spawn(connection);
    let request = hyper::Request::get(path)
        .header("host", addr.to_string())
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    let (parts, body) = response.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    (parts.status, parts.headers, String::from_utf8(body.to_vec()).unwrap())
}

#[tokio::test]
async fn the_web_page_is_served_from_the_binary_with_a_strict_content_security_policy() {
    let server = crate::common::start_server().await;
    for path in ["/", "/chat"] {
        let (status, headers, body) = get_raw(server.addr, path).await;
        assert_eq!(status, StatusCode::OK);
        assert!(headers["content-type"].to_str().unwrap().starts_with("text/html"));
        let policy = headers["content-security-policy"].to_str().unwrap();
        assert!(
            policy.starts_with("default-src 'self'") && policy.contains("script-src 'self'"),
            "{policy}"
        );
        assert!(!policy.contains("unsafe-inline"), "no inline script: {policy}");
        assert!(body.contains(r#"<script type="module" src="/web/app.js">"#));
        assert!(!body.contains("<script>"), "no inline script in the page");
    }
    let (status, headers, body) = get_raw(server.addr, "/web/app.js").await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers["content-type"].to_str().unwrap().starts_with("text/javascript"));
    assert!(!body.contains("innerHTML"), "content goes in as text only");
    let (_, _, config) = get_raw(server.addr, "/web/config.json").await;
    assert_eq!(config, r#"{"auth":false,"default_room":null}"#, "no store, so no default room");
    assert_eq!(get_raw(server.addr, "/web/secret.txt").await.0, StatusCode::NOT_FOUND);
}
