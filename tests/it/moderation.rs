//! Moderation through real sockets: roles and who may act on whom, mutes (refused before a seq is
//! used), kicks, bans (timed, ending by themselves), slow mode, room settings, archiving,
//! reports, blocks, the moderation log, and what survives a restart.

use hyper::{Method, StatusCode};
use serde_json::{json, Value};

use crate::common::{chat, spawn_broker_logged, stored_server, Client, TempDir, TestServer, WAIT};

const API: &str = "/api/v1/chat/rooms";

/// A public room `town` owned by olive, with mike (moderator), and bob and amy (members), each
/// connected and joined.
struct Town {
    server: TestServer,
    olive: Client,
    mike: Client,
    bob: Client,
    amy: Client,
}

async fn town(dir: &TempDir) -> Town {
    let server = stored_server(dir).await;
    let body = json!({"name": "town", "type": "public"});
    let (status, answer) = server.post(&format!("{API}?user=olive"), body).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    let olive = server.member("olive", "town").await;
    let mike = server.member("mike", "town").await;
    let bob = server.member("bob", "town").await;
    let amy = server.member("amy", "town").await;
    let (status, answer) =
        act(&server, Method::PUT, "town/roles/mike", "olive", json!({"role": "moderator"})).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{answer}");
    Town { server, olive, mike, bob, amy }
}

/// `method /rooms/{path}?user=as` with `body`.
async fn act(
    server: &TestServer,
    method: Method,
    path: &str,
    by: &str,
    body: Value,
) -> (StatusCode, Value) {
    let body = (!body.is_null()).then_some(body);
    server.call(method, &format!("{API}/{path}?user={by}"), body).await
}

fn code(answer: &Value) -> &str {
    answer["error"]["code"].as_str().unwrap_or_default()
}

/// Sends a chat and returns its answer (an ack with a seq, or an error).
async fn say(client: &mut Client, id: &str, content: &str) -> Value {
    client.request(chat("town", id, content)).await
}

async fn told(client: &mut Client, kind: &str) -> Value {
    client.recv_where(|frame| frame["type"] == kind).await
}

#[tokio::test]
async fn a_mute_refuses_chats_before_they_use_a_seq_and_ends_when_lifted() {
    let dir = TempDir::new("mod-mute");
    let Town { server, mut mike, mut bob, mut amy, .. } = town(&dir).await;
    let first = say(&mut amy, "a1", "hello").await;
    assert_eq!(first["type"], "ack", "{first}");
    let seq = first["seq"].as_u64().unwrap();

    let body = json!({"user": "bob", "duration": 600, "reason": "spam"});
    let (status, answer) = act(&server, Method::POST, "town/mutes", "mike", body).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{answer}");
    let event = told(&mut bob, "moderation").await;
    assert_eq!(event["room"], "town");
    assert_eq!(event["data"]["action"], "mute");
    assert_eq!(event["data"]["by"], "mike");
    assert_eq!(event["data"]["reason"], "spam");
    assert!(event["data"]["until"].is_string(), "{event}");

    let refused = say(&mut bob, "b1", "buy now").await;
    assert_eq!(refused["type"], "error", "{refused}");
    assert_eq!(refused["data"]["code"], "muted");
    assert_eq!(refused["data"]["until"], event["data"]["until"]);
    // No seq was used up by the refused chat.
    let next = say(&mut amy, "a2", "still here").await;
    assert_eq!(next["seq"].as_u64(), Some(seq + 1), "{next}");

    let (status, list) = act(&server, Method::GET, "town/mutes", "mike", Value::Null).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["items"][0]["user"], "bob", "{list}");
    assert_eq!(list["items"][0]["reason"], "spam");

    let (status, _) = act(&server, Method::DELETE, "town/mutes/bob", "mike", Value::Null).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(told(&mut bob, "moderation").await["data"]["action"], "unmute");
    assert_eq!(say(&mut bob, "b2", "sorry").await["type"], "ack");
    let (status, answer) =
        act(&server, Method::DELETE, "town/mutes/bob", "mike", Value::Null).await;
    assert_eq!((status, code(&answer)), (StatusCode::NOT_FOUND, "not_found"), "not muted now");
    // The moderator's own chats went through all along.
    assert_eq!(say(&mut mike, "m1", "ok").await["type"], "ack");
}

#[tokio::test]
async fn each_rank_acts_only_on_lower_ranks_and_bad_requests_change_nothing() {
    let dir = TempDir::new("mod-ranks");
    let Town { server, mut bob, .. } = town(&dir).await;
    let mute = |user: &str| json!({"user": user});
    let cases = [
        ("bob", "amy", StatusCode::FORBIDDEN, "forbidden"), // a member mutes nobody
        ("mike", "olive", StatusCode::FORBIDDEN, "forbidden"), // a moderator, not the owner
        ("mike", "mike", StatusCode::FORBIDDEN, "forbidden"), // nor itself
        ("mike", "zed", StatusCode::NOT_FOUND, "not_found"), // not a participant
        ("olive", "mike", StatusCode::NO_CONTENT, ""),      // the owner mutes a moderator
    ];
    for (by, user, status, expected) in cases {
        let (got, answer) = act(&server, Method::POST, "town/mutes", by, mute(user)).await;
        assert_eq!((got, code(&answer)), (status, expected), "{by} mutes {user}: {answer}");
    }
    let bad = [
        (json!({"user": "bob", "duration": -5}), "bad_request"),
        (json!({"user": "bob", "duration": 0}), "bad_request"),
        (json!({"user": "bob", "duration": 10_000_000_000_i64}), "bad_request"),
        (json!({"duration": 5}), "bad_request"),
        (json!({"user": "bob", "reason": "x".repeat(5000)}), "content_too_long"),
        (json!({"user": "bob", "bogus": 1}), "bad_request"),
    ];
    for (body, expected) in bad {
        let (status, answer) = act(&server, Method::POST, "town/mutes", "mike", body.clone()).await;
        assert_eq!(code(&answer), expected, "{body}: {status} {answer}");
    }
    let (status, answer) = act(&server, Method::POST, "nowhere/mutes", "mike", mute("bob")).await;
    assert_eq!((status, code(&answer)), (StatusCode::NOT_FOUND, "not_found"));
    // Nothing of it muted bob.
    assert_eq!(say(&mut bob, "b1", "fine").await["type"], "ack");
    let (_, list) = act(&server, Method::GET, "town/mutes", "olive", Value::Null).await;
    let muted: Vec<&Value> = list["items"].as_array().unwrap().iter().map(|m| &m["user"]).collect();
    assert_eq!(muted, [&json!("mike")]);
    // Members see no moderation lists.
    let (status, _) = act(&server, Method::GET, "town/mutes", "bob", Value::Null).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn a_kicked_user_may_rejoin_a_public_room_but_a_banned_one_may_not_until_unbanned() {
    let dir = TempDir::new("mod-ban");
    let Town { server, mut bob, .. } = town(&dir).await;
    let (status, answer) =
        act(&server, Method::POST, "town/kick", "mike", json!({"user": "bob"})).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{answer}");
    assert_eq!(told(&mut bob, "room_removed").await["room"], "town");
    let refused = say(&mut bob, "b1", "still in?").await;
    assert_eq!(refused["data"]["code"], "not_member", "{refused}");
    let joined = bob.request(json!({"type": "join", "room": "town", "id": "j1"})).await;
    assert_eq!(joined["type"], "ack", "a kick is not a ban: {joined}");

    let body = json!({"user": "bob", "reason": "again"});
    let (status, answer) = act(&server, Method::POST, "town/bans", "mike", body).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{answer}");
    assert_eq!(told(&mut bob, "room_removed").await["room"], "town");
    let refused = bob.request(json!({"type": "join", "room": "town", "id": "j2"})).await;
    assert_eq!(refused["data"]["code"], "forbidden", "{refused}");
    assert!(refused["data"]["message"].as_str().unwrap().contains("banned"), "{refused}");
    // Nor may it come back by reconnecting: a room in the connect URL, or a resume of it.
    let refused = server.try_connect("/ws?user=bob&room=town", None).await.err();
    assert_eq!(refused, Some(StatusCode::FORBIDDEN));
    let resume = json!({"type": "join", "room": "town", "id": "j-r", "data": {"since": {"seq": 1, "epoch": "x"}}});
    let refused = bob.request(resume).await;
    assert_eq!(refused["type"], "error", "{refused}");
    // Nor may the owner add it back while the ban holds.
    let (status, _) =
        server.post(&format!("{API}/town/participants/bob?user=olive"), json!({})).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (_, bans) = act(&server, Method::GET, "town/bans", "olive", Value::Null).await;
    assert_eq!(bans["items"][0]["user"], "bob", "{bans}");
    assert_eq!(bans["items"][0]["until"], Value::Null, "permanent");

    let (status, _) = act(&server, Method::DELETE, "town/bans/bob", "olive", Value::Null).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let joined = bob.request(json!({"type": "join", "room": "town", "id": "j3"})).await;
    assert_eq!(joined["type"], "ack", "{joined}");

    // The log has it all, newest first, for moderators.
    let (status, log) = act(&server, Method::GET, "town/moderation-log", "mike", Value::Null).await;
    assert_eq!(status, StatusCode::OK);
    let actions: Vec<&str> =
        log["items"].as_array().unwrap().iter().map(|l| l["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["unban", "ban", "kick", "set_role"], "{log}");
    assert_eq!(log["items"][1]["reason"], "again");
}

#[tokio::test]
async fn a_timed_ban_ends_by_itself_and_the_moderators_are_told() {
    let dir = TempDir::new("mod-expiry");
    let Town { server, mut olive, mut bob, .. } = town(&dir).await;
    let body = json!({"user": "bob", "duration": 1});
    let (status, answer) = act(&server, Method::POST, "town/bans", "mike", body).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{answer}");
    let ended =
        olive.recv_where(|f| f["type"] == "moderation" && f["data"]["action"] == "ban_ended").await;
    assert_eq!(ended["data"]["user"], "bob", "{ended}");
    let joined = bob.request(json!({"type": "join", "room": "town", "id": "j"})).await;
    assert_eq!(joined["type"], "ack", "{joined}");
    let (_, bans) = act(&server, Method::GET, "town/bans", "olive", Value::Null).await;
    assert_eq!(bans["items"], json!([]));
}

#[tokio::test]
async fn slow_mode_spaces_out_members_but_not_moderators_and_settings_are_told() {
    let dir = TempDir::new("mod-slow");
    let Town { server, mut mike, mut bob, mut amy, .. } = town(&dir).await;
    let body = json!({"slow_mode_ms": 60_000, "title": "The Town", "topic": "be nice"});
    let (status, answer) = act(&server, Method::PATCH, "town/settings", "olive", body).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{answer}");
    let updated = told(&mut amy, "room_updated").await;
    assert_eq!(updated["data"]["title"], "The Town", "{updated}");
    assert_eq!(updated["data"]["slow_mode_ms"], 60_000);

    assert_eq!(say(&mut bob, "b1", "one").await["type"], "ack");
    let refused = say(&mut bob, "b2", "two").await;
    assert_eq!(refused["data"]["code"], "slow_mode", "{refused}");
    assert!(refused["data"]["retry_after_ms"].as_i64().unwrap() > 50_000, "{refused}");
    assert_eq!(say(&mut amy, "a1", "mine").await["type"], "ack", "per member");
    assert_eq!(say(&mut mike, "m1", "one").await["type"], "ack");
    assert_eq!(say(&mut mike, "m2", "two").await["type"], "ack", "moderators are exempt");

    let (status, settings) = server.get(&format!("{API}/town/settings?user=amy")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(settings["topic"], "be nice");
    let (status, _) =
        act(&server, Method::PATCH, "town/settings", "mike", json!({"title": "x"})).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "the owner changes settings, not a moderator");
    for body in [json!({"slow_mode_ms": -1}), json!({"title": 5}), json!({"colour": "red"})] {
        let (status, _) = act(&server, Method::PATCH, "town/settings", "olive", body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    }
    let (status, _) =
        act(&server, Method::PATCH, "town/settings", "olive", json!({"slow_mode_ms": 0})).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    told(&mut bob, "room_updated").await;
    assert_eq!(say(&mut bob, "b3", "free again").await["type"], "ack");
}

#[tokio::test]
async fn an_archived_room_takes_no_messages_and_no_members() {
    let dir = TempDir::new("mod-archive");
    let Town { server, mut bob, .. } = town(&dir).await;
    assert_eq!(say(&mut bob, "b1", "last words").await["type"], "ack");
    let (status, _) = act(&server, Method::DELETE, "town", "bob", Value::Null).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "members archive nothing");
    let (status, answer) = act(&server, Method::DELETE, "town", "olive", Value::Null).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{answer}");
    assert_eq!(told(&mut bob, "room_deleted").await["data"]["archived"], true);
    let refused = say(&mut bob, "b2", "hello?").await;
    assert_eq!(refused["data"]["code"], "forbidden", "{refused}");
    let mut carl = server.connect("/ws?user=carl").await;
    let refused = carl.request(json!({"type": "join", "room": "town", "id": "j"})).await;
    assert_eq!(refused["data"]["code"], "forbidden", "{refused}");
    let (status, _) = server.get(&format!("{API}/town/messages?user=bob")).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "history stays for admins only");
}

#[tokio::test]
async fn a_message_is_reported_once_and_moderators_resolve_it() {
    let dir = TempDir::new("mod-reports");
    let Town { server, mut mike, mut bob, .. } = town(&dir).await;
    assert_eq!(say(&mut bob, "spam-1", "buy now").await["type"], "ack");
    let body = json!({"message": "spam-1", "reason": "advertising"});
    let (status, answer) = act(&server, Method::POST, "town/reports", "amy", body.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    let heard =
        mike.recv_where(|f| f["type"] == "moderation" && f["data"]["action"] == "report").await;
    assert_eq!(
        (heard["data"]["action"].as_str(), heard["data"]["by"].as_str()),
        (Some("report"), Some("amy"))
    );
    let (status, answer) = act(&server, Method::POST, "town/reports", "amy", body).await;
    assert_eq!((status, code(&answer)), (StatusCode::CONFLICT, "conflict"), "once per user");
    let missing = json!({"message": "nope", "reason": "x"});
    let (status, _) = act(&server, Method::POST, "town/reports", "amy", missing).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) =
        act(&server, Method::POST, "town/reports", "amy", json!({"message": "spam-1"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "a reason is required");

    let (status, _) = act(&server, Method::GET, "town/reports", "amy", Value::Null).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, list) = act(&server, Method::GET, "town/reports", "mike", Value::Null).await;
    assert_eq!(status, StatusCode::OK);
    let report = &list["items"][0];
    assert_eq!(
        (report["from"].as_str(), report["reporter"].as_str()),
        (Some("bob"), Some("amy")),
        "{list}"
    );
    let id = report["id"].as_i64().unwrap();
    let resolve = json!({"resolution": "deleted the message"});
    let path = format!("town/reports/{id}/resolve");
    let (status, answer) = act(&server, Method::POST, &path, "mike", resolve.clone()).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{answer}");
    let (status, _) = act(&server, Method::POST, &path, "mike", resolve).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "resolved already");
    let (_, open) = act(&server, Method::GET, "town/reports", "mike", Value::Null).await;
    assert_eq!(open["items"], json!([]));
    let (_, all) = server.get(&format!("{API}/town/reports?user=mike&all=true")).await;
    assert_eq!(all["items"][0]["resolved"]["by"], "mike", "{all}");
}

#[tokio::test]
async fn a_blocked_user_cannot_open_or_stay_in_the_direct_room() {
    let dir = TempDir::new("mod-blocks");
    let server = stored_server(&dir).await;
    let mut alice = server.connect("/ws?user=alice").await;
    let mut bob = server.connect("/ws?user=bob").await;
    let dm = json!({"type": "join", "room": "dm:alice:bob", "id": "j"});
    assert_eq!(bob.request(dm.clone()).await["type"], "ack");
    assert_eq!(alice.request(dm.clone()).await["type"], "ack");
    let blocks = "/api/v1/chat/users/alice/blocks";
    let (status, answer) = server
        .call(Method::POST, &format!("{blocks}?user=alice"), Some(json!({"user": "bob"})))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{answer}");
    let refused = bob.request(chat("dm:alice:bob", "b1", "hey")).await;
    assert_eq!(refused["data"]["code"], "not_member", "taken out of the room: {refused}");
    let refused = bob.request(dm.clone()).await;
    assert_eq!(refused["data"]["code"], "forbidden", "{refused}");
    let (status, _) = server
        .call(Method::POST, &format!("{blocks}?user=alice"), Some(json!({"user": "bob"})))
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, _) = server.get(&format!("{blocks}?user=bob")).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "a user's blocks are its own");
    let (_, list) = server.get(&format!("{blocks}?user=alice")).await;
    assert_eq!(list["items"][0]["user"], "bob");
    let (status, _) = server.call(Method::DELETE, &format!("{blocks}/bob?user=alice"), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(bob.request(dm).await["type"], "ack");
}

#[tokio::test]
async fn moderation_frames_over_websocket_are_acked_or_refused() {
    let dir = TempDir::new("mod-ws");
    let Town { server: _server, mut mike, mut bob, .. } = town(&dir).await;
    let mute =
        json!({"type": "mute", "room": "town", "id": "m", "data": {"user": "bob", "duration": 60}});
    assert_eq!(mike.request(mute).await["type"], "ack");
    assert_eq!(say(&mut bob, "b1", "hi").await["data"]["code"], "muted");
    let refused = bob
        .request(json!({"type": "kick", "room": "town", "id": "k", "data": {"user": "mike"}}))
        .await;
    assert_eq!(refused["data"]["code"], "forbidden", "{refused}");
    let malformed = mike
        .request(json!({"type": "ban", "room": "town", "id": "b", "data": {"who": "bob"}}))
        .await;
    assert_eq!(malformed["data"]["code"], "bad_request", "{malformed}");
    let report =
        json!({"type": "report", "room": "town", "id": "r", "data": {"id": "m1", "reason": "x"}});
    assert_eq!(bob.request(report).await["data"]["code"], "not_found", "no such message");
    let unmute = json!({"type": "unmute", "room": "town", "id": "u", "data": {"user": "bob"}});
    assert_eq!(mike.request(unmute).await["type"], "ack");
    assert_eq!(say(&mut bob, "b2", "hi").await["type"], "ack");
}

#[tokio::test]
async fn mutes_bans_and_slow_mode_hold_across_a_restart() {
    let dir = TempDir::new("mod-restart");
    {
        let Town { server, .. } = town(&dir).await;
        let (status, _) =
            act(&server, Method::POST, "town/mutes", "mike", json!({"user": "bob"})).await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        let (status, _) =
            act(&server, Method::POST, "town/bans", "mike", json!({"user": "amy"})).await;
        assert_eq!(status, StatusCode::NO_CONTENT);
    }
    let server = stored_server(&dir).await;
    let mut bob = server.member("bob", "town").await;
    assert_eq!(say(&mut bob, "b1", "am I?").await["data"]["code"], "muted");
    let mut amy = server.connect("/ws?user=amy").await;
    let refused = amy.request(json!({"type": "join", "room": "town", "id": "j"})).await;
    assert_eq!(refused["data"]["code"], "forbidden", "{refused}");
}

/// Waits until a line of `log` holds every one of `parts`; returns it.
async fn logged(log: &std::sync::Mutex<Vec<String>>, parts: &[&str]) -> String {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let found =
            log.lock().unwrap().iter().find(|l| parts.iter().all(|p| l.contains(p))).cloned();
        if let Some(line) = found {
            return line;
        }
        assert!(tokio::time::Instant::now() < deadline, "no log line with {parts:?}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn every_action_done_or_refused_and_every_participant_change_and_deletion_is_audited() {
    let dir = TempDir::new("mod-audit");
    let url = dir.sqlite_url();
    let (_broker, server, log) =
        spawn_broker_logged(&["--database-url", &url, "--rate-limit", "0"]).await;
    let (status, _) =
        server.post(&format!("{API}?user=olive"), json!({"name": "town", "type": "public"})).await;
    assert_eq!(status, StatusCode::CREATED);
    let mut bob = server.member("bob", "town").await;
    let (status, _) = act(
        &server,
        Method::POST,
        "town/mutes",
        "olive",
        json!({"user": "bob", "reason": "noise"}),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let line =
        logged(&log, &["audit", "event=\"moderation\"", "action=\"mute\"", "outcome=\"done\""])
            .await;
    for part in ["actor=\"olive\"", "room=\"town\"", "target=\"bob\"", "reason=\"noise\""] {
        assert!(line.contains(part), "{part} in {line}");
    }
    let (status, _) =
        act(&server, Method::POST, "town/kick", "bob", json!({"user": "olive"})).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    logged(&log, &["audit", "action=\"kick\"", "actor=\"bob\"", "outcome=\"forbidden\""]).await;

    let (status, _) =
        server.post(&format!("{API}/town/participants/amy?user=olive"), json!({})).await;
    assert_eq!(status, StatusCode::CREATED);
    logged(&log, &["audit", "participant_added", "target=amy"]).await;
    let (status, _) = server.delete(&format!("{API}/town/participants/amy?user=olive")).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    logged(&log, &["audit", "participant_removed", "target=amy"]).await;
    let (status, _) = act(&server, Method::DELETE, "town/mutes/bob", "olive", Value::Null).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(say(&mut bob, "b1", "oops").await["type"], "ack");
    let (status, _) = server.delete(&format!("{API}/town/messages/b1?user=olive")).await;
    assert!(status.is_success(), "{status}");
    logged(
        &log,
        &["audit", "message_deleted", "actor=\"olive\"", "author=\"bob\"", "moderated=true"],
    )
    .await;
}

#[tokio::test]
async fn nobody_moderates_an_admin_its_chats_pass_a_mute_and_slow_mode() {
    use crate::auth::{token, SECRET};
    let dir = TempDir::new("mod-admin");
    let url = dir.sqlite();
    let server = crate::common::start_server_with(move |c| {
        c.database_url = url;
        c.rate_limit = 0.0;
        c.auth_enabled = true;
        c.jwt_secret = Some(SECRET.into());
        c.jwt_issuer = Some("wsb".into());
        c.jwt_audience = Some("chat".into());
    })
    .await;
    let olive = token("olive", json!({}));
    let (status, _) = server
        .request_as(&olive, Method::POST, API, Some(json!({"name": "town", "type": "public"})))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let mut root =
        server.connect(&format!("/ws?token={}", token("root", json!({"role": "admin"})))).await;
    assert_eq!(
        root.request(json!({"type": "join", "room": "town", "id": "j"})).await["type"],
        "ack"
    );
    // The owner sees a member named root (the store knows no admins): the mute is recorded...
    let body = Some(json!({"user": "root"}));
    let (status, _) =
        server.request_as(&olive, Method::POST, &format!("{API}/town/mutes"), body).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let settings = Some(json!({"slow_mode_ms": 60_000}));
    let (status, _) =
        server.request_as(&olive, Method::PATCH, &format!("{API}/town/settings"), settings).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    // ...but an admin's token passes every room rule.
    for n in 0..2 {
        let answer = root.request(chat("town", &format!("r{n}"), "admin here")).await;
        assert_eq!(answer["type"], "ack", "{answer}");
    }
}

#[tokio::test]
async fn the_owner_promotes_demotes_and_hands_the_room_over() {
    let dir = TempDir::new("mod-roles");
    let Town { server, mut bob, .. } = town(&dir).await;
    let (status, _) =
        act(&server, Method::PUT, "town/roles/bob", "mike", json!({"role": "moderator"})).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "a moderator promotes nobody");
    let (status, _) =
        act(&server, Method::PUT, "town/roles/olive", "olive", json!({"role": "member"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "the owner changes only by a transfer");
    let (status, _) =
        act(&server, Method::PUT, "town/roles/mike", "olive", json!({"role": "member"})).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "demoted");
    let (status, _) =
        act(&server, Method::POST, "town/mutes", "mike", json!({"user": "bob"})).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "a member again");
    let (status, _) =
        act(&server, Method::POST, "town/transfer", "mike", json!({"user": "mike"})).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) =
        act(&server, Method::POST, "town/transfer", "olive", json!({"user": "bob"})).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let told = bob.recv_where(|f| f["type"] == "moderation" && f["data"]["role"] == "owner").await;
    assert_eq!(told["data"]["action"], "set_role");
    let (_, participants) = server.get(&format!("{API}/town/participants?user=bob")).await;
    let role = |user: &str| {
        let list = participants["participants"].as_array().unwrap();
        list.iter().find(|p| p["user"] == user).unwrap()["role"].as_str().unwrap().to_owned()
    };
    assert_eq!((role("bob"), role("olive")), ("owner".to_owned(), "moderator".to_owned()));
    // The new owner may now do what owners do; the old one, what moderators do.
    let (status, _) =
        act(&server, Method::PATCH, "town/settings", "bob", json!({"title": "Bob's"})).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) =
        act(&server, Method::PATCH, "town/settings", "olive", json!({"title": "no"})).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}
