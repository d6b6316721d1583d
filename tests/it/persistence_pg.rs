//! Persistence on PostgreSQL servers of the tests' own: the server going away and coming back while
//! clients chat, a cluster storing each message once, and start-up refusals.

use hyper::StatusCode;
use serde_json::{json, Value};

use crate::common::{start_server_with, TempDir, TestServer, WAIT};
use crate::postgres_server::PostgresServer;
use crate::redis_server::RedisServer;

fn chat(room: &str, id: &str) -> Value {
    json!({"type": "chat", "room": room, "id": id, "data": {"content": id}})
}

/// The ids of a room's stored messages, oldest first.
async fn stored_ids(server: &TestServer, room: &str) -> Vec<String> {
    let page = server
        .wait_get(&format!("/api/v1/chat/rooms/{room}/messages?limit=100"), |s, _| {
            s == StatusCode::OK
        })
        .await;
    page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn with_postgres_down_chats_are_refused_and_nothing_is_acked_that_is_not_stored() {
    const BURST: usize = 64;
    let mut postgres = PostgresServer::start().await;
    let url = postgres.database("chat").await;
    let server = start_server_with(|c| {
        c.database_url = url.parse().unwrap();
        c.rate_limit = 0.0;
        c.store_queue = 8;
    })
    .await;
    let mut alice = server.member("alice", "r").await;
    assert_eq!(alice.request(chat("r", "before")).await["type"], "ack");

    postgres.stop();
    // A burst: the writer holds the first batch it cannot commit, the queue behind it fills, and
    // what comes then is refused. What was taken is neither delivered nor acked while it is down.
    let ids: Vec<String> = (0..BURST).map(|n| format!("down-{n}")).collect();
    for id in &ids {
        alice.send(chat("r", id)).await;
    }
    let (mut acked, mut refused) = (vec!["before".to_owned()], Vec::new());
    let answer = |f: &Value| f["type"] == "ack" || f["type"] == "error";
    let first = alice.recv_where(answer).await;
    assert_eq!(first["data"]["code"], "unavailable", "the first answer is a refusal: {first}");
    refused.push(first["id"].as_str().unwrap().to_owned());
    server
        .wait_get("/readyz", |status, body| {
            status == StatusCode::SERVICE_UNAVAILABLE && body["status"] == "database_unavailable"
        })
        .await;

    postgres.restart().await;
    while acked.len() + refused.len() < BURST + 1 {
        let reply = alice.recv_where(answer).await;
        let id = reply["id"].as_str().unwrap().to_owned();
        match reply["type"].as_str() {
            Some("ack") => acked.push(id),
            _ => {
                assert_eq!(reply["data"]["code"], "unavailable", "{reply}");
                refused.push(id);
            }
        }
    }
    assert!(acked.len() > 1 && refused.len() > 1, "some taken, some refused: {acked:?}");
    // Each refusal is counted once, with the store as its cause (down, mostly: the first failed
    // commit comes before the queue fills).
    let cause = |cause: &str| format!("wsbroker_unavailable_total{{cause=\"{cause}\"}}");
    let (full, down) =
        (server.metric(&cause("store_full")).await, server.metric(&cause("store_down")).await);
    assert_eq!(full + down, refused.len() as u64, "{full} full, {down} down: {refused:?}");
    server.wait_get("/readyz", |status, _| status == StatusCode::OK).await;
    assert_eq!(alice.request(chat("r", "after")).await["type"], "ack", "the writer reconnected");
    acked.push("after".into());
    let stored = stored_ids(&server, "r").await;
    assert_eq!(
        stored, acked,
        "every acked chat is stored, in order, and the accepted ones were kept"
    );
    assert!(refused.iter().all(|id| !stored.contains(id)), "a refused chat is not stored");
}

/// A cluster instance `id` on `redis`, storing into the PostgreSQL database `url`.
async fn on_postgres(
    redis: &RedisServer,
    url: &str,
    id: &str,
    configure: impl FnOnce(&mut wsbroker::Config),
) -> TestServer {
    let (redis, url, id) = (redis.url(), url.to_owned(), id.to_owned());
    start_server_with(move |c| {
        c.database_url = url.parse().unwrap();
        c.redis_url = Some(redis);
        c.instance_id = Some(id);
        configure(c);
    })
    .await
}

#[tokio::test]
async fn in_a_cluster_each_message_is_stored_once_and_history_is_shared() {
    let (redis, postgres) = (RedisServer::start().await, PostgresServer::start().await);
    let url = postgres.database("cluster").await;
    let instance = |id| on_postgres(&redis, &url, id, |_| {});
    let (a, b) = (instance("a").await, instance("b").await);
    let mut alice = a.member("alice", "shared").await;
    let mut bob = b.member("bob", "shared").await;
    a.wait_get("/api/v1/chat/rooms/shared/online", |_, v| v["users"] == json!(["alice", "bob"]))
        .await;
    assert_eq!(alice.request(chat("shared", "from-a")).await["type"], "ack");
    assert_eq!(bob.recv_where(|f| f["id"] == "from-a").await["from"], "alice");
    assert_eq!(bob.request(chat("shared", "from-b")).await["type"], "ack");
    assert_eq!(stored_ids(&b, "shared").await, ["from-a", "from-b"], "once each, read on either");
    assert_eq!(stored_ids(&a, "shared").await, ["from-a", "from-b"]);
}

#[tokio::test]
async fn in_a_cluster_edits_and_deletions_reach_every_instance_in_order_and_are_stored_once() {
    let (redis, postgres) = (RedisServer::start().await, PostgresServer::start().await);
    let url = postgres.database("cluster_edits").await;
    let instance = |id| on_postgres(&redis, &url, id, |c| c.rate_limit = 0.0);
    let (a, b) = (instance("a").await, instance("b").await);
    let mut alice = a.member("alice", "shared").await;
    let mut bob = b.member("bob", "shared").await;
    a.wait_get("/api/v1/chat/rooms/shared/online", |_, v| v["users"] == json!(["alice", "bob"]))
        .await;
    assert_eq!(alice.request(chat("shared", "m1")).await["seq"], 1);
    assert_eq!(bob.request(chat("shared", "m2")).await["seq"], 2);
    let edit = |id: &str, content: &str| json!({"type": "edit", "room": "shared", "id": "e", "data": {"id": id, "content": content}});
    assert_eq!(bob.request(edit("m1", "bob's words")).await["data"]["code"], "forbidden");
    assert_eq!(alice.request(edit("m1", "edited on a")).await["seq"], 3);
    let told = bob.recv_where(|f| f["type"] == "message_edited").await;
    assert_eq!((told["seq"].as_u64(), &told["data"]["content"]), (Some(3), &json!("edited on a")));
    let delete = json!({"type": "delete", "room": "shared", "id": "d", "data": {"id": "m2"}});
    assert_eq!(bob.request(delete).await["seq"], 4);
    let told = alice.recv_where(|f| f["type"] == "message_deleted").await;
    assert_eq!((told["seq"].as_u64(), &told["data"]["id"]), (Some(4), &json!("m2")));
    for server in [&a, &b] {
        let (_, page) = server.get("/api/v1/chat/rooms/shared/messages").await;
        let messages = page["messages"].as_array().unwrap();
        assert_eq!(messages.len(), 1, "m2 is deleted, events are no messages: {page}");
        assert_eq!(messages[0]["data"]["content"], "edited on a");
        assert!(messages[0]["edited_at"].is_string(), "{page}");
    }
}

#[tokio::test]
async fn in_a_cluster_concurrent_reactions_on_every_instance_are_each_counted_once() {
    let (redis, postgres) = (RedisServer::start().await, PostgresServer::start().await);
    let url = postgres.database("cluster_reactions").await;
    let instance = |id| on_postgres(&redis, &url, id, |c| c.rate_limit = 0.0);
    let (a, b) = (instance("a").await, instance("b").await);
    let mut author = a.member("author", "shared").await;
    assert_eq!(author.request(chat("shared", "m1")).await["seq"], 1);
    let mut reactors = Vec::new();
    for n in 0..10 {
        let server = if n % 2 == 0 { &a } else { &b };
        reactors.push(server.member(&format!("u{n}"), "shared").await);
    }
    let react = |emoji: &str| json!({"type": "react", "room": "shared", "id": "x", "data": {"id": "m1", "emoji": emoji}});
    let sends = reactors.iter_mut().map(|client| client.request(react("👍")));
    let answers = futures_util::future::join_all(sends).await;
    assert!(answers.iter().all(|answer| answer["type"] == "ack"), "{answers:?}");
    let again = reactors[3].request(react("👍")).await;
    assert_eq!(again["data"]["code"], "conflict");
    for server in [&a, &b] {
        let (_, page) = server.get("/api/v1/chat/rooms/shared/messages?user=u1").await;
        let expected = json!([{"emoji": "👍", "count": 10, "mine": true}]);
        assert_eq!(page["messages"][0]["reactions"], expected, "{page}");
    }
    let mut told = 0;
    while told < 10 {
        author.recv_where(|f| f["type"] == "reaction_added").await;
        told += 1;
    }
}

#[tokio::test]
async fn in_a_cluster_unread_counts_agree_on_every_instance() {
    let (redis, postgres) = (RedisServer::start().await, PostgresServer::start().await);
    let url = postgres.database("cluster_unread").await;
    let instance = |id| on_postgres(&redis, &url, id, |c| c.rate_limit = 0.0);
    let (a, b) = (instance("a").await, instance("b").await);
    let mut alice = a.member("alice", "shared").await;
    let mut bob = b.member("bob", "shared").await;
    for n in 0..3 {
        assert_eq!(alice.request(chat("shared", &format!("m{n}"))).await["type"], "ack");
    }
    let read = json!({"type": "read", "room": "shared", "id": "r", "data": {"seq": 1}});
    assert_eq!(bob.request(read).await["type"], "ack");
    for server in [&a, &b] {
        let (_, answer) = server.get("/api/v1/chat/rooms?user=bob").await;
        let room =
            answer["rooms"].as_array().unwrap().iter().find(|r| r["id"] == "shared").cloned();
        let room = room.unwrap_or_else(|| panic!("{answer}"));
        assert_eq!(
            (room["last_seq"].as_i64(), room["unread"].as_i64()),
            (Some(3), Some(2)),
            "{room}"
        );
        assert_eq!(room["last_message"]["id"], "m2");
    }
}

#[tokio::test]
async fn in_a_cluster_unread_events_and_receipts_reach_every_instance_once() {
    let (redis, postgres) = (RedisServer::start().await, PostgresServer::start().await);
    let url = postgres.database("cluster_unread_events").await;
    let instance = |id| on_postgres(&redis, &url, id, |c| c.rate_limit = 0.0);
    let (a, b) = (instance("a").await, instance("b").await);
    let mut alice = a.member("alice", "shared").await;
    let mut bob = b.member("bob", "shared").await;
    let mut bob_phone = b.connect("/ws?user=bob").await;
    assert_eq!(alice.request(chat("shared", "m0")).await["type"], "ack");
    let unread = |f: &Value| f["type"] == "unread" && f["room"] == "shared";
    let frame = bob_phone.recv_where(unread).await;
    assert_eq!(
        (frame["data"]["unread"].as_i64(), frame["data"]["last_seq"].as_i64()),
        (Some(1), Some(1))
    );
    bob.recv_where(|f| f["id"] == "m0").await;
    let read = json!({"type": "read", "room": "shared", "id": "r", "data": {"seq": 1}});
    assert_eq!(bob.request(read).await["type"], "ack");
    let receipt = alice.recv_where(|f| f["type"] == "receipt").await;
    assert_eq!(receipt["data"], json!({"user": "bob", "seq": 1}));
    // The next unread event the phone hears is the read's: the message was told once.
    let frame = bob_phone.recv_where(unread).await;
    assert_eq!(frame["data"], json!({"unread": 0, "last_seq": 1, "last_read": 1}));
}

#[tokio::test]
async fn in_a_cluster_a_resume_beyond_what_redis_keeps_reads_the_rest_from_the_store() {
    let (redis, postgres) = (RedisServer::start().await, PostgresServer::start().await);
    let url = postgres.database("cluster_resume").await;
    let instance = |id| {
        on_postgres(&redis, &url, id, |c| {
            c.rate_limit = 0.0;
            // Redis keeps at least 2 batches (it trims whole nodes of 100 entries).
            c.recovery_window = 2;
        })
    };
    let (a, b) = (instance("a").await, instance("b").await);
    let mut alice = a.member("alice", "long").await;
    let mut bob = b.member("bob", "long").await;
    assert_eq!(alice.request(chat("long", "m0")).await["seq"], 1);
    let first = bob.recv_where(|f| f["id"] == "m0").await;
    let epoch = first["epoch"].as_str().unwrap().to_owned();
    drop(bob);
    for n in 1..400 {
        assert_eq!(alice.request(chat("long", &format!("m{n}"))).await["type"], "ack");
    }
    let mut bob = b.connect("/ws?user=bob").await;
    let resume = json!({"type": "join", "room": "long", "id": "r", "data": {"since": {"seq": 1, "epoch": epoch}}});
    let answer = bob.request(resume).await;
    assert_eq!(answer["data"], json!({"recovered": true}), "{answer}");
    let mut seqs = Vec::new();
    while seqs.len() < 399 {
        let frame = bob.recv_type("chat").await;
        seqs.push(frame["seq"].as_u64().unwrap());
    }
    assert_eq!(seqs, (2..=400).collect::<Vec<u64>>(), "the store's part, then Redis's, in order");
}

#[tokio::test]
async fn a_cluster_on_a_sqlite_file_is_refused_at_start() {
    let dir = TempDir::new("cluster-sqlite");
    let mut config = wsbroker::Config::with_listen("127.0.0.1:0".parse().unwrap());
    config.database_url = dir.sqlite();
    config.redis_url = Some("redis://127.0.0.1:1".into());
    let err = wsbroker::Server::bind(config).await.expect_err("a SQLite file cannot be shared");
    assert!(err.is_config() && err.to_string().contains("SQLite"), "{err}");
}

#[tokio::test]
async fn a_database_file_that_cannot_be_opened_stops_the_broker_with_its_path_and_why() {
    let dir = TempDir::new("unopenable");
    std::fs::write(dir.0.join("not-a-dir"), b"").unwrap();
    let path = dir.0.join("not-a-dir").join("chat.db");
    let url = format!("sqlite://{}", path.display());
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_wsbroker"))
            .args(["--listen", "127.0.0.1:0", "--database-url", &url])
            .output()
            .unwrap()
    });
    let output = tokio::time::timeout(WAIT, output).await.expect("it exits at once").unwrap();
    assert!(!output.status.success(), "exit status {:?}", output.status);
    let said = String::from_utf8_lossy(&output.stdout) + String::from_utf8_lossy(&output.stderr);
    assert!(said.contains(&path.display().to_string()), "names the path: {said}");
    assert!(said.contains("unable to open"), "says why: {said}");
}

#[tokio::test]
async fn with_no_flags_the_broker_stores_into_wsbroker_db_in_its_working_directory() {
    use std::io::{BufRead, BufReader};
    let dir = TempDir::new("default-db");
    let mut child = crate::common::BrokerProcess(
        std::process::Command::new(env!("CARGO_BIN_EXE_wsbroker"))
            .args(["--listen", "127.0.0.1:0"])
            .current_dir(&dir.0)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let stdout = child.0.stdout.take().unwrap();
    let listening = tokio::task::spawn_blocking(move || {
        BufReader::new(stdout).lines().any(|l| l.is_ok_and(|l| l.contains("listening on")))
    });
    assert!(tokio::time::timeout(WAIT, listening).await.unwrap().unwrap(), "it started");
    assert!(dir.0.join("wsbroker.db").exists(), "the default store is ./wsbroker.db");
}

#[tokio::test]
async fn instances_creating_the_same_rooms_at_once_never_deadlock() {
    // 30 clients on 3 instances join the same 5 new rooms at once, each in its own order, round
    // after round: every writer's batch creates several of them. Locks taken in different orders
    // would deadlock in PostgreSQL, and the loser's chats would be refused `unavailable`.
    let postgres = PostgresServer::start().await;
    let url = postgres.database("creators").await;
    let mut instances = Vec::new();
    for _ in 0..3 {
        let url = url.clone();
        instances.push(start_server_with(move |c| c.database_url = url.parse().unwrap()).await);
    }
    let mut clients = Vec::new();
    for n in 0..30 {
        let user = format!("u{}", n % 10);
        clients.push(instances[n % 3].connect(&format!("/ws?user={user}")).await);
    }
    let mut rng = crate::common::Rng(0x5eed);
    for round in 0..10 {
        let mut rooms: Vec<String> = (0..5).map(|r| format!("new-{round}-{r}")).collect();
        for client in &mut clients {
            for at in (1..rooms.len()).rev() {
                rooms.swap(at, rng.below(at + 1));
            }
            for room in &rooms {
                client.send(json!({"type": "join", "room": room, "id": room})).await;
            }
        }
        for client in &mut clients {
            for _ in 0..rooms.len() {
                let answer =
                    client.recv_where(|f| f["type"] == "ack" || f["type"] == "error").await;
                assert_eq!(answer["type"], "ack", "round {round}: {answer}");
            }
        }
    }
    for instance in &instances {
        assert_eq!(instance.metric("wsbroker_store_failures_total").await, 0, "no failed commit");
    }
}

#[tokio::test]
async fn the_chat_tables_have_planner_statistics_from_the_start() {
    // A new database (or one just restored, which comes without statistics): the broker analyzes
    // the tables it plans reads over, so they are not misjudged until autovacuum gets to them.
    let postgres = PostgresServer::start().await;
    let url = postgres.database("chat").await;
    let _server = start_server_with({
        let url = url.clone();
        move |c| c.database_url = url.parse().unwrap()
    })
    .await;
    let never_analyzed = tokio::task::spawn_blocking(move || {
        let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
        let rows = client
            .query(
                "SELECT relname::text FROM pg_stat_user_tables \
                 WHERE last_analyze IS NULL AND last_autoanalyze IS NULL \
                 AND relname IN ('chat_messages', 'chat_participants', 'chat_rooms', \
                 'chat_reactions')",
                &[],
            )
            .unwrap();
        rows.iter().map(|row| row.get::<_, String>(0)).collect::<Vec<_>>()
    })
    .await
    .unwrap();
    assert!(never_analyzed.is_empty(), "never analyzed: {never_analyzed:?}");
}
