//! The reads, written once over any [`Engine`]: history pages, a room's stream for a resume, the
//! message an edit or delete is about, its earlier versions, a room and a user's role in it, the
//! rooms a user sees, participants, last seen, and where a room's stream stands.
//!
//! Owns: the SQL of every read and how a row becomes a value. Must not: write; the writer applies
//! [`super::ops::Write`]s, the read pool answer these.

use super::{Engine, Participant, Role, RoomInfo, RoomType, StoreError, StoredMessage, Value};
use crate::protocol::Millis;

fn text(value: impl Into<String>) -> Value {
    Value::Text(Some(value.into()))
}

fn int(value: i64) -> Value {
    Value::Int(Some(value))
}

/// A question, answered by a reader.
#[derive(Debug, Clone)]
pub enum Read {
    /// The newest `limit` messages of a room before position `before` (all when `None`), not
    /// deleted; with `after`, the oldest `limit` whose seq is above it instead. No room events.
    History {
        room: String,
        before: Option<i64>,
        after: Option<i64>,
        limit: i64,
    },
    /// A resume's replay: the oldest `limit` messages and room events whose seq is above `after`,
    /// in seq order; deleted messages are left out (their deletion is in it).
    Stream {
        room: String,
        after: i64,
        limit: i64,
    },
    /// The message `id` of `room` (sent by `sender`, when named) that an edit or delete is about,
    /// and whether `caller` is an owner or moderator of the room.
    Target {
        room: String,
        id: String,
        sender: Option<String>,
        caller: String,
    },
    /// Whether `user` reacted to the message with `emoji`.
    Reacted {
        room: String,
        sender: String,
        id: String,
        user: String,
        emoji: String,
    },
    /// The reactions to `messages` (author, id) of `room`: per message and emoji, how many, and
    /// whether `viewer` is among them.
    Reactions {
        room: String,
        messages: Vec<(String, String)>,
        viewer: String,
    },
    /// The contents an edit replaced, oldest first.
    Versions {
        room: String,
        sender: String,
        id: String,
    },
    /// Where a room's stream stands: the epoch and seq of its newest stored message, and the ids
    /// its senders used since `sent_since` (the newest [`MAX_SENT`]), so a resend after a restart
    /// is recognised.
    StreamHead {
        room: String,
        sent_since: Millis,
    },
    /// A room, and the role in it of `user` (when a participant).
    Access {
        room: String,
        user: String,
    },
    /// Public rooms and the rooms `user` takes part in, by name, after `after`.
    Rooms {
        user: String,
        after: Option<String>,
        limit: i64,
    },
    Participants {
        room: String,
    },
    LastSeen {
        user: String,
    },
}

/// What a read found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Messages(Vec<StoredMessage>),
    Access {
        room: Option<RoomInfo>,
        role: Option<Role>,
    },
    Rooms(Vec<RoomInfo>),
    Target(Found),
    Reacted(bool),
    Reactions(Vec<Reactions>),
    /// Each replaced `data`, with when it was replaced.
    Versions(Vec<(String, Millis)>),
    Participants(Vec<Participant>),
    LastSeen(Option<Millis>),
    /// `newest`: `None` when the room has no message with a seq yet; `sent`: (sender, id, seq).
    StreamHead {
        newest: Option<(String, i64)>,
        sent: Vec<(String, String, i64)>,
    },
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

/// Answers one read.
pub fn read(engine: &mut dyn Engine, read: &Read) -> Result<Answer, StoreError> {
    match read {
        Read::History { room, before, after: None, limit } => {
            history(engine, room, *before, *limit)
        }
        Read::History { room, after: Some(after), limit, .. } => {
            after_seq(engine, room, *after, *limit, "AND target IS NULL")
        }
        Read::Stream { room, after, limit } => after_seq(engine, room, *after, *limit, ""),
        Read::Target { room, id, sender, caller } => {
            target(engine, room, id, sender.as_deref(), caller).map(Answer::Target)
        }
        Read::Reacted { room, sender, id, user, emoji } => {
            let rows = engine.query(
                "SELECT 1 FROM chat_reactions WHERE room = ?1 AND sender = ?2 AND id = ?3 \
                 AND user_id = ?4 AND emoji = ?5",
                &[text(room), text(sender), text(id), text(user), text(emoji)],
            )?;
            Ok(Answer::Reacted(!rows.is_empty()))
        }
        Read::Reactions { room, messages, viewer } => reactions(engine, room, messages, viewer),
        Read::Versions { room, sender, id } => {
            let rows = engine.query(
                "SELECT data, replaced_at FROM chat_message_versions \
                 WHERE room = ?1 AND sender = ?2 AND id = ?3 ORDER BY replaced_at",
                &[text(room), text(sender), text(id)],
            )?;
            let versions = rows.iter().map(|row| Ok((row[0].text()?, row[1].int()?)));
            versions.collect::<Result<_, StoreError>>().map(Answer::Versions)
        }
        Read::StreamHead { room, sent_since } => stream(engine, room, *sent_since),
        Read::Access { room, user } => access(engine, room, user),
        Read::Rooms { user, after, limit } => rooms(engine, user, after.as_deref(), *limit),
        Read::Participants { room } => {
            let rows = engine.query(
                "SELECT user_id, role, joined_at FROM chat_participants WHERE room = ?1 \
                 ORDER BY user_id",
                &[text(room)],
            )?;
            rows.iter()
                .map(|row| participant_of(row))
                .collect::<Result<_, _>>()
                .map(Answer::Participants)
        }
        Read::LastSeen { user } => {
            let rows = engine
                .query("SELECT last_seen FROM chat_presence WHERE user_id = ?1", &[text(user)])?;
            rows.first().map(|row| row[0].int()).transpose().map(Answer::LastSeen)
        }
    }
}

/// The epoch and seq of the room's newest numbered message.
/// The most sent ids a stream's load reads back.
pub const MAX_SENT: i64 = 4096;

fn stream(engine: &mut dyn Engine, room: &str, sent_since: Millis) -> Result<Answer, StoreError> {
    let rows = engine.query(
        "SELECT epoch, seq FROM chat_messages WHERE room = ?1 AND seq IS NOT NULL \
         ORDER BY seq DESC LIMIT 1",
        &[text(room)],
    )?;
    let newest = rows.first().map(|row| Ok((row[0].text()?, row[1].int()?))).transpose()?;
    let rows = engine.query(
        "SELECT sender, id, seq FROM chat_messages WHERE room = ?1 AND seq IS NOT NULL \
         AND created_at >= ?2 ORDER BY seq DESC LIMIT ?3",
        &[text(room), int(sent_since), int(MAX_SENT)],
    )?;
    let sent = rows
        .iter()
        .map(|row| Ok((row[0].text()?, row[1].text()?, row[2].int()?)))
        .collect::<Result<_, StoreError>>()?;
    Ok(Answer::StreamHead { newest, sent })
}

fn access(engine: &mut dyn Engine, room: &str, user: &str) -> Result<Answer, StoreError> {
    let rows = engine.query(
        "SELECT id, type, created_at, created_by, metadata FROM chat_rooms WHERE id = ?1",
        &[text(room)],
    )?;
    let room_info = rows.first().map(|row| room_of(row)).transpose()?;
    let role = if room_info.is_some() { role_of(engine, room, user)? } else { None };
    Ok(Answer::Access { room: room_info, role })
}

fn rooms(
    engine: &mut dyn Engine,
    user: &str,
    after: Option<&str>,
    limit: i64,
) -> Result<Answer, StoreError> {
    let rows = engine.query(
        "SELECT id, type, created_at, created_by, metadata FROM chat_rooms r \
         WHERE r.id > ?2 AND (r.type = 'public' OR EXISTS (SELECT 1 FROM chat_participants p \
         WHERE p.room = r.id AND p.user_id = ?1)) ORDER BY r.id LIMIT ?3",
        &[text(user), text(after.unwrap_or_default()), int(limit)],
    )?;
    rows.iter().map(|row| room_of(row)).collect::<Result<_, _>>().map(Answer::Rooms)
}

fn history(
    engine: &mut dyn Engine,
    room: &str,
    before: Option<i64>,
    limit: i64,
) -> Result<Answer, StoreError> {
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
    Ok(Answer::Messages(messages))
}

/// The columns [`message_of`] reads, in its order.
const MESSAGE_COLUMNS: &str =
    "pos, id, room, sender, message_type, data, created_at, deleted_at, seq, epoch, edited_at";

/// The oldest `limit` rows of `room` whose seq is above `after`, not deleted, in seq order, as
/// `only` narrows them further.
fn after_seq(
    engine: &mut dyn Engine,
    room: &str,
    after: i64,
    limit: i64,
    only: &str,
) -> Result<Answer, StoreError> {
    let rows = engine.query(
        &format!(
            "SELECT {MESSAGE_COLUMNS} FROM chat_messages \
             WHERE room = ?1 AND seq > ?2 AND deleted_at IS NULL {only} ORDER BY seq LIMIT ?3"
        ),
        &[text(room), int(after), int(limit)],
    )?;
    rows.iter().map(|row| message_of(row)).collect::<Result<_, _>>().map(Answer::Messages)
}

/// Per message of `messages` and emoji: how many reacted, and whether `viewer` did; by message
/// and emoji.
fn reactions(
    engine: &mut dyn Engine,
    room: &str,
    messages: &[(String, String)],
    viewer: &str,
) -> Result<Answer, StoreError> {
    if messages.is_empty() {
        return Ok(Answer::Reactions(Vec::new()));
    }
    let ids: Vec<String> = (0..messages.len()).map(|n| format!("?{}", n + 3)).collect();
    let sql = format!(
        "SELECT sender, id, emoji, COUNT(*), \
         SUM(CASE WHEN user_id = ?2 THEN 1 ELSE 0 END) FROM chat_reactions \
         WHERE room = ?1 AND id IN ({}) GROUP BY sender, id, emoji ORDER BY sender, id, emoji",
        ids.join(", ")
    );
    let mut params = vec![text(room), text(viewer)];
    params.extend(messages.iter().map(|(_, id)| text(id)));
    let rows = engine.query(&sql, &params)?;
    let wanted: std::collections::HashSet<(&str, &str)> =
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
    Ok(Answer::Reactions(found))
}

/// The message (not a room event, not deleted) `id` of `room`: by `sender` when named, else the
/// only one with that id, or the caller's own among several.
fn target(
    engine: &mut dyn Engine,
    room: &str,
    id: &str,
    sender: Option<&str>,
    caller: &str,
) -> Result<Found, StoreError> {
    let found = engine.query(
        "SELECT sender, created_at FROM chat_messages \
         WHERE room = ?1 AND id = ?2 AND deleted_at IS NULL AND target IS NULL",
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

fn message_of(row: &[Value]) -> Result<StoredMessage, StoreError> {
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
    })
}

fn room_of(row: &[Value]) -> Result<RoomInfo, StoreError> {
    let kind = row[1].text()?;
    Ok(RoomInfo {
        id: row[0].text()?,
        kind: RoomType::parse(&kind)
            .ok_or_else(|| StoreError::Corrupt(format!("room type {kind:?}")))?,
        created_at: row[2].int()?,
        created_by: row[3].text()?,
        metadata: row[4].opt_text()?,
    })
}

fn participant_of(row: &[Value]) -> Result<Participant, StoreError> {
    let role = row[1].text()?;
    Ok(Participant {
        user: row[0].text()?,
        role: Role::parse(&role).ok_or_else(|| StoreError::Corrupt(format!("role {role:?}")))?,
        joined_at: row[2].int()?,
    })
}
