//! The store's conformance suite: one set of checks of the `Engine` contract and the chat
//! operations, run against SQLite (a temporary file) and PostgreSQL (a server of the test's own).

use std::sync::Arc;

use serde_json::json;
use wsbroker::store::migrations::{self, MIGRATIONS};
use wsbroker::store::ops::{self, Answer, Found, Outcome, Read, Write};
use wsbroker::store::search::{self, Scope, Search};
use wsbroker::store::{DatabaseUrl, Engine, NewMessage, Role, RoomInfo, RoomType, Value};

use crate::common::TempDir;
use crate::postgres_server::PostgresServer;

fn room(id: &str, kind: RoomType, by: &str) -> RoomInfo {
    RoomInfo { id: id.into(), kind, created_at: 1_000, created_by: by.into(), metadata: None }
}

fn message(room: &str, sender: &str, id: &str, at: i64) -> NewMessage {
    NewMessage {
        id: id.into(),
        room: Some(Arc::from(room)),
        sender: Arc::from(sender),
        kind: "chat",
        data: format!(r#"{{"content":"{id}"}}"#).into(),
        created_at: at,
        metadata: None,
        stream: None,
        target: None,
    }
}

/// Applies `writes` in one transaction.
fn commit(engine: &mut dyn Engine, writes: Vec<Write>) -> Vec<Outcome> {
    engine.begin().unwrap();
    let outcomes = ops::apply(engine, &writes).unwrap();
    engine.commit().unwrap();
    outcomes
}

fn read(engine: &mut dyn Engine, question: Read) -> Answer {
    ops::read(engine, &question).unwrap()
}

fn history(
    engine: &mut dyn Engine,
    room: &str,
    before: Option<i64>,
    limit: i64,
) -> Vec<(i64, String)> {
    let Answer::Messages(messages) =
        read(engine, Read::History { room: room.into(), before, after: None, limit })
    else {
        panic!("not messages")
    };
    messages.into_iter().map(|m| (m.pos, m.id)).collect()
}

/// Every check, on a fresh database at `url`.
fn conformance(url: &DatabaseUrl) {
    let mut engine = url.connect().expect("open the database");
    let engine = engine.as_mut();
    assert_eq!(
        migrations::migrate(engine, migrations::latest()).unwrap(),
        vec![1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
    );
    assert!(migrations::migrate(engine, migrations::latest()).unwrap().is_empty(), "idempotent");
    transactions_are_all_or_nothing(engine);
    rooms_and_participants(engine);
    messages_are_stored_once_and_paged(engine);
    streams_keep_their_seq_and_epoch(engine);
    targets_and_room_events(engine);
    search_finds_words_in_readable_rooms_newest_first(engine);
    retention_and_presence(engine);
    assert_eq!(search(engine, "lunch", Scope::All, None), ["s3"], "purged ones are not found");
    crate::store_moderation::moderation_contract(engine);
    crate::store_attachments::attachment_contract(engine);
}

fn transactions_are_all_or_nothing(engine: &mut dyn Engine) {
    engine.begin().unwrap();
    ops::apply(engine, &[Write::Message(message("tx", "a", "m1", 1))]).unwrap();
    engine.rollback().unwrap();
    assert!(history(engine, "tx", None, 10).is_empty(), "a rolled back insert leaves nothing");
    let rows = engine.query(
        "SELECT CAST(?1 AS BIGINT), CAST(?2 AS TEXT)",
        &[Value::Int(Some(7)), Value::Text(Some("x".into()))],
    );
    assert_eq!(rows.unwrap(), vec![vec![Value::Int(Some(7)), Value::Text(Some("x".into()))]]);
}

fn rooms_and_participants(engine: &mut dyn Engine) {
    let created = commit(
        engine,
        vec![
            Write::CreateRoom {
                room: room("team", RoomType::Private, "alice"),
                members: vec!["bob".into()],
            },
            Write::CreateRoom { room: room("team", RoomType::Public, "mallory"), members: vec![] },
            Write::EnsureRoom {
                room: room("lobby", RoomType::Public, "carol"),
                members: vec!["carol".into()],
            },
            Write::EnsureRoom {
                room: room("lobby", RoomType::Private, "dave"),
                members: vec!["dave".into()],
            },
        ],
    );
    assert_eq!(created, [Outcome::Done, Outcome::Exists, Outcome::Done, Outcome::Done]);
    let Answer::Access { room: Some(team), role, bar: None } =
        read(engine, Read::Access { room: "team".into(), user: "alice".into(), bar: false })
    else {
        panic!("team exists")
    };
    assert_eq!((team.kind, role), (RoomType::Private, Some(Role::Owner)), "the creator owns it");
    let Answer::Access { room: Some(lobby), role: None, bar: None } =
        read(engine, Read::Access { room: "lobby".into(), user: "dave".into(), bar: false })
    else {
        panic!("an ensured room keeps its first creation")
    };
    assert_eq!(lobby.kind, RoomType::Public);
    let Answer::Participants(people) = read(engine, Read::Participants { room: "team".into() })
    else {
        panic!()
    };
    let people: Vec<(String, Role)> = people.into_iter().map(|p| (p.user, p.role)).collect();
    assert_eq!(people, [("alice".into(), Role::Owner), ("bob".into(), Role::Member)]);
    let Answer::Rooms(visible) =
        read(engine, Read::Rooms { user: "erin".into(), after: None, limit: 10 })
    else {
        panic!()
    };
    assert_eq!(
        visible.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        ["lobby"],
        "a stranger sees public rooms"
    );
    let Answer::Rooms(visible) =
        read(engine, Read::Rooms { user: "bob".into(), after: None, limit: 10 })
    else {
        panic!()
    };
    assert_eq!(visible.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), ["lobby", "team"]);
    let Answer::Rooms(page) =
        read(engine, Read::Rooms { user: "bob".into(), after: Some("lobby".into()), limit: 10 })
    else {
        panic!()
    };
    assert_eq!(page.len(), 1, "paged by name");
    let removed = commit(
        engine,
        vec![
            Write::RemoveParticipant { room: "team".into(), user: "bob".into() },
            Write::RemoveParticipant { room: "team".into(), user: "bob".into() },
            Write::AddParticipant {
                room: "nowhere".into(),
                user: "bob".into(),
                role: Role::Member,
                at: 5,
            },
        ],
    );
    assert_eq!(removed, [Outcome::Done, Outcome::NotFound, Outcome::NotFound]);
}

fn messages_are_stored_once_and_paged(engine: &mut dyn Engine) {
    let writes = (0..120)
        .map(|n| Write::Message(message("paged", "alice", &format!("m{n}"), 10 + n)))
        .collect();
    commit(engine, writes);
    let outcomes = commit(
        engine,
        vec![
            Write::Message(message("paged", "alice", "m5", 999)),
            Write::Message(message("paged", "bob", "m5", 1_000)),
        ],
    );
    assert_eq!(outcomes, [Outcome::Exists, Outcome::Done], "alice's resend is found, not stored");
    let newest = history(engine, "paged", None, 50);
    assert_eq!(newest.len(), 50);
    assert_eq!(
        newest.last().unwrap().1,
        "m5",
        "bob's m5 is a message of its own, alice's retry is not"
    );
    assert_eq!(newest.first().unwrap().1, "m71", "oldest first within the page");
    let older = history(engine, "paged", Some(newest[0].0), 50);
    assert_eq!(
        (older.first().unwrap().1.as_str(), older.last().unwrap().1.as_str()),
        ("m21", "m70")
    );
    let oldest = history(engine, "paged", Some(older[0].0), 50);
    assert_eq!(oldest.len(), 21, "the last page is short");
    assert_eq!(oldest[0].1, "m0");
    // Outcomes in the batch's order, whatever order its rows go in (by room): a run over three
    // rooms with a resend in it and one message twice.
    let outcomes = commit(
        engine,
        vec![
            Write::Message(message("zz", "alice", "z1", 2_000)),
            Write::Message(message("paged", "alice", "m7", 2_001)),
            Write::Message(message("aa", "alice", "a1", 2_002)),
            Write::Message(message("aa", "alice", "a1", 2_003)),
        ],
    );
    let (done, exists) = (Outcome::Done, Outcome::Exists);
    assert_eq!(outcomes, [done.clone(), exists.clone(), done, exists], "the first of two is new");
    // Messages between other writes go in as one insert, their outcomes still in the batch's order.
    let outcomes = commit(
        engine,
        vec![
            Write::Message(message("mixed", "alice", "x1", 3_000)),
            Write::AddParticipant {
                room: "nowhere".into(),
                user: "alice".into(),
                role: Role::Member,
                at: 3_001,
            },
            Write::Message(message("mixed", "alice", "x1", 3_002)),
            Write::Presence { user: "alice".into(), online: true, connections: 1, at: 3_003 },
            Write::Message(message("mixed", "alice", "x2", 3_004)),
        ],
    );
    let (done, exists) = (Outcome::Done, Outcome::Exists);
    let expected = [done.clone(), Outcome::NotFound, exists, done.clone(), done];
    assert_eq!(outcomes, expected);
    let mixed: Vec<String> = history(engine, "mixed", None, 10).into_iter().map(|m| m.1).collect();
    assert_eq!(mixed, ["x1", "x2"]);
}

fn streams_keep_their_seq_and_epoch(engine: &mut dyn Engine) {
    let epoch: Arc<str> = Arc::from("e1");
    let stream = |sent_since| Read::StreamHead { room: "numbered".into(), sent_since };
    let empty = Answer::StreamHead { newest: None, sent: Vec::new() };
    assert_eq!(read(engine, stream(0)), empty);
    let writes = (1..=5)
        .map(|seq| {
            let stream = Some((seq, Arc::clone(&epoch)));
            Write::Message(NewMessage {
                stream,
                ..message("numbered", "alice", &format!("s{seq}"), 1_000 + seq)
            })
        })
        .collect();
    commit(engine, writes);
    let sent = |seqs: std::ops::RangeInclusive<i64>| -> Vec<(String, String, i64)> {
        seqs.rev().map(|seq| ("alice".to_owned(), format!("s{seq}"), seq)).collect()
    };
    let newest = Some(("e1".into(), 5));
    assert_eq!(
        read(engine, stream(0)),
        Answer::StreamHead { newest: newest.clone(), sent: sent(1..=5) }
    );
    assert_eq!(
        read(engine, stream(1_004)),
        Answer::StreamHead { newest, sent: sent(4..=5) },
        "the ids sent since a time, newest first"
    );
    let after = Read::History { room: "numbered".into(), before: None, after: Some(3), limit: 10 };
    let Answer::Messages(page) = read(engine, after) else { panic!("not messages") };
    let streams: Vec<Option<(i64, String)>> = page.into_iter().map(|m| m.stream).collect();
    assert_eq!(
        streams,
        [Some((4, "e1".to_owned())), Some((5, "e1".to_owned()))],
        "after a seq, in seq order"
    );
}

/// A room event in `team`: `kind` by `sender` about `data`'s message, at `seq`.
fn event(kind: &'static str, sender: &str, seq: i64, data: serde_json::Value) -> Write {
    let target = data["id"].as_str().map(str::to_owned);
    Write::Message(NewMessage {
        kind,
        data: data.to_string().into(),
        stream: Some((seq, Arc::from("t1"))),
        target,
        ..message("team", sender, &format!("event{seq}"), 50 + seq)
    })
}

/// What `Read::Target` finds of message `id` in `team`.
fn target(engine: &mut dyn Engine, id: &str, sender: Option<&str>, caller: &str) -> Found {
    let (room, id, caller, sender) =
        ("team".into(), id.into(), caller.into(), sender.map(Into::into));
    let deleted_too = false;
    let Answer::Target(found) =
        read(engine, Read::Target { room, id, sender, caller, deleted_too })
    else {
        panic!("not a target")
    };
    found
}

fn versions(engine: &mut dyn Engine, sender: &str, id: &str) -> Answer {
    read(engine, Read::Versions { room: "team".into(), sender: sender.into(), id: id.into() })
}

fn targets_and_room_events(engine: &mut dyn Engine) {
    let numbered = |sender: &str, id: &str, seq: i64| {
        Write::Message(NewMessage {
            stream: Some((seq, Arc::from("t1"))),
            ..message("team", sender, id, 20 + seq)
        })
    };
    commit(
        engine,
        vec![numbered("bob", "hello", 1), numbered("carol", "dup", 2), numbered("dave", "dup", 3)],
    );
    let found = |author: &str, created_at, caller_moderates| Found::Message {
        author: author.into(),
        created_at,
        caller_moderates,
    };
    assert_eq!(target(engine, "hello", None, "mallory"), found("bob", 21, false));
    assert_eq!(target(engine, "hello", None, "alice"), found("bob", 21, true), "alice owns team");
    assert_eq!(target(engine, "nothing", None, "bob"), Found::NotFound);
    assert_eq!(target(engine, "dup", None, "mallory"), Found::Ambiguous, "two senders used it");
    assert_eq!(target(engine, "dup", Some("carol"), "mallory"), found("carol", 22, false));
    assert_eq!(target(engine, "dup", None, "dave"), found("dave", 23, false), "the caller's own");

    commit(
        engine,
        vec![
            event("message_edited", "bob", 4, json!({"id": "hello", "content": "hello, edited"})),
            event("message_deleted", "alice", 5, json!({"id": "dup", "from": "carol"})),
            event("message_edited", "bob", 6, json!({"id": "hello", "content": "hello again"})),
            event("message_edited", "carol", 7, json!({"id": "dup", "content": "too late"})),
        ],
    );
    let Answer::Messages(listed) =
        read(engine, Read::History { room: "team".into(), before: None, after: None, limit: 10 })
    else {
        panic!("not messages")
    };
    let shown: Vec<(&str, &str, Option<i64>)> =
        listed.iter().map(|m| (m.sender.as_str(), m.data.as_str(), m.edited_at)).collect();
    assert_eq!(
        shown,
        [("bob", r#"{"content":"hello again"}"#, Some(56)), ("dave", r#"{"content":"dup"}"#, None)],
        "the current content, no events, carol's deleted message left out"
    );
    assert_eq!(target(engine, "dup", None, "mallory"), found("dave", 23, false), "one dup is left");
    let replaced = vec![
        (r#"{"content":"hello"}"#.to_owned(), 54),
        (r#"{"content":"hello, edited"}"#.to_owned(), 56),
    ];
    assert_eq!(
        versions(engine, "bob", "hello"),
        Answer::Versions(replaced.clone()),
        "oldest first"
    );
    // The first edit resent (through another instance, say): found stored, it edits nothing again.
    let resent =
        event("message_edited", "bob", 4, json!({"id": "hello", "content": "hello, edited"}));
    assert_eq!(commit(engine, vec![resent]), [Outcome::Exists]);
    assert_eq!(versions(engine, "bob", "hello"), Answer::Versions(replaced), "no version added");
    assert_eq!(
        versions(engine, "carol", "dup"),
        Answer::Versions(vec![]),
        "a deleted one is not edited"
    );

    let Answer::Messages(replay) =
        read(engine, Read::Stream { room: "team".into(), after: 0, limit: 10 })
    else {
        panic!("not messages")
    };
    let seqs: Vec<(i64, &str)> =
        replay.iter().map(|m| (m.stream.as_ref().unwrap().0, m.kind.as_str())).collect();
    let kinds = [
        (1, "chat"),
        (3, "chat"),
        (4, "message_edited"),
        (5, "message_deleted"),
        (6, "message_edited"),
        (7, "message_edited"),
    ];
    assert_eq!(seqs, kinds, "a replay holds the events in seq order, not the deleted message");

    let reaction = |kind, sender: &str, seq| {
        event(kind, sender, seq, json!({"id": "dup", "from": "dave", "emoji": "👍"}))
    };
    commit(
        engine,
        vec![
            reaction("reaction_added", "bob", 8),
            reaction("reaction_added", "carol", 9),
            reaction("reaction_added", "carol", 10),
            reaction("reaction_removed", "bob", 11),
        ],
    );
    let messages =
        vec![("dave".to_owned(), "dup".to_owned()), ("bob".to_owned(), "hello".to_owned())];
    let read_reactions = Read::Reactions { room: "team".into(), messages, viewer: "carol".into() };
    let Answer::Reactions(found) = read(engine, read_reactions) else { panic!("not reactions") };
    let counted: Vec<(&str, &str, i64, bool)> =
        found.iter().map(|r| (r.id.as_str(), r.emoji.as_str(), r.count, r.mine)).collect();
    assert_eq!(counted, [("dup", "👍", 1, true)], "carol's once, bob's taken back");
    let reacted = |user: &str| Read::Reacted {
        room: "team".into(),
        sender: "dave".into(),
        id: "dup".into(),
        user: user.into(),
        emoji: "👍".into(),
    };
    assert_eq!(read(engine, reacted("carol")), Answer::Reacted(true));
    assert_eq!(read(engine, reacted("bob")), Answer::Reacted(false));

    // Every numbered row moved the room's head; the newest message is dave's (carol's is deleted).
    let heads = |engine: &mut dyn Engine| {
        let rooms = vec!["team".to_owned(), "nowhere".to_owned()];
        let Answer::Heads(heads) = read(engine, Read::Heads { user: "alice".into(), rooms }) else {
            panic!("not heads")
        };
        heads
    };
    let found = heads(engine);
    assert_eq!(found.len(), 1, "no head for a room that is not there");
    let head = &found[0];
    assert_eq!((head.room.as_str(), head.last_seq, head.last_read), ("team", 11, Some(0)));
    let newest = head.last_message.as_ref().map(|m| (m.sender.as_str(), m.id.as_str()));
    assert_eq!(newest, Some(("dave", "dup")));
    let mark = |seq| Write::MarkRead { room: "team".into(), user: "alice".into(), seq };
    commit(engine, vec![mark(7), mark(5)]);
    assert_eq!(heads(engine)[0].last_read, Some(7), "never backwards");
}

/// The ids of the messages a search for `q` finds in `scope`, newest first: paged two at a time
/// through the cursor (the last one's position) until a page is short.
fn search(engine: &mut dyn Engine, q: &str, scope: Scope, mut before: Option<i64>) -> Vec<String> {
    let mut ids = Vec::new();
    loop {
        let (words, scope) = (search::words(q), scope.clone());
        let Answer::Messages(page) =
            read(engine, Read::Search(Search { words, scope, before, limit: 2 }))
        else {
            panic!("not messages")
        };
        before = page.last().map(|m| m.pos);
        let full = page.len() == 2;
        ids.extend(page.into_iter().map(|m| m.id));
        if !full {
            return ids;
        }
    }
}

fn search_finds_words_in_readable_rooms_newest_first(engine: &mut dyn Engine) {
    let said = |room: &str, sender: &str, id: &str, content: &str, at: i64| {
        let data = json!({ "content": content }).to_string().into();
        Write::Message(NewMessage { data, ..message(room, sender, id, at) })
    };
    commit(
        engine,
        vec![
            said("lobby", "carol", "s1", "Lunch at the café today?", 30),
            said("lobby", "carol", "s2", "the café is closed; LUNCH elsewhere", 31),
            said("team", "bob", "s3", "lunch plans: tacos", 100),
        ],
    );
    let readable = |user: &str| Scope::Readable(user.into());
    assert_eq!(search(engine, "lunch", readable("mallory"), None), ["s2", "s1"], "public only");
    assert_eq!(
        search(engine, "LUNCH", readable("alice"), None),
        ["s3", "s2", "s1"],
        "her rooms too"
    );
    assert_eq!(search(engine, "lunch", Scope::Room("team".into()), None), ["s3"]);
    assert_eq!(search(engine, "lunch", Scope::All, None), ["s3", "s2", "s1"]);
    assert_eq!(search(engine, "café lunch", Scope::All, None), ["s2", "s1"], "every word");
    assert_eq!(search(engine, "lun", Scope::All, None), ["s3", "s2", "s1"], "the last as a prefix");
    assert!(search(engine, "lu", Scope::All, None).is_empty(), "too short for a prefix");
    assert!(search(engine, "lunches", Scope::All, None).is_empty());
    // Edits: the current content is found, the replaced one and the edit events are not.
    assert_eq!(search(engine, "again", Scope::All, None), ["hello"]);
    assert!(search(engine, "edited", Scope::All, None).is_empty());
    // Deleted messages are never found: carol's dup is deleted, dave's is not.
    let found = read(
        engine,
        Read::Search(Search {
            words: search::words("dup"),
            scope: Scope::All,
            before: None,
            limit: 10,
        }),
    );
    let Answer::Messages(found) = found else { panic!("not messages") };
    let senders: Vec<&str> = found.iter().map(|m| m.sender.as_str()).collect();
    assert_eq!(senders, ["dave"]);
}

fn retention_and_presence(engine: &mut dyn Engine) {
    let outcomes = commit(
        engine,
        vec![
            Write::Purge { before: 40, limit: 100 },
            Write::Presence { user: "alice".into(), online: false, connections: 0, at: 77 },
            Write::Presence { user: "alice".into(), online: false, connections: 0, at: 78 },
        ],
    );
    assert_eq!(
        outcomes[0],
        Outcome::Purged(30 + 3 + 2),
        "created before 40: m0..m29, the three messages in team and the two searched in lobby"
    );
    assert_eq!(history(engine, "paged", None, 100).first().unwrap().1, "m30");
    assert_eq!(read(engine, Read::LastSeen { user: "alice".into() }), Answer::LastSeen(Some(78)));
    assert_eq!(read(engine, Read::LastSeen { user: "nobody".into() }), Answer::LastSeen(None));
}

/// A database made by the first migration only is upgraded in place, keeping its data.
fn upgrades_in_place(url: &DatabaseUrl) {
    let mut engine = url.connect().unwrap();
    let engine = engine.as_mut();
    assert_eq!(migrations::migrate(engine, 1).unwrap(), vec![1]);
    // As an older binary wrote it: the first schema's columns only.
    let old_row =
        "INSERT INTO chat_messages (id, room, sender, message_type, content, data, created_at, \
         updated_at) VALUES ('kept', 'old', 'alice', 'chat', 'kept words', '{}', 5, 5)";
    engine.execute(old_row, &[]).unwrap();
    assert!(engine.query("SELECT COUNT(*) FROM chat_presence", &[]).is_err(), "not there yet");
    let mut engine = url.connect().unwrap();
    let engine = engine.as_mut();
    assert_eq!(
        migrations::migrate(engine, migrations::latest()).unwrap(),
        vec![2, 3, 4, 5, 6, 7, 8, 9, 10]
    );
    assert_eq!(migrations::current_version(engine).unwrap(), MIGRATIONS.len() as i64);
    assert_eq!(history(engine, "old", None, 10).len(), 1, "the old data is still there");
    assert_eq!(search(engine, "kept", Scope::All, None), ["kept"], "and searchable");
    assert_eq!(
        engine.query("SELECT COUNT(*) FROM chat_presence", &[]).unwrap(),
        vec![vec![Value::Int(Some(0))]]
    );
}

#[test]
fn sqlite_meets_the_store_contract() {
    let dir = TempDir::new("store");
    conformance(&dir.sqlite());
    let upgraded = TempDir::new("store-upgrade");
    upgrades_in_place(&upgraded.sqlite());
}

#[tokio::test]
async fn postgres_meets_the_store_contract() {
    let server = PostgresServer::start().await;
    let url: DatabaseUrl = server.database("conformance").await.parse().unwrap();
    let upgraded: DatabaseUrl = server.database("upgrade").await.parse().unwrap();
    tokio::task::spawn_blocking(move || {
        conformance(&url);
        upgrades_in_place(&upgraded);
    })
    .await
    .unwrap();
}
