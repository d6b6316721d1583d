//! The store contract's moderation checks (migration 0009), run by `store.rs` against every
//! engine: sanctions in force and ending, the bar they make, room rules, reports once, blocks, and
//! the moderation log.

use wsbroker::rules::RoomRules;
use wsbroker::store::moderation::{Act, Ask, Found, Kind, Logged, Report, Sanction, Settings};
use wsbroker::store::ops::{self, Answer, Outcome, Read, Write};
use wsbroker::store::reads::Bar;
use wsbroker::store::{Engine, RoomInfo, RoomType};

fn act(engine: &mut dyn Engine, act: Act, action: &str) -> Outcome {
    let log = Logged {
        room: "agora".into(),
        actor: "olive".into(),
        target: Some("bob".into()),
        action: action.into(),
        reason: None,
        until: None,
        at: 5_000,
    };
    let write = Write::Moderate { act: Box::new(act), log: Some(Box::new(log)) };
    engine.begin().unwrap();
    let outcome = ops::apply(engine, &[write]).unwrap().pop().unwrap();
    engine.commit().unwrap();
    outcome
}

fn ask(engine: &mut dyn Engine, question: Ask) -> Found {
    match ops::read(engine, &Read::Moderation(question)).unwrap() {
        Answer::Moderation(found) => found,
        other => panic!("{other:?}"),
    }
}

fn bar(engine: &mut dyn Engine, room: &str, user: &str) -> Option<Bar> {
    match ops::read(engine, &Read::Access { room: room.into(), user: user.into(), bar: true })
        .unwrap()
    {
        Answer::Access { bar, .. } => bar,
        other => panic!("{other:?}"),
    }
}

fn sanction(user: &str, kind: Kind, until: Option<i64>) -> Sanction {
    let (room, user, by) = ("agora".into(), user.into(), "olive".into());
    Sanction { room, user, kind, until, reason: Some("why".into()), by, at: 1_000 }
}

pub fn moderation_contract(engine: &mut dyn Engine) {
    let room = RoomInfo {
        id: "agora".into(),
        kind: RoomType::Public,
        created_at: 1,
        created_by: "olive".into(),
        metadata: None,
    };
    engine.begin().unwrap();
    let members = vec!["bob".into(), "amy".into(), "mike".into()];
    ops::apply(engine, &[Write::CreateRoom { room, members }]).unwrap();
    engine.commit().unwrap();
    let set_role = Act::SetRole {
        room: "agora".into(),
        user: "mike".into(),
        role: wsbroker::store::Role::Moderator,
    };
    assert_eq!(act(engine, set_role, "set_role"), Outcome::Done);

    // A timed mute is in force until it ends; a ban removes the participant and bars it.
    let far = i64::MAX / 2;
    assert_eq!(
        act(engine, Act::Impose(sanction("amy", Kind::Mute, Some(10_000))), "mute"),
        Outcome::Done
    );
    assert_eq!(
        act(engine, Act::Impose(sanction("bob", Kind::Ban, Some(far))), "ban"),
        Outcome::Done
    );
    assert_eq!(bar(engine, "agora", "bob"), Some(Bar::Banned(Some(far))));
    assert_eq!(bar(engine, "agora", "amy"), None, "a mute bars nothing");
    let Found::Sanctions(mutes) =
        ask(engine, Ask::Sanctions { room: "agora".into(), kind: Kind::Mute, now: 9_999 })
    else {
        panic!()
    };
    assert_eq!(mutes, [sanction("amy", Kind::Mute, Some(10_000))]);
    let Found::Sanctions(mutes) =
        ask(engine, Ask::Sanctions { room: "agora".into(), kind: Kind::Mute, now: 10_000 })
    else {
        panic!()
    };
    assert!(mutes.is_empty(), "ended at its until");

    // Rules: mutes in force, slow mode with its exempt moderators, archived.
    let settings = Settings {
        title: Some("Agora".into()),
        topic: None,
        slow_mode_ms: 5_000,
        archived_at: None,
    };
    assert_eq!(
        act(engine, Act::Settings { room: "agora".into(), settings: settings.clone() }, "settings"),
        Outcome::Done
    );
    let Found::Rules(Some(rules)) = ask(engine, Ask::Rules { room: "agora".into(), now: 9_000 })
    else {
        panic!()
    };
    let expected = RoomRules {
        slow_mode_ms: 5_000,
        exempt: ["olive".to_owned(), "mike".to_owned()].into(),
        muted: [("amy".to_owned(), Some(10_000))].into(),
        archived: false,
    };
    assert_eq!(*rules, expected);
    let Found::InForce { sanctions, rooms } = ask(engine, Ask::InForce { now: 9_000 }) else {
        panic!()
    };
    assert_eq!(sanctions.len(), 2, "{sanctions:?}");
    assert_eq!(rooms, [("agora".to_owned(), expected)]);
    let Found::Settings(Some(read)) = ask(engine, Ask::Settings { room: "agora".into() }) else {
        panic!()
    };
    assert_eq!(read, settings);

    // The sweep lifts what ended, once.
    let Found::Sanctions(ended) = ask(engine, Ask::Ended { now: 20_000, limit: 10 }) else {
        panic!()
    };
    assert_eq!(ended, [sanction("amy", Kind::Mute, Some(10_000))]);
    let lift = || Act::Lift {
        room: "agora".into(),
        user: "amy".into(),
        kind: Kind::Mute,
        ended: Some(20_000),
    };
    assert_eq!(act(engine, lift(), "mute_ended"), Outcome::Done);
    assert_eq!(act(engine, lift(), "mute_ended"), Outcome::NotFound, "lifted once");
    let unban = Act::Lift {
        room: "agora".into(),
        user: "bob".into(),
        kind: Kind::Ban,
        ended: Some(20_000),
    };
    assert_eq!(act(engine, unban, "ban_ended"), Outcome::NotFound, "the ban has not ended");

    // Reports: once per reporter and message; resolved once.
    let report = Report {
        pos: 0,
        room: "agora".into(),
        sender: "bob".into(),
        message: "m1".into(),
        reporter: "amy".into(),
        reason: "spam".into(),
        at: 3_000,
        resolved: None,
    };
    assert_eq!(act(engine, Act::Report(report.clone()), "report"), Outcome::Done);
    assert_eq!(act(engine, Act::Report(report), "report"), Outcome::Exists);
    let Found::Reports(open) =
        ask(engine, Ask::Reports { room: Some("agora".into()), all: false, after: 0, limit: 10 })
    else {
        panic!()
    };
    assert_eq!(open.len(), 1);
    let resolve = |pos| Act::Resolve {
        room: "agora".into(),
        report: pos,
        by: "mike".into(),
        resolution: "ok".into(),
        at: 4_000,
    };
    assert_eq!(act(engine, resolve(open[0].pos), "resolve"), Outcome::Done);
    assert_eq!(act(engine, resolve(open[0].pos), "resolve"), Outcome::NotFound);
    let Found::Reports(open) =
        ask(engine, Ask::Reports { room: None, all: false, after: 0, limit: 10 })
    else {
        panic!()
    };
    assert!(open.is_empty());
    let Found::Reports(all) =
        ask(engine, Ask::Reports { room: None, all: true, after: 0, limit: 10 })
    else {
        panic!()
    };
    assert_eq!(all[0].resolved, Some(("mike".into(), "ok".into(), 4_000)));

    // Blocks bar the blocked user from the direct room, and only it.
    let block = Act::Block { user: "amy".into(), blocked: "bob".into(), at: 1 };
    assert_eq!(act(engine, block, "block"), Outcome::Done);
    assert_eq!(bar(engine, "dm:amy:bob", "bob"), Some(Bar::Blocked));
    assert_eq!(bar(engine, "dm:amy:bob", "amy"), None);
    let Found::Blocks(blocks) = ask(engine, Ask::Blocks { user: "amy".into() }) else { panic!() };
    assert_eq!(blocks, [("bob".to_owned(), 1)]);
    assert_eq!(
        act(engine, Act::Unblock { user: "amy".into(), blocked: "bob".into() }, "unblock"),
        Outcome::Done
    );
    assert_eq!(bar(engine, "dm:amy:bob", "bob"), None);

    // Archived: a bar for everyone. The log holds every change made, newest first; none for the
    // changes that did not happen.
    let archived = Settings { archived_at: Some(6_000), ..settings };
    act(engine, Act::Settings { room: "agora".into(), settings: archived }, "archive");
    assert_eq!(bar(engine, "agora", "amy"), Some(Bar::Archived));
    let Found::Log(lines) =
        ask(engine, Ask::Log { room: "agora".into(), before: i64::MAX, limit: 100 })
    else {
        panic!()
    };
    let actions: Vec<&str> = lines.iter().map(|(_, line)| line.action.as_str()).collect();
    assert_eq!(
        actions,
        [
            "archive",
            "unblock",
            "block",
            "resolve",
            "report",
            "mute_ended",
            "settings",
            "ban",
            "mute",
            "set_role"
        ]
    );
}
