//! The reads of stored messages, written once over any [`Engine`]: history pages, a room's stream
//! for a resume, a thread, the message a change or a reply is about, reactions and reply counts.
//!
//! Owns: their SQL and how a row becomes a message. Must not: write, or know the questions'
//! shapes ([`super::reads`] asks and wraps the answers).

use std::collections::HashSet;

use super::{Engine, Role, StoreError, StoredMessage, Value};
use crate::protocol::Millis;

pub(super) fn text(value: impl Into<String>) -> Value {
    Value::Text(Some(value.into()))
}

pub(super) fn int(value: i64) -> Value {
    Value::Int(Some(value))
}

/// One emoji's reactions to one message, as [`Read::Reactions`] counts them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reactions {
    pub sender: String,
    pub id: String,
    pub emoji: String,
    pub count: i64,
    /// The viewer is among them.
    pub mine: bool,
}

/// The message an edit or delete is about, as [`Read::Target`] finds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    Message {
        author: String,
        created_at: Millis,
        caller_moderates: bool,
    },
    NotFound,
    /// Several senders used the id in the room, and the read named none of them (nor is one the
    /// caller).
    Ambiguous,
}

pub(super) fn role_of(
    engine: &mut dyn Engine,
    room: &str,
    user: &str,
) -> Result<Option<Role>, StoreError> {
    let rows = engine.query(
        "SELECT role FROM chat_participants WHERE room = ?1 AND user_id = ?2",
        &[text(room), text(user)],
    )?;
    let Some(row) = rows.first() else { return Ok(None) };
    let role = row[0].text()?;
    Role::parse(&role).map(Some).ok_or_else(|| StoreError::Corrupt(format!("role {role:?}")))
}

pub(super) fn history(
    engine: &mut dyn Engine,
    room: &str,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<StoredMessage>, StoreError> {
    let rows = engine.query(
        &format!(
            "SELECT {MESSAGE_COLUMNS} FROM chat_messages \
             WHERE room = ?1 AND pos < ?2 AND deleted_at IS NULL AND target IS NULL \
             ORDER BY pos DESC LIMIT ?3"
        ),
        &[text(room), int(before.unwrap_or(i64::MAX)), int(limit)],
    )?;
    let mut messages: Vec<StoredMessage> =
        rows.iter().map(|row| message_of(row)).collect::<Result<_, _>>()?;
    messages.reverse();
    Ok(messages)
}

/// The columns [`message_of`] reads, in its order.
pub(super) const MESSAGE_COLUMNS: &str = "pos, id, room, sender, message_type, data, created_at, \
                               deleted_at, seq, epoch, edited_at, reply_to";

/// The oldest `limit` rows of `room` whose seq is above `after`, not deleted, in seq order, as
/// `only` narrows them further.
pub(super) fn after_seq(
    engine: &mut dyn Engine,
    room: &str,
    after: i64,
    limit: i64,
    only: &str,
) -> Result<Vec<StoredMessage>, StoreError> {
    let rows = engine.query(
        &format!(
            "SELECT {MESSAGE_COLUMNS} FROM chat_messages \
             WHERE room = ?1 AND seq > ?2 AND deleted_at IS NULL {only} ORDER BY seq LIMIT ?3"
        ),
        &[text(room), int(after), int(limit)],
    )?;
    rows.iter().map(|row| message_of(row)).collect()
}

/// The messages at `positions` (not deleted), in no order.
pub(super) fn messages_at(
    engine: &mut dyn Engine,
    positions: &[i64],
) -> Result<Vec<StoredMessage>, StoreError> {
    if positions.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "SELECT {MESSAGE_COLUMNS} FROM chat_messages WHERE pos IN ({}) AND deleted_at IS NULL",
        placeholders(1, positions.len())
    );
    let params: Vec<Value> = positions.iter().map(|pos| int(*pos)).collect();
    engine.query(&sql, &params)?.iter().map(|row| message_of(row)).collect()
}

/// The oldest `limit` replies to `root` in `room` after position `after` (not deleted).
pub(super) fn thread(
    engine: &mut dyn Engine,
    room: &str,
    root: &str,
    after: Option<i64>,
    limit: i64,
) -> Result<Vec<StoredMessage>, StoreError> {
    let rows = engine.query(
        &format!(
            "SELECT {MESSAGE_COLUMNS} FROM chat_messages WHERE room = ?1 AND reply_to = ?2 \
             AND target IS NULL AND deleted_at IS NULL AND pos > ?3 ORDER BY pos LIMIT ?4"
        ),
        &[text(room), text(root), int(after.unwrap_or(0)), int(limit)],
    )?;
    rows.iter().map(|row| message_of(row)).collect()
}

/// Per message of `messages` and emoji: how many reacted, and whether `viewer` did; by message
/// and emoji.
pub(super) fn reactions(
    engine: &mut dyn Engine,
    room: &str,
    messages: &[(String, String)],
    viewer: &str,
) -> Result<Vec<Reactions>, StoreError> {
    if messages.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "SELECT sender, id, emoji, COUNT(*), \
         SUM(CASE WHEN user_id = ?2 THEN 1 ELSE 0 END) FROM chat_reactions \
         WHERE room = ?1 AND id IN ({}) GROUP BY sender, id, emoji ORDER BY sender, id, emoji",
        placeholders(3, messages.len())
    );
    let mut params = vec![text(room), text(viewer)];
    params.extend(messages.iter().map(|(_, id)| text(id)));
    let rows = engine.query(&sql, &params)?;
    let wanted: HashSet<(&str, &str)> =
        messages.iter().map(|(sender, id)| (sender.as_str(), id.as_str())).collect();
    let mut found = Vec::new();
    for row in &rows {
        let (sender, id) = (row[0].text()?, row[1].text()?);
        if !wanted.contains(&(sender.as_str(), id.as_str())) {
            continue;
        }
        let (emoji, count, mine) = (row[2].text()?, row[3].int()?, row[4].int()? > 0);
        found.push(Reactions { sender, id, emoji, count, mine });
    }
    Ok(found)
}

/// `?first, ?first+1, ...`: one placeholder per value, numbered from `first`.
pub(super) fn placeholders(first: usize, count: usize) -> String {
    (first..first + count).map(|n| format!("?{n}")).collect::<Vec<_>>().join(", ")
}

/// Per message with replies: its id, how many, the last one's time.
pub type Threads = Vec<(String, i64, Millis)>;
/// Per quoted message: its id, author, content, and whether it is deleted.
pub type Quoted = Vec<(String, String, Option<String>, bool)>;

/// The thread summaries of `ids` and the messages `quoted` by replies, of one room.
pub(super) fn replies(
    engine: &mut dyn Engine,
    room: &str,
    ids: &[String],
    quoted: &[String],
) -> Result<(Threads, Quoted), StoreError> {
    let mut threads = Vec::new();
    if !ids.is_empty() {
        let sql = format!(
            "SELECT reply_to, COUNT(*), MAX(created_at) FROM chat_messages WHERE room = ?1 \
             AND reply_to IN ({}) AND target IS NULL AND deleted_at IS NULL GROUP BY reply_to",
            placeholders(2, ids.len())
        );
        let params: Vec<Value> = std::iter::once(text(room)).chain(ids.iter().map(text)).collect();
        for row in engine.query(&sql, &params)? {
            threads.push((row[0].text()?, row[1].int()?, row[2].int()?));
        }
    }
    let mut found = Vec::new();
    if !quoted.is_empty() {
        let sql = format!(
            "SELECT id, sender, content, deleted_at FROM chat_messages WHERE room = ?1 \
             AND id IN ({}) AND target IS NULL",
            placeholders(2, quoted.len())
        );
        let params: Vec<Value> =
            std::iter::once(text(room)).chain(quoted.iter().map(text)).collect();
        for row in engine.query(&sql, &params)? {
            let deleted = row[3].opt_int()?.is_some();
            found.push((row[0].text()?, row[1].text()?, row[2].opt_text()?, deleted));
        }
    }
    Ok((threads, found))
}

/// The message (not a room event; not deleted, unless `deleted_too`) `id` of `room`: by `sender`
/// when named, else the only one with that id, or the caller's own among several.
pub(super) fn target(
    engine: &mut dyn Engine,
    room: &str,
    id: &str,
    (sender, caller): (Option<&str>, &str),
    deleted_too: bool,
) -> Result<Found, StoreError> {
    let live = if deleted_too { "" } else { "AND deleted_at IS NULL" };
    let found = engine.query(
        &format!(
            "SELECT sender, created_at FROM chat_messages \
             WHERE room = ?1 AND id = ?2 AND target IS NULL {live}"
        ),
        &[text(room), text(id)],
    )?;
    let mut candidates: Vec<(String, Millis)> =
        found.iter().map(|row| Ok((row[0].text()?, row[1].int()?))).collect::<Result<_, _>>()?;
    if let Some(sender) = sender {
        candidates.retain(|(s, _)| s == sender);
    } else if candidates.len() > 1 {
        match candidates.iter().position(|(s, _)| s == caller) {
            Some(own) => candidates = vec![candidates.swap_remove(own)],
            None => return Ok(Found::Ambiguous),
        }
    }
    let Some((author, created_at)) = candidates.into_iter().next() else {
        return Ok(Found::NotFound);
    };
    let role = role_of(engine, room, caller)?;
    let caller_moderates = matches!(role, Some(Role::Owner | Role::Moderator));
    Ok(Found::Message { author, created_at, caller_moderates })
}

pub(super) fn message_of(row: &[Value]) -> Result<StoredMessage, StoreError> {
    Ok(StoredMessage {
        pos: row[0].int()?,
        id: row[1].text()?,
        room: row[2].opt_text()?,
        sender: row[3].text()?,
        kind: row[4].text()?,
        data: row[5].text()?,
        created_at: row[6].int()?,
        deleted_at: row[7].opt_int()?,
        stream: match (row[8].opt_int()?, row[9].opt_text()?) {
            (Some(seq), Some(epoch)) => Some((seq, epoch)),
            _ => None,
        },
        edited_at: row[10].opt_int()?,
        reply_to: row[11].opt_text()?,
    })
}
