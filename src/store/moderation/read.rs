//! The moderation questions, and the bar a sanction, a block or an archive makes.

use super::{Ask, Found, Kind, Logged, Report, Sanction, Settings};
use crate::protocol::Millis;
use crate::rules::RoomRules;
use crate::store::messages::{int, text};
use crate::store::reads::Bar;
use crate::store::{Engine, StoreError, Value};

/// What keeps `user` out of `room` at `now`: a ban from it, a block by the other user of a
/// direct room, the room being archived.
pub(in crate::store) fn bar(
    engine: &mut dyn Engine,
    room: &str,
    user: &str,
    now: Millis,
) -> Result<Option<Bar>, StoreError> {
    let sql =
        format!("{SANCTION} WHERE room = ?1 AND user_id = ?2 AND kind = 'ban' AND {}", in_force(3));
    if let Some(ban) = sanctions(engine, &sql, &[text(room), text(user), int(now)])?.pop() {
        return Ok(Some(Bar::Banned(ban.until)));
    }
    if let Some((a, b)) = crate::protocol::direct_pair(room) {
        let other = if a == user { b } else { a };
        let rows = engine.query(
            "SELECT 1 FROM chat_blocks WHERE user_id = ?1 AND blocked = ?2",
            &[text(other), text(user)],
        )?;
        if !rows.is_empty() {
            return Ok(Some(Bar::Blocked));
        }
    }
    let archived = settings(engine, room)?.is_some_and(|settings| settings.archived_at.is_some());
    Ok(archived.then_some(Bar::Archived))
}

const SANCTION: &str = "SELECT room, user_id, kind, until_at, reason, by_user, created_at \
                        FROM chat_sanctions";
/// In force at `?N`: no end, or an end after it.
fn in_force(n: usize) -> String {
    format!("(until_at IS NULL OR until_at > ?{n})")
}

/// Answers one question.
pub fn ask(engine: &mut dyn Engine, ask: &Ask) -> Result<Found, StoreError> {
    match ask {
        Ask::InForce { now } => {
            let sql = format!("{SANCTION} WHERE {} ORDER BY room, user_id", in_force(1));
            let sanctions = sanctions(engine, &sql, &[int(*now)])?;
            let rows = engine.query(
                "SELECT id FROM chat_rooms WHERE slow_mode_ms > 0 OR archived_at IS NOT NULL \
                 UNION SELECT DISTINCT room FROM chat_sanctions WHERE kind = 'mute'",
                &[],
            )?;
            let mut rooms = Vec::new();
            for row in rows {
                let room = row[0].text()?;
                if let Some(rules) = rules(engine, &room, *now)? {
                    rooms.push((room, rules));
                }
            }
            Ok(Found::InForce { sanctions, rooms })
        }
        Ask::Rules { room, now } => Ok(Found::Rules(rules(engine, room, *now)?.map(Box::new))),
        Ask::Sanctions { room, kind, now } => {
            let sql = format!(
                "{SANCTION} WHERE room = ?1 AND kind = ?2 AND {} ORDER BY user_id",
                in_force(3)
            );
            let params = [text(room), text(kind.as_str()), int(*now)];
            sanctions(engine, &sql, &params).map(Found::Sanctions)
        }
        Ask::Settings { room } => settings(engine, room).map(Found::Settings),
        Ask::Reports { room, all, after, limit } => {
            reports(engine, room.as_deref(), *all, *after, *limit)
        }
        Ask::Log { room, before, limit } => log(engine, room, *before, *limit),
        Ask::Blocks { user } => {
            let rows = engine.query(
                "SELECT blocked, created_at FROM chat_blocks WHERE user_id = ?1 ORDER BY blocked",
                &[text(user)],
            )?;
            let blocks = rows.iter().map(|row| Ok((row[0].text()?, row[1].int()?)));
            blocks.collect::<Result<_, StoreError>>().map(Found::Blocks)
        }
        Ask::Ended { now, limit } => {
            let sql = format!("{SANCTION} WHERE until_at <= ?1 ORDER BY until_at LIMIT ?2");
            sanctions(engine, &sql, &[int(*now), int(*limit)]).map(Found::Sanctions)
        }
        Ask::Banned { user, now } => {
            let sql = format!(
                "{SANCTION} WHERE room = '' AND user_id = ?1 AND kind = 'ban' AND {}",
                in_force(2)
            );
            Ok(Found::Banned(sanctions(engine, &sql, &[text(user), int(*now)])?.pop()))
        }
    }
}

fn sanctions(
    engine: &mut dyn Engine,
    sql: &str,
    params: &[Value],
) -> Result<Vec<Sanction>, StoreError> {
    let rows = engine.query(sql, params)?;
    rows.iter()
        .map(|row| {
            Ok(Sanction {
                room: row[0].text()?,
                user: row[1].text()?,
                kind: Kind::parse(&row[2].text()?)?,
                until: row[3].opt_int()?,
                reason: row[4].opt_text()?,
                by: row[5].text()?,
                at: row[6].int()?,
            })
        })
        .collect()
}

pub(super) fn settings(
    engine: &mut dyn Engine,
    room: &str,
) -> Result<Option<Settings>, StoreError> {
    let rows = engine.query(
        "SELECT title, topic, slow_mode_ms, archived_at FROM chat_rooms WHERE id = ?1",
        &[text(room)],
    )?;
    rows.first()
        .map(|row| {
            Ok(Settings {
                title: row[0].opt_text()?,
                topic: row[1].opt_text()?,
                slow_mode_ms: row[2].int()?,
                archived_at: row[3].opt_int()?,
            })
        })
        .transpose()
}

/// A room's rules in force at `now`; `None` when it has none (or no such room).
fn rules(
    engine: &mut dyn Engine,
    room: &str,
    now: Millis,
) -> Result<Option<RoomRules>, StoreError> {
    let Some(settings) = settings(engine, room)? else { return Ok(None) };
    let mut rules = RoomRules {
        slow_mode_ms: settings.slow_mode_ms,
        archived: settings.archived_at.is_some(),
        ..RoomRules::default()
    };
    let sql = format!("{SANCTION} WHERE room = ?1 AND kind = 'mute' AND {}", in_force(2));
    for mute in sanctions(engine, &sql, &[text(room), int(now)])? {
        rules.muted.insert(mute.user, mute.until);
    }
    if rules.slow_mode_ms > 0 {
        let rows = engine.query(
            "SELECT user_id FROM chat_participants WHERE room = ?1 AND role <> 'member'",
            &[text(room)],
        )?;
        for row in rows {
            rules.exempt.insert(row[0].text()?);
        }
    }
    Ok((!rules.is_empty()).then_some(rules))
}

fn reports(
    engine: &mut dyn Engine,
    room: Option<&str>,
    all: bool,
    after: i64,
    limit: i64,
) -> Result<Found, StoreError> {
    let rows = engine.query(
        "SELECT pos, room, sender, message_id, reporter, reason, created_at, resolved_by, \
         resolution, resolved_at FROM chat_reports WHERE (CAST(?1 AS TEXT) IS NULL OR room = ?1) \
         AND (?2 = 'all' OR resolved_at IS NULL) AND pos > ?3 ORDER BY pos LIMIT ?4",
        &[
            Value::Text(room.map(str::to_owned)),
            text(if all { "all" } else { "open" }),
            int(after),
            int(limit),
        ],
    )?;
    let reports = rows.iter().map(|row| {
        let resolved = match (row[7].opt_text()?, row[8].opt_text()?, row[9].opt_int()?) {
            (Some(by), Some(resolution), Some(at)) => Some((by, resolution, at)),
            _ => None,
        };
        Ok(Report {
            pos: row[0].int()?,
            room: row[1].text()?,
            sender: row[2].text()?,
            message: row[3].text()?,
            reporter: row[4].text()?,
            reason: row[5].text()?,
            at: row[6].int()?,
            resolved,
        })
    });
    reports.collect::<Result<_, StoreError>>().map(Found::Reports)
}

fn log(engine: &mut dyn Engine, room: &str, before: i64, limit: i64) -> Result<Found, StoreError> {
    let rows = engine.query(
        "SELECT pos, actor, target, action, reason, until_at, created_at FROM chat_moderation_log \
         WHERE room = ?1 AND pos < ?2 ORDER BY pos DESC LIMIT ?3",
        &[text(room), int(before), int(limit)],
    )?;
    let lines = rows.iter().map(|row| {
        let line = Logged {
            room: room.to_owned(),
            actor: row[1].text()?,
            target: row[2].opt_text()?,
            action: row[3].text()?,
            reason: row[4].opt_text()?,
            until: row[5].opt_int()?,
            at: row[6].int()?,
        };
        Ok((row[0].int()?, line))
    });
    lines.collect::<Result<_, StoreError>>().map(Found::Log)
}
