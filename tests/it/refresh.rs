//! Long-lived connections and their tokens: the expiry notice, `refresh`, and the 4001 close of a
//! token that ran out. Tokens here expire within seconds and the leeway is 0, so the deadlines come
//! quickly.

use std::time::{Duration, UNIX_EPOCH};

use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::auth::{now, sign, SECRET};
use crate::common::{start_server_with, Client, TestServer};

/// A token for `sub` that expires `seconds` from now, with extra claims merged in.
fn token_for(sub: &str, seconds: u64, extra: Value) -> (String, u64) {
    let exp = now() + seconds;
    let mut claims = json!({"sub": sub, "exp": exp});
    claims.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    (sign(&claims, SECRET.as_bytes()), exp)
}

async fn server() -> TestServer {
    start_server_with(|c| {
        c.auth_enabled = true;
        c.jwt_secret = Some(SECRET.into());
        c.jwt_leeway = Duration::ZERO;
    })
    .await
}

async fn connect(server: &TestServer, token: &str, room: &str) -> Client {
    server
        .try_connect(&format!("/ws?room={room}"), Some(token))
        .await
        .expect("a valid token connects")
}

/// The notice a connection gets when less than 30 s are left on a token expiring at `exp`.
async fn expect_notice(client: &mut Client, exp: u64) {
    let notice = client.recv_type("system").await;
    let expires_at =
        humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(exp)).to_string();
    assert_eq!(notice["data"], json!({"event": "token_expiring", "expires_at": expires_at}));
}

/// Alice in the lobby with a token that expires in 2 s, once her expiry notice came; and the `exp`.
async fn alice_with_a_short_token(server: &TestServer) -> (Client, u64) {
    let (short, exp) = token_for("alice", 2, json!({}));
    let mut alice = connect(server, &short, "lobby").await;
    expect_notice(&mut alice, exp).await;
    (alice, exp)
}

async fn expect_token_expired(client: &mut Client) {
    let close = client.closed().await.expect("a close frame");
    assert_eq!((close.code, close.reason.as_str()), (CloseCode::from(4001), "token expired"));
}

#[tokio::test]
async fn a_token_that_runs_out_is_noticed_then_closed_with_4001_and_evicted() {
    let server = server().await;
    let mut bob = connect(&server, &token_for("bob", 600, json!({})).0, "lobby").await;
    let (mut alice, _) = alice_with_a_short_token(&server).await;
    expect_token_expired(&mut alice).await;
    let leave = json!({"user": "alice", "status": "leave"});
    bob.recv_where(|frame| frame["type"] == "presence" && frame["data"] == leave).await;
    server.wait_metric("wsbroker_connections_open", 1).await;
    let reply = bob.request(json!({"type": "presence", "room": "lobby", "id": "p"})).await;
    assert_eq!(reply["data"]["users"], json!(["bob"]), "alice is no longer in the cache");
}

#[tokio::test]
async fn a_refresh_for_the_same_user_extends_the_connection_and_applies_the_new_rooms() {
    let server = server().await;
    let (mut alice, exp) = alice_with_a_short_token(&server).await;
    let (fresh, _) = token_for("alice", 600, json!({"rooms": ["lobby"]}));
    let ack = alice.request(json!({"type": "refresh", "id": "r1", "data": {"token": fresh}})).await;
    assert_eq!(ack, json!({"type": "ack", "id": "r1"}));
    let past_old_expiry = Duration::from_secs(exp + 1 - now()) + Duration::from_millis(500);
    let early = tokio::time::timeout(past_old_expiry, alice.recv_type("never")).await;
    assert!(early.is_err(), "nothing (no close) arrived past the old token's expiry");
    let pong = alice.request(json!({"type": "ping", "id": "alive"})).await;
    assert_eq!(pong["type"], "pong");
    let reply = alice.request(json!({"type": "join", "room": "secret", "id": "j"})).await;
    assert_eq!(reply["data"]["code"], "forbidden", "the new token's rooms claim is in force");
}

#[tokio::test]
async fn a_refresh_for_another_user_or_with_a_bad_token_changes_nothing() {
    let server = server().await;
    let (mut alice, _) = alice_with_a_short_token(&server).await;
    let (mallory, _) = token_for("mallory", 600, json!({}));
    let reply =
        alice.request(json!({"type": "refresh", "id": "r1", "data": {"token": mallory}})).await;
    assert_eq!(
        (reply["type"].as_str(), reply["data"]["code"].as_str()),
        (Some("error"), Some("forbidden"))
    );
    let forged = sign(&json!({"sub": "alice", "exp": now() + 600}), b"not-the-server-secret");
    let reply =
        alice.request(json!({"type": "refresh", "id": "r2", "data": {"token": forged}})).await;
    assert_eq!(reply["data"]["code"], "unauthorized");
    expect_token_expired(&mut alice).await;
    server.wait_metric("wsbroker_connections_open", 0).await;
}

#[tokio::test]
async fn refresh_without_authentication_is_a_bad_request() {
    let server = start_server_with(|_| {}).await;
    let mut client = server.connect("/ws?user=u").await;
    let reply =
        client.request(json!({"type": "refresh", "id": "r", "data": {"token": "x.y.z"}})).await;
    assert_eq!(reply["data"]["code"], "bad_request", "{reply}");
}

#[tokio::test]
async fn a_join_sent_right_after_a_refresh_is_judged_by_the_new_token() {
    let server = server().await;
    let (old, _) = token_for("alice", 600, json!({"rooms": ["lobby"]}));
    let mut alice = connect(&server, &old, "lobby").await;
    let refused = alice.request(json!({"type": "join", "room": "extra", "id": "j0"})).await;
    assert_eq!(refused["data"]["code"], "forbidden", "{refused}");
    let (fresh, _) = token_for("alice", 600, json!({"rooms": ["lobby", "extra"]}));
    alice.send(json!({"type": "refresh", "id": "r1", "data": {"token": fresh}})).await;
    alice.send(json!({"type": "join", "room": "extra", "id": "j1"})).await;
    let first = alice.recv_where(|f| f["id"] == "r1" || f["id"] == "j1").await;
    assert_eq!(first, json!({"type": "ack", "id": "r1"}));
    let joined = alice.recv_where(|f| f["id"] == "j1").await;
    assert_eq!(joined["type"], "ack", "the join waited for the refresh: {joined}");
}
