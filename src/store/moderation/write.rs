//! The moderation changes, applied inside the writer's transaction.

use super::Logged;
use super::{Act, Kind, Sanction};
use crate::store::messages::{int, text};
use crate::store::{Engine, StoreError, Value};

/// Whether a change was made.
pub type Changed = bool;

/// Applies one act inside the writer's transaction, with its log line when it changed something.
pub fn apply(
    engine: &mut dyn Engine,
    act: &Act,
    log: Option<&Logged>,
) -> Result<Changed, StoreError> {
    let changed = apply_act(engine, act)?;
    if let (true, Some(line)) = (changed, log) {
        engine.execute(
            "INSERT INTO chat_moderation_log (room, actor, target, action, reason, until_at, \
             created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            &[
                text(&line.room),
                text(&line.actor),
                Value::Text(line.target.clone()),
                text(&line.action),
                Value::Text(line.reason.clone()),
                Value::Int(line.until),
                int(line.at),
            ],
        )?;
    }
    Ok(changed)
}

fn apply_act(engine: &mut dyn Engine, act: &Act) -> Result<Changed, StoreError> {
    let changed = match act {
        Act::SetRole { room, user, role } => engine.execute(
            "UPDATE chat_participants SET role = ?3 WHERE room = ?1 AND user_id = ?2 \
             AND role <> 'owner'",
            &[text(room), text(user), text(role.as_str())],
        )?,
        Act::Transfer { room, from, to } => {
            let made = engine.execute(
                "UPDATE chat_participants SET role = 'owner' WHERE room = ?1 AND user_id = ?2",
                &[text(room), text(to)],
            )?;
            if made > 0 {
                engine.execute(
                    "UPDATE chat_participants SET role = 'moderator' WHERE room = ?1 \
                     AND user_id = ?2",
                    &[text(room), text(from)],
                )?;
            }
            made
        }
        Act::Impose(sanction) => impose(engine, sanction)?,
        Act::Kick { room, user } => engine.execute(
            "DELETE FROM chat_participants WHERE room = ?1 AND user_id = ?2",
            &[text(room), text(user)],
        )?,
        Act::Lift { room, user, kind, ended } => engine.execute(
            "DELETE FROM chat_sanctions WHERE room = ?1 AND user_id = ?2 AND kind = ?3 \
             AND (CAST(?4 AS BIGINT) IS NULL OR until_at <= ?4)",
            &[text(room), text(user), text(kind.as_str()), Value::Int(*ended)],
        )?,
        Act::Settings { room, settings } => engine.execute(
            "UPDATE chat_rooms SET title = ?2, topic = ?3, slow_mode_ms = ?4, archived_at = ?5 \
             WHERE id = ?1",
            &[
                text(room),
                Value::Text(settings.title.clone()),
                Value::Text(settings.topic.clone()),
                int(settings.slow_mode_ms),
                Value::Int(settings.archived_at),
            ],
        )?,
        Act::Report(report) => engine.execute(
            "INSERT INTO chat_reports (room, sender, message_id, reporter, reason, created_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
             ON CONFLICT (room, sender, message_id, reporter) DO NOTHING",
            &[
                text(&report.room),
                text(&report.sender),
                text(&report.message),
                text(&report.reporter),
                text(&report.reason),
                int(report.at),
            ],
        )?,
        Act::Resolve { room, report, by, resolution, at } => engine.execute(
            "UPDATE chat_reports SET resolved_by = ?3, resolution = ?4, resolved_at = ?5 \
             WHERE room = ?1 AND pos = ?2 AND resolved_at IS NULL",
            &[text(room), int(*report), text(by), text(resolution), int(*at)],
        )?,
        Act::Block { user, blocked, at } => engine.execute(
            "INSERT INTO chat_blocks (user_id, blocked, created_at) VALUES (?1, ?2, ?3) \
             ON CONFLICT (user_id, blocked) DO NOTHING",
            &[text(user), text(blocked), int(*at)],
        )?,
        Act::Unblock { user, blocked } => engine.execute(
            "DELETE FROM chat_blocks WHERE user_id = ?1 AND blocked = ?2",
            &[text(user), text(blocked)],
        )?,
    };
    Ok(changed > 0)
}

fn impose(engine: &mut dyn Engine, sanction: &Sanction) -> Result<u64, StoreError> {
    let Sanction { room, user, kind, until, reason, by, at } = sanction;
    engine.execute(
        "INSERT INTO chat_sanctions (room, user_id, kind, until_at, reason, by_user, created_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (room, user_id, kind) DO UPDATE SET \
         until_at = excluded.until_at, reason = excluded.reason, by_user = excluded.by_user, \
         created_at = excluded.created_at",
        &[
            text(room),
            text(user),
            text(kind.as_str()),
            Value::Int(*until),
            Value::Text(reason.clone()),
            text(by),
            int(*at),
        ],
    )?;
    if *kind == Kind::Ban && !room.is_empty() {
        engine.execute(
            "DELETE FROM chat_participants WHERE room = ?1 AND user_id = ?2",
            &[text(room), text(user)],
        )?;
    }
    Ok(1)
}
