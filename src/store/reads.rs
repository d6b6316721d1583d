//! The reads, written once over any [`Engine`]: the questions and their answers, and the reads of
//! rooms, participants, presence and streams (those of messages are [`super::messages`]).
//!
//! Owns: the SQL of every read and how a row becomes a value. Must not: write; the writer applies
//! [`super::ops::Write`]s, the read pool answer these.

use std::collections::HashMap;

use super::messages::{
    after_seq, history, int, messages_at, placeholders, reactions, replies, role_of, target, text,
    thread,
};
pub use super::messages::{Found, Reactions};
use super::{Engine, Participant, Role, RoomInfo, RoomType, StoreError, StoredMessage, Value};
use crate::protocol::{millis, Millis};

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
    /// The message `id` of `room` (sent by `sender`, when named) that an edit, a delete or a
    /// reaction is about (`deleted_too`: or a reply, which may answer a deleted one), and whether
    /// `caller` is an owner or moderator of the room.
    Target {
        room: String,
        id: String,
        sender: Option<String>,
        caller: String,
        deleted_too: bool,
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
    /// A thread: the oldest `limit` replies to message `root` of `room` after position `after`.
    Thread {
        room: String,
        root: String,
        after: Option<i64>,
        limit: i64,
    },
    /// What a page of history shows of threads and quotes: for each of `ids`, how many replies it
    /// has and when the last came; and each of `quoted` as a reply quotes it.
    Replies {
        room: String,
        ids: Vec<String>,
        quoted: Vec<String>,
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
    /// A room, and the role in it of `user` (when a participant); with `bar`, also what keeps
    /// the user out of it (a ban, a block, an archive: three more lookups, asked only by joins,
    /// adds, reads and uploads).
    Access {
        room: String,
        user: String,
        bar: bool,
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
    /// Where `room` stands (its last seq; `None`: no such room) and how far `user` read it (`None`:
    /// not a participant).
    ReadState {
        room: String,
        user: String,
    },
    /// For each of `rooms`: its last seq, how far `user` read it, and its newest message.
    Heads {
        user: String,
        rooms: Vec<String>,
    },
    LastSeen {
        user: String,
    },
    /// Messages holding some words, newest first ([`super::search`]).
    Search(super::search::Search),
    /// Where `room` stands (its head) and how far each participant read it, when it has at most
    /// `max` participants: who is told of its unread count, and its read receipts.
    Readers {
        room: String,
        max: usize,
    },
    Moderation(super::moderation::Ask),
    Attachment(super::attachments::Get),
}

/// What keeps a user out of a room (joining it, being added, writing in it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bar {
    /// Banned from the room until then (`None`: until unbanned).
    Banned(Option<Millis>),
    /// A direct room whose other user blocked this one.
    Blocked,
    /// The room is archived.
    Archived,
}

/// Where a room stands for a user: [`Read::Heads`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub room: String,
    pub last_seq: i64,
    /// `None`: the user is no participant.
    pub last_read: Option<i64>,
    pub last_message: Option<StoredMessage>,
}

/// What a read found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Messages(Vec<StoredMessage>),
    Access {
        room: Option<RoomInfo>,
        role: Option<Role>,
        /// What keeps the user out of the room, if anything.
        bar: Option<Bar>,
    },
    Rooms(Vec<RoomInfo>),
    Target(Found),
    Reacted(bool),
    Reactions(Vec<Reactions>),
    Replies {
        /// (root id, replies, the last reply's time).
        threads: Vec<(String, i64, Millis)>,
        /// (id, author, content, deleted).
        quoted: Vec<(String, String, Option<String>, bool)>,
    },
    /// Each replaced `data`, with when it was replaced.
    Versions(Vec<(String, Millis)>),
    Participants(Vec<Participant>),
    ReadState {
        last_seq: Option<i64>,
        last_read: Option<i64>,
    },
    Heads(Vec<Head>),
    Moderation(super::moderation::Found),
    Attachment(super::attachments::Got),
    LastSeen(Option<Millis>),
    /// `head`: `None` for no such room (its `last_read` is `None`); `readers`: (user, last read
    /// seq) by user, `None` when the room has more participants than asked for.
    Readers {
        head: Option<Box<Head>>,
        readers: Option<Vec<(String, i64)>>,
    },
    /// `newest`: `None` when the room has no message with a seq yet; `sent`: (sender, id, seq).
    StreamHead {
        newest: Option<(String, i64)>,
        sent: Vec<(String, String, i64)>,
    },
}

/// Answers one read.
pub fn read(engine: &mut dyn Engine, read: &Read) -> Result<Answer, StoreError> {
    match read {
        Read::History { room, before, after: None, limit } => {
            history(engine, room, *before, *limit).map(Answer::Messages)
        }
        Read::History { room, after: Some(after), limit, .. } => {
            after_seq(engine, room, *after, *limit, "AND target IS NULL").map(Answer::Messages)
        }
        Read::Stream { room, after, limit } => {
            after_seq(engine, room, *after, *limit, "").map(Answer::Messages)
        }
        Read::Target { room, id, sender, caller, deleted_too } => {
            target(engine, room, id, (sender.as_deref(), caller), *deleted_too).map(Answer::Target)
        }
        Read::Reacted { room, sender, id, user, emoji } => {
            let rows = engine.query(
                "SELECT 1 FROM chat_reactions WHERE room = ?1 AND sender = ?2 AND id = ?3 \
                 AND user_id = ?4 AND emoji = ?5",
                &[text(room), text(sender), text(id), text(user), text(emoji)],
            )?;
            Ok(Answer::Reacted(!rows.is_empty()))
        }
        Read::Reactions { room, messages, viewer } => {
            reactions(engine, room, messages, viewer).map(Answer::Reactions)
        }
        Read::Thread { room, root, after, limit } => {
            thread(engine, room, root, *after, *limit).map(Answer::Messages)
        }
        Read::Replies { room, ids, quoted } => {
            let (threads, quoted) = replies(engine, room, ids, quoted)?;
            Ok(Answer::Replies { threads, quoted })
        }
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
        Read::Access { room, user, bar } => access(engine, room, user, *bar),
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
        Read::ReadState { room, user } => {
            let rows = engine.query(
                &format!(
                    "SELECT {LAST_SEQ}, p.last_read FROM chat_rooms r \
                     LEFT JOIN chat_participants p ON p.room = r.id AND p.user_id = ?2 \
                     WHERE r.id = ?1"
                ),
                &[text(room), text(user)],
            )?;
            let found =
                rows.first().map(|row| Ok((row[0].int()?, row[1].opt_int()?))).transpose()?;
            let (last_seq, last_read) = found.map_or((None, None), |(seq, read)| (Some(seq), read));
            Ok(Answer::ReadState { last_seq, last_read })
        }
        Read::Heads { user, rooms } => heads(engine, user, rooms).map(Answer::Heads),
        Read::LastSeen { user } => {
            let rows = engine
                .query("SELECT last_seen FROM chat_presence WHERE user_id = ?1", &[text(user)])?;
            rows.first().map(|row| row[0].int()).transpose().map(Answer::LastSeen)
        }
        Read::Readers { room, max } => readers(engine, room, *max),
        Read::Search(search) => super::search::search(engine, search).map(Answer::Messages),
        Read::Moderation(ask) => super::moderation::ask(engine, ask).map(Answer::Moderation),
        Read::Attachment(get) => super::attachments::get(engine, get).map(Answer::Attachment),
    }
}

fn readers(engine: &mut dyn Engine, room: &str, max: usize) -> Result<Answer, StoreError> {
    let head = heads(engine, "", &[room.to_owned()])?.pop().map(Box::new);
    let rows = engine.query(
        "SELECT user_id, last_read FROM chat_participants WHERE room = ?1 ORDER BY user_id LIMIT ?2",
        &[text(room), int(i64::try_from(max).unwrap_or(i64::MAX - 1) + 1)],
    )?;
    let readers = (rows.len() <= max)
        .then(|| rows.iter().map(|row| Ok((row[0].text()?, row[1].int()?))).collect())
        .transpose()?;
    Ok(Answer::Readers { head, readers })
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

fn access(
    engine: &mut dyn Engine,
    room: &str,
    user: &str,
    with_bar: bool,
) -> Result<Answer, StoreError> {
    let rows = engine.query(
        "SELECT id, type, created_at, created_by, metadata FROM chat_rooms WHERE id = ?1",
        &[text(room)],
    )?;
    let room_info = rows.first().map(|row| room_of(row)).transpose()?;
    let role = if room_info.is_some() { role_of(engine, room, user)? } else { None };
    // A direct room not yet made is barred too (a blocked user cannot open it).
    let now = millis(std::time::SystemTime::now());
    let bar = if with_bar { super::moderation::bar(engine, room, user, now)? } else { None };
    Ok(Answer::Access { room: room_info, role, bar })
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

/// A room's newest seq (its stream's newest item), by index: `r` is the room.
const LAST_SEQ: &str = "COALESCE((SELECT MAX(m.seq) FROM chat_messages m WHERE m.room = r.id), 0)";

/// Each of `rooms` as it stands for `user`, with its newest message (one read of them by position).
fn heads(engine: &mut dyn Engine, user: &str, rooms: &[String]) -> Result<Vec<Head>, StoreError> {
    if rooms.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "SELECT r.id, {LAST_SEQ}, p.last_read, (SELECT MAX(m.pos) FROM chat_messages m \
         WHERE m.room = r.id AND m.target IS NULL AND m.deleted_at IS NULL) FROM chat_rooms r \
         LEFT JOIN chat_participants p ON p.room = r.id AND p.user_id = ?1 WHERE r.id IN ({})",
        placeholders(2, rooms.len())
    );
    let params: Vec<Value> = std::iter::once(text(user)).chain(rooms.iter().map(text)).collect();
    let rows = engine.query(&sql, &params)?;
    let positions: Vec<i64> =
        rows.iter().filter_map(|row| row[3].opt_int().ok().flatten()).collect();
    let mut newest: HashMap<i64, StoredMessage> = messages_at(engine, &positions)?
        .into_iter()
        .map(|message| (message.pos, message))
        .collect();
    let mut heads = Vec::with_capacity(rows.len());
    for row in &rows {
        let last_message = row[3].opt_int()?.and_then(|pos| newest.remove(&pos));
        let (room, last_seq, last_read) = (row[0].text()?, row[1].int()?, row[2].opt_int()?);
        heads.push(Head { room, last_seq, last_read, last_message });
    }
    Ok(heads)
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
