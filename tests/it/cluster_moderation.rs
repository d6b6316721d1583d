//! Moderation across a cluster of three instances on one Redis and one PostgreSQL: a mute, a ban
//! and an instance-wide ban made on one instance hold on the others at once, and on an instance
//! started after them.

use std::time::Duration;

use hyper::{Method, StatusCode};
use serde_json::{json, Value};

use crate::auth::{token, SECRET};
use crate::common::{start_server_with, Client, TestServer, WAIT};
use crate::postgres_server::PostgresServer;
use crate::redis_server::RedisServer;

/// A cluster instance `id` on `redis` and the PostgreSQL database `url`, with tokens required.
async fn instance(redis: &RedisServer, url: &str, id: &str) -> TestServer {
    let (redis, url, id) = (redis.url(), url.to_owned(), id.to_owned());
    start_server_with(move |c| {
        c.database_url = url.parse().unwrap();
        c.redis_url = Some(redis);
        c.instance_id = Some(id);
        c.rate_limit = 0.0;
        c.auth_enabled = true;
        c.jwt_secret = Some(SECRET.into());
        c.jwt_issuer = Some("wsb".into());
        c.jwt_audience = Some("chat".into());
    })
    .await
}

fn user(name: &str) -> String {
    token(name, json!({}))
}

async fn member(server: &TestServer, name: &str, room: &str) -> Client {
    let mut client = server.connect(&format!("/ws?token={}", user(name))).await;
    let joined = client.request(json!({"type": "join", "room": room, "id": "j"})).await;
    assert_eq!(joined["type"], "ack", "{name} joins {room}: {joined}");
    client
}

/// Sends chats until one is answered with `code` (the action reached this instance), within WAIT.
async fn refused_with(client: &mut Client, room: &str, code: &str) -> Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    for n in 0.. {
        let chat = json!({"type": "chat", "room": room, "id": format!("try-{n}"), "data": {"content": "x"}});
        let answer = client.request(chat).await;
        if answer["data"]["code"] == code {
            return answer;
        }
        assert!(tokio::time::Instant::now() < deadline, "never {code}: {answer}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    unreachable!()
}

async fn call(
    server: &TestServer,
    by: &str,
    method: Method,
    path: &str,
    body: Value,
) -> StatusCode {
    let body = (!body.is_null()).then_some(body);
    let (status, answer) = server.request_as(&user(by), method, path, body).await;
    assert!(status.is_success(), "{path}: {status} {answer}");
    status
}

#[tokio::test]
async fn a_mute_and_a_ban_on_one_instance_hold_on_the_others_and_after_a_start() {
    let (redis, postgres) = (RedisServer::start().await, PostgresServer::start().await);
    let url = postgres.database("cluster_moderation").await;
    let (a, b, c) = (
        instance(&redis, &url, "a").await,
        instance(&redis, &url, "b").await,
        instance(&redis, &url, "c").await,
    );
    let rooms = "/api/v1/chat/rooms";
    call(&a, "olive", Method::POST, rooms, json!({"name": "town", "type": "public"})).await;
    let mut bob = member(&b, "bob", "town").await;
    let mut bob_on_c = member(&c, "bob", "town").await;
    let mut amy = member(&c, "amy", "town").await;

    // Muted on A: bob's chats are refused on B and C.
    call(&a, "olive", Method::POST, &format!("{rooms}/town/mutes"), json!({"user": "bob"})).await;
    refused_with(&mut bob, "town", "muted").await;
    refused_with(&mut bob_on_c, "town", "muted").await;
    assert_eq!(
        amy.request(json!({"type": "chat", "room": "town", "id": "a1", "data": {"content": "hi"}}))
            .await["type"],
        "ack"
    );

    // Banned on A: bob's connections on B and C leave the room, and hear it.
    call(&a, "olive", Method::POST, &format!("{rooms}/town/bans"), json!({"user": "bob"})).await;
    assert_eq!(bob.recv_where(|f| f["type"] == "room_removed").await["room"], "town");
    refused_with(&mut bob, "town", "not_member").await;
    refused_with(&mut bob_on_c, "town", "not_member").await;
    let again = bob.request(json!({"type": "join", "room": "town", "id": "j2"})).await;
    assert_eq!(again["data"]["code"], "forbidden", "{again}");

    // An instance started after both: the ban and the mute hold there too.
    let d = instance(&redis, &url, "d").await;
    let mut bob_on_d = d.connect(&format!("/ws?token={}", user("bob"))).await;
    let refused = bob_on_d.request(json!({"type": "join", "room": "town", "id": "j"})).await;
    assert_eq!(refused["data"]["code"], "forbidden", "{refused}");
    call(&d, "olive", Method::DELETE, &format!("{rooms}/town/bans/bob"), Value::Null).await;
    let mut bob_on_d = member(&d, "bob", "town").await;
    refused_with(&mut bob_on_d, "town", "muted").await;
}

#[tokio::test]
async fn an_instance_ban_closes_the_user_everywhere_and_refuses_it_on_a_new_instance() {
    let (redis, postgres) = (RedisServer::start().await, PostgresServer::start().await);
    let url = postgres.database("cluster_instance_ban").await;
    let (a, b) = (instance(&redis, &url, "a").await, instance(&redis, &url, "b").await);
    let mut bob = b.connect(&format!("/ws?token={}", user("bob"))).await;
    let admin = token("root", json!({"role": "admin"}));
    let body = Some(json!({"user": "bob", "reason": "abuse"}));
    let (status, answer) =
        a.request_as(&admin, Method::POST, "/api/v1/chat/bans", body.clone()).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{answer}");
    let (status, _) = a.request_as(&user("olive"), Method::POST, "/api/v1/chat/bans", body).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "admins only");
    let close = bob.closed().await.expect("a close frame");
    assert_eq!(u16::from(close.code), 4003, "{close:?}");
    let refused = b.try_connect("/ws", Some(&user("bob"))).await.err();
    assert_eq!(refused, Some(StatusCode::FORBIDDEN), "a new connection is refused");

    let c = instance(&redis, &url, "c").await;
    let refused = c.try_connect("/ws", Some(&user("bob"))).await.err();
    assert_eq!(refused, Some(StatusCode::FORBIDDEN), "also on a new instance");
    let (status, _) = c.request_as(&admin, Method::DELETE, "/api/v1/chat/bans/bob", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let deadline = tokio::time::Instant::now() + WAIT;
    while b.try_connect("/ws", Some(&user("bob"))).await.is_err() {
        assert!(tokio::time::Instant::now() < deadline, "the unban never reached b");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_mute_made_while_redis_is_away_reaches_the_other_instance_when_it_is_back() {
    let (mut redis, postgres) = (RedisServer::start().await, PostgresServer::start().await);
    let url = postgres.database("cluster_moderation_outage").await;
    let (a, b) = (instance(&redis, &url, "a").await, instance(&redis, &url, "b").await);
    let rooms = "/api/v1/chat/rooms";
    call(&a, "olive", Method::POST, rooms, json!({"name": "town", "type": "public"})).await;
    let mut bob = member(&b, "bob", "town").await;
    redis.stop();
    a.wait_metric("wsbroker_redis_up", 0).await;
    // Made on A while Redis is away: its notice cannot reach B.
    call(&a, "olive", Method::POST, &format!("{rooms}/town/mutes"), json!({"user": "bob"})).await;
    let chat =
        json!({"type": "chat", "room": "town", "id": "while-away", "data": {"content": "x"}});
    assert_ne!(bob.request(chat).await["data"]["code"], "muted", "B has not heard of it yet");
    redis.restart().await;
    b.wait_metric("wsbroker_redis_reconnects_total", 1).await;
    // B reads what is in force again once Redis is back.
    refused_with(&mut bob, "town", "muted").await;
}
