//! Authentication and room permissions: every bad token is refused before the upgrade and leaves no
//! trace in the cache; claims decide the user and the rooms.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use hyper::{Method, StatusCode};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use wsbroker::{Config, Server};

use crate::common::{start_server_with, TestServer};

pub const SECRET: &str = "test-secret-of-a-decent-length";

pub fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

pub fn sign(claims: &Value, secret: &[u8]) -> String {
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &EncodingKey::from_secret(secret))
        .unwrap()
}

/// A valid token for `sub` with extra claims merged in.
pub fn token(sub: &str, extra: Value) -> String {
    let mut claims = json!({"sub": sub, "exp": now() + 600, "iss": "wsb", "aud": "chat"});
    claims.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    sign(&claims, SECRET.as_bytes())
}

async fn auth_server() -> TestServer {
    start_server_with(|c| {
        c.auth_enabled = true;
        c.jwt_secret = Some(SECRET.into());
        c.jwt_issuer = Some("wsb".into());
        c.jwt_audience = Some("chat".into());
    })
    .await
}

fn unsigned(claims: &Value) -> String {
    let b64 = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    format!("{}.{}.", b64(&json!({"alg": "none", "typ": "JWT"})), b64(claims))
}

#[tokio::test]
async fn bad_tokens_are_refused_before_the_upgrade_and_leave_the_cache_alone() {
    let server = auth_server().await;
    let base = json!({"sub": "mallory", "exp": now() + 600, "iss": "wsb", "aud": "chat"});
    let with = |patch: Value| {
        let mut claims = base.clone();
        claims.as_object_mut().unwrap().extend(patch.as_object().unwrap().clone());
        claims
    };
    let cases = [
        ("missing", None),
        ("wrong signature", Some(sign(&base, b"another-secret-entirely"))),
        ("expired", Some(sign(&with(json!({"exp": now() - 60})), SECRET.as_bytes()))),
        ("not yet valid", Some(sign(&with(json!({"nbf": now() + 600})), SECRET.as_bytes()))),
        ("alg none", Some(unsigned(&base))),
        ("wrong issuer", Some(sign(&with(json!({"iss": "evil"})), SECRET.as_bytes()))),
        ("wrong audience", Some(sign(&with(json!({"aud": "other"})), SECRET.as_bytes()))),
        (
            "no exp",
            Some(sign(&json!({"sub": "m", "iss": "wsb", "aud": "chat"}), SECRET.as_bytes())),
        ),
        ("garbage", Some("not.a.token".to_string())),
    ];
    for (case, token) in cases {
        let refused = server.try_connect("/ws?user=mallory&room=lobby", token.as_deref()).await;
        assert_eq!(refused.err(), Some(StatusCode::UNAUTHORIZED), "{case}");
    }
    assert_eq!(
        server.metric("wsbroker_connections_opened_total").await,
        0,
        "nothing reached the cache"
    );
    let admin = token("ops", json!({"role": "admin"}));
    let (_, online) = server.request_as(&admin, Method::GET, "/api/v1/chat/online", None).await;
    assert_eq!(online, json!({"users": []}));
}

#[tokio::test]
async fn the_token_names_the_user_whatever_the_url_says() {
    let server = auth_server().await;
    let alice = token("alice", json!({}));
    let mut by_query = server
        .try_connect(&format!("/ws?user=mallory&room=lobby&token={alice}"), None)
        .await
        .unwrap();
    let mut by_header =
        server.try_connect("/ws?room=lobby", Some(&token("bob", json!({})))).await.unwrap();
    by_query
        .send(
            json!({"type": "chat", "room": "lobby", "from": "mallory", "data": {"content": "hi"}}),
        )
        .await;
    assert_eq!(by_header.recv_type("chat").await["from"], "alice");
    let admin = token("ops", json!({"role": "admin"}));
    let (_, online) = server.request_as(&admin, Method::GET, "/api/v1/chat/online", None).await;
    assert_eq!(online, json!({"users": ["alice", "bob"]}));
}

#[tokio::test]
async fn the_rooms_claim_limits_what_a_user_may_join() {
    let server = auth_server().await;
    let limited = token("alice", json!({"rooms": ["lobby", "team-*"]}));
    let refused = server.try_connect("/ws?room=secret", Some(&limited)).await;
    assert_eq!(refused.err(), Some(StatusCode::FORBIDDEN), "a connect URL naming a forbidden room");
    let mut alice = server.try_connect("/ws?room=lobby", Some(&limited)).await.unwrap();
    alice.join("team-a").await;
    let reply = alice.request(json!({"type": "join", "room": "secret", "id": "j"})).await;
    assert_eq!(reply["data"]["code"], "forbidden");
    let mut admin = server
        .try_connect("/ws?room=secret", Some(&token("ops", json!({"role": "admin"}))))
        .await
        .unwrap();
    admin.send(json!({"type": "chat", "room": "secret", "data": {"content": "classified"}})).await;
    assert_eq!(
        admin.recv_type("chat").await["data"]["content"],
        "classified",
        "admins join any room"
    );
    admin.send(json!({"type": "chat", "room": "lobby", "data": {"content": "x"}})).await;
    let reply = admin.recv_type("error").await;
    assert_eq!(reply["data"]["code"], "not_member", "the admin never joined lobby");
    let reply = alice
        .request(json!({"type": "chat", "room": "secret", "id": "c", "data": {"content": "x"}}))
        .await;
    assert_eq!(reply["data"]["code"], "not_member", "the refused join left alice outside");
}

#[tokio::test]
async fn the_http_api_needs_a_token_and_publishing_an_admin_one() {
    let server = auth_server().await;
    let mut member =
        server.try_connect("/ws?room=r", Some(&token("bob", json!({})))).await.unwrap();
    let body = json!({"data": {"content": "deploy"}});
    let (status, _) = server.post("/api/v1/chat/rooms/r/messages", body.clone()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let user = token("bob", json!({}));
    let (status, reply) = server
        .request_as(&user, Method::POST, "/api/v1/chat/rooms/r/messages", Some(body.clone()))
        .await;
    assert_eq!(
        (status, reply["error"]["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("forbidden"))
    );
    let (status, _) = server.get("/api/v1/chat/online").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, online) =
        server.request_as(&user, Method::GET, "/api/v1/chat/rooms/r/online", None).await;
    assert_eq!((status, online["users"].clone()), (StatusCode::OK, json!(["bob"])));
    let admin = token("ops", json!({"role": "admin"}));
    let (status, sent) =
        server.request_as(&admin, Method::POST, "/api/v1/chat/rooms/r/messages", Some(body)).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let got = member.recv_type("notification").await;
    assert_eq!(got["id"], sent["id"], "only the admin's publish was delivered");
    for open in ["/healthz", "/readyz"] {
        assert_eq!(server.get(open).await.0, StatusCode::OK, "{open} needs no token");
    }
    assert_eq!(server.metric("wsbroker_connections_open").await, 1, "/metrics needs no token");
}

#[tokio::test]
async fn a_public_key_accepts_its_tokens_and_refuses_algorithm_confusion() {
    let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");
    let server = start_server_with(|c| {
        c.auth_enabled = true;
        c.jwt_public_key = Some(format!("{fixtures}/es256-public.pem").into());
    })
    .await;
    let private = std::fs::read(format!("{fixtures}/es256-private.pem")).unwrap();
    let claims = json!({"sub": "carol", "exp": now() + 600});
    let es256 = jsonwebtoken::encode(
        &Header::new(Algorithm::ES256),
        &claims,
        &EncodingKey::from_ec_pem(&private).unwrap(),
    );
    assert!(server.try_connect("/ws", Some(&es256.unwrap())).await.is_ok());
    let public = std::fs::read(format!("{fixtures}/es256-public.pem")).unwrap();
    let confused = sign(&claims, &public);
    assert_eq!(
        server.try_connect("/ws", Some(&confused)).await.err(),
        Some(StatusCode::UNAUTHORIZED)
    );
}

#[tokio::test]
async fn auth_without_a_key_is_a_configuration_error() {
    let mut config = Config::with_listen("127.0.0.1:0".parse().unwrap());
    config.auth_enabled = true;
    let err = Server::bind(config).await.expect_err("no key given");
    assert!(err.is_config(), "{err}");
    assert!(err.to_string().contains("--jwt-secret"), "{err}");
}
