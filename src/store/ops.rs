//! The chat writes, written once over any [`Engine`]: what a write does inside the writer's
//! transaction (the reads are in [`super::reads`], re-exported here).
//!
//! Owns: the SQL of every write and the rules that need the database (a room name taken, what a
//! room event changes in its message). Must not: open connections, batch or retry; the writer and
//! the read pool do.

use crate::protocol::Millis;
use std::collections::{BTreeMap, HashMap, HashSet};

use serde::Deserialize;

pub use super::reads::{read, Answer, Found, Read};
use super::{Engine, NewMessage, Role, RoomInfo, StoreError, Value};

/// A change, applied by the writer in a batch transaction.
#[derive(Debug, Clone)]
pub enum Write {
    Message(NewMessage),
    /// A room created over the API: its creator becomes owner, `members` members.
    CreateRoom {
        room: RoomInfo,
        members: Vec<String>,
    },
    /// A room that comes into being by being joined: created unless it exists, with `members`.
    EnsureRoom {
        room: RoomInfo,
        members: Vec<String>,
    },
    AddParticipant {
        room: String,
        user: String,
        role: Role,
        at: Millis,
    },
    RemoveParticipant {
        room: String,
        user: String,
    },
    /// `user` read `room` up to `seq` (never backwards).
    MarkRead {
        room: String,
        user: String,
        seq: i64,
    },
    Presence {
        user: String,
        online: bool,
        connections: i64,
        at: Millis,
    },
    /// Deletes up to `limit` messages created before `before`.
    Purge {
        before: Millis,
        limit: i64,
    },
    /// A moderation change and its log line ([`super::moderation`]): `Done`, or `NotFound` when
    /// it changed nothing (no such participant, report, sanction; a report made before: `Exists`).
    Moderate {
        act: Box<super::moderation::Act>,
        log: Option<Box<super::moderation::Logged>>,
    },
    /// An attachment's change ([`super::attachments`]): `Done`, `NotFound` (nothing touched),
    /// `Purged(n)` for a sweep.
    Attachment(Box<super::attachments::Put>),
    /// Changes nothing: completes once every write handed over before it is committed.
    Barrier,
}

impl Write {
    /// The bytes of file content it writes (a chunk's; 0 for anything else).
    pub fn file_bytes(&self) -> usize {
        match self {
            Write::Attachment(put) => match put.as_ref() {
                super::attachments::Put::Chunk { data, .. } => data.len(),
                _ => 0,
            },
            _ => 0,
        }
    }
}

/// What a write did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Done,
    /// `CreateRoom`: the name is taken.
    Exists,
    /// A room, message or participant that is not there.
    NotFound,
    Purged(u64),
}

#[derive(Deserialize)]
struct Fields<'a> {
    #[serde(borrow)]
    content: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow)]
    reply_to: Option<std::borrow::Cow<'a, str>>,
}

/// `data.content` and `data.reply_to` of a message's data, for the `content` and `reply_to`
/// columns, in one parse.
pub fn columns_of(data: &str) -> (Option<String>, Option<String>) {
    match serde_json::from_str::<Fields<'_>>(data) {
        Ok(fields) => {
            (fields.content.map(|c| c.into_owned()), fields.reply_to.map(|r| r.into_owned()))
        }
        Err(_) => (None, None),
    }
}

/// The `data` of a room event: the message it changes (`id`, by `from` when another user than
/// the event's sender wrote it) and, for an edit, the new content; for a reaction, the emoji.
#[derive(Deserialize)]
struct EventData {
    id: String,
    from: Option<String>,
    content: Option<String>,
    emoji: Option<String>,
}

fn text(value: impl Into<String>) -> Value {
    Value::Text(Some(value.into()))
}

fn int(value: i64) -> Value {
    Value::Int(Some(value))
}

/// Applies `batch` inside the open transaction: consecutive messages go in as one insert.
///
/// Rows that other instances' writers may take at the same time are locked in one order, so two
/// batches never wait for each other in a cycle (a deadlock, in PostgreSQL): the rooms the batch
/// creates first, by id; then the participants it adds, by room and user; the presence rows last,
/// by user. None of it changes what a write of the batch finds: a room's row is inserted for the
/// first write that creates it (that write adds its members in its place); rooms are never
/// deleted, and a participant is added by no other write (REST and joins add to rooms they found);
/// a participant some other write of the batch also adds or removes stays in its place; presence
/// rows are read by no write.
pub fn apply(engine: &mut dyn Engine, batch: &[Write]) -> Result<Vec<Outcome>, StoreError> {
    let created = create_rooms_in_order(engine, batch)?;
    let mut early = add_participants_in_order(engine, batch)?;
    let mut outcomes = Vec::with_capacity(batch.len());
    let mut index = 0;
    while index < batch.len() {
        if let Some(outcome) = early.remove(&index) {
            outcomes.push(outcome);
            index += 1;
            continue;
        }
        let run: Vec<&NewMessage> = batch[index..]
            .iter()
            .map_while(|write| match write {
                Write::Message(message) => Some(message),
                _ => None,
            })
            .collect();
        if run.is_empty() {
            outcomes.push(match &batch[index] {
                Write::CreateRoom { room, members } => {
                    add_members(engine, room, members, true, created.get(&room.id) == Some(&index))?
                }
                Write::EnsureRoom { room, members } => add_members(
                    engine,
                    room,
                    members,
                    false,
                    created.get(&room.id) == Some(&index),
                )?,
                Write::Presence { .. } => Outcome::Done,
                write => apply_one(engine, write)?,
            });
            index += 1;
        } else {
            engine.insert_messages(&run)?;
            apply_events(engine, &run)?;
            super::attachments::attach(engine, &run)?;
            outcomes.extend(run.iter().map(|_| Outcome::Done));
            index += run.len();
        }
    }
    let mut presence: Vec<&Write> =
        batch.iter().filter(|write| matches!(write, Write::Presence { .. })).collect();
    presence.sort_by_key(|write| match write {
        Write::Presence { user, .. } => user.as_str(),
        _ => "",
    });
    for write in presence {
        apply_one(engine, write)?;
    }
    Ok(outcomes)
}

/// Adds the participants of `batch`'s `AddParticipant`s, by room and user, but for a pair that
/// another write of the batch touches too; their outcomes by index.
fn add_participants_in_order(
    engine: &mut dyn Engine,
    batch: &[Write],
) -> Result<HashMap<usize, Outcome>, StoreError> {
    // The pairs some other write of the batch adds or removes, found in one pass.
    let mut touched: HashSet<(&str, &str)> = HashSet::new();
    for write in batch {
        match write {
            Write::RemoveParticipant { room, user } => {
                touched.insert((room, user));
            }
            Write::CreateRoom { room, members } | Write::EnsureRoom { room, members } => {
                touched.insert((&room.id, &room.created_by));
                touched.extend(members.iter().map(|member| (room.id.as_str(), member.as_str())));
            }
            _ => {}
        }
    }
    let mut adds: Vec<(usize, &str, &str, Role, Millis)> = batch
        .iter()
        .enumerate()
        .filter_map(|(index, write)| match write {
            Write::AddParticipant { room, user, role, at } => {
                Some((index, room.as_str(), user.as_str(), *role, *at))
            }
            _ => None,
        })
        .filter(|(_, room, user, ..)| !touched.contains(&(*room, *user)))
        .collect();
    adds.sort_by(|a, b| (a.1, a.2, a.0).cmp(&(b.1, b.2, b.0)));
    let mut outcomes = HashMap::new();
    for (index, room, user, role, at) in adds {
        outcomes.insert(index, add_participant(engine, room, user, role, at)?);
    }
    Ok(outcomes)
}

/// Inserts the rows of the rooms `batch` creates, by id; for each room it inserted, the index of
/// the write that created it (the first in the batch to create it).
fn create_rooms_in_order(
    engine: &mut dyn Engine,
    batch: &[Write],
) -> Result<HashMap<String, usize>, StoreError> {
    // By id (a BTreeMap iterates in order), each with the first write that creates it.
    let mut first: BTreeMap<&str, (&RoomInfo, usize)> = BTreeMap::new();
    for (index, write) in batch.iter().enumerate() {
        if let Write::CreateRoom { room, .. } | Write::EnsureRoom { room, .. } = write {
            first.entry(&room.id).or_insert((room, index));
        }
    }
    let mut created = HashMap::new();
    for (room, index) in first.into_values() {
        if insert_room(engine, room)? {
            created.insert(room.id.clone(), index);
        }
    }
    Ok(created)
}

fn apply_one(engine: &mut dyn Engine, write: &Write) -> Result<Outcome, StoreError> {
    match write {
        Write::Message(message) => {
            engine.insert_messages(&[message])?;
            apply_events(engine, &[message])?;
            super::attachments::attach(engine, &[message]).map(|()| Outcome::Done)
        }
        // Their rows are inserted first, in order, by `apply`.
        Write::CreateRoom { .. } | Write::EnsureRoom { .. } => {
            unreachable!("apply creates rooms itself")
        }
        Write::AddParticipant { room, user, role, at } => {
            add_participant(engine, room, user, *role, *at)
        }
        Write::RemoveParticipant { room, user } => {
            let removed = engine.execute(
                "DELETE FROM chat_participants WHERE room = ?1 AND user_id = ?2",
                &[text(room), text(user)],
            )?;
            Ok(if removed == 0 { Outcome::NotFound } else { Outcome::Done })
        }
        Write::Presence { user, online, connections, at } => {
            let status = if *online { "online" } else { "offline" };
            engine.execute(
                "INSERT INTO chat_presence (user_id, status, last_seen, connections) \
                 VALUES (?1, ?2, ?3, ?4) ON CONFLICT (user_id) DO UPDATE SET \
                 status = excluded.status, last_seen = excluded.last_seen, \
                 connections = excluded.connections",
                &[text(user), text(status), int(*at), int(*connections)],
            )?;
            Ok(Outcome::Done)
        }
        Write::Barrier => Ok(Outcome::Done),
        Write::Attachment(put) => {
            let touched = super::attachments::apply(engine, put)?;
            Ok(match **put {
                super::attachments::Put::Sweep { .. } => Outcome::Purged(touched),
                _ if touched == 0 => Outcome::NotFound,
                _ => Outcome::Done,
            })
        }
        Write::Moderate { act, log } => {
            let changed = super::moderation::apply(engine, act, log.as_deref())?;
            Ok(match (changed, &**act) {
                (true, _) => Outcome::Done,
                (false, super::moderation::Act::Report(_)) => Outcome::Exists,
                (false, _) => Outcome::NotFound,
            })
        }
        Write::MarkRead { room, user, seq } => {
            engine.execute(
                "UPDATE chat_participants SET last_read = ?3 \
                 WHERE room = ?1 AND user_id = ?2 AND last_read < ?3",
                &[text(room), text(user), int(*seq)],
            )?;
            Ok(Outcome::Done)
        }
        Write::Purge { before, limit } => {
            let purged = engine.execute(
                "DELETE FROM chat_messages WHERE pos IN \
                 (SELECT pos FROM chat_messages WHERE created_at < ?1 ORDER BY created_at LIMIT ?2)",
                &[int(*before), int(*limit)],
            )?;
            engine.execute(
                "DELETE FROM chat_message_versions WHERE replaced_at < ?1",
                &[int(*before)],
            )?;
            engine.execute("DELETE FROM chat_reactions WHERE created_at < ?1", &[int(*before)])?;
            super::attachments::purge(engine, *before)?;
            Ok(Outcome::Purged(purged))
        }
    }
}

/// Inserts the room's row unless it exists; whether it did.
fn insert_room(engine: &mut dyn Engine, room: &RoomInfo) -> Result<bool, StoreError> {
    let inserted = engine.execute(
        "INSERT INTO chat_rooms (id, type, created_at, created_by, metadata) \
         VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (id) DO NOTHING",
        &[
            text(&room.id),
            text(room.kind.as_str()),
            int(room.created_at),
            text(&room.created_by),
            Value::Text(room.metadata.clone()),
        ],
    )?;
    Ok(inserted > 0)
}

/// A room's creation past its row: its creator (`creator_owns`: as the owner) and members become
/// participants when this write `inserted` the row; a room that existed is `Exists` (for
/// `creator_owns`) or left as it is.
fn add_members(
    engine: &mut dyn Engine,
    room: &RoomInfo,
    members: &[String],
    creator_owns: bool,
    inserted: bool,
) -> Result<Outcome, StoreError> {
    if !inserted {
        return Ok(if creator_owns { Outcome::Exists } else { Outcome::Done });
    }
    if creator_owns {
        add_participant(engine, &room.id, &room.created_by, Role::Owner, room.created_at)?;
    }
    for member in members.iter().filter(|m| !creator_owns || **m != room.created_by) {
        add_participant(engine, &room.id, member, Role::Member, room.created_at)?;
    }
    Ok(Outcome::Done)
}

fn add_participant(
    engine: &mut dyn Engine,
    room: &str,
    user: &str,
    role: Role,
    at: Millis,
) -> Result<Outcome, StoreError> {
    let exists = engine.query("SELECT 1 FROM chat_rooms WHERE id = ?1", &[text(room)])?;
    if exists.is_empty() {
        return Ok(Outcome::NotFound);
    }
    engine.execute(
        "INSERT INTO chat_participants (room, user_id, joined_at, role) VALUES (?1, ?2, ?3, ?4) \
         ON CONFLICT (room, user_id) DO NOTHING",
        &[text(room), text(user), int(at), text(role.as_str())],
    )?;
    Ok(Outcome::Done)
}

/// Applies what the room events among `messages` change in their messages, each message's events
/// in order. The messages are locked by room, author and id, so two writers' batches never wait
/// for each other in a cycle.
fn apply_events(engine: &mut dyn Engine, messages: &[&NewMessage]) -> Result<(), StoreError> {
    let mut events: Vec<(&NewMessage, EventData)> = messages
        .iter()
        .filter(|message| message.target.is_some())
        .filter_map(|message| Some((*message, serde_json::from_str(&message.data).ok()?)))
        .collect();
    if events.is_empty() {
        return Ok(());
    }
    let author = |(event, data): &(&NewMessage, EventData)| {
        (event.room.clone(), data.from.clone().unwrap_or_else(|| event.sender.to_string()))
    };
    events.sort_by_cached_key(|event| (author(event), event.1.id.clone()));
    // Reactions added one after another go in as one statement; anything else first writes them.
    let mut added: Vec<Value> = Vec::new();
    for event in &events {
        let (room, author) = author(event);
        let (event, data) = event;
        let key = [text(room.as_deref().unwrap_or_default()), text(author), text(&data.id)];
        let at = int(event.created_at);
        if let ("reaction_added", Some(emoji)) = (event.kind, &data.emoji) {
            added.extend(key.into_iter().chain([text(event.sender.as_ref()), text(emoji), at]));
            continue;
        }
        add_reactions(engine, &mut added)?;
        match (event.kind, &data.content) {
            ("message_edited", Some(content)) => edit(engine, &key, content, at)?,
            ("reaction_removed", _) => {
                let Some(emoji) = &data.emoji else { continue };
                remove_reaction(engine, &key, (&event.sender, emoji))?;
            }
            ("message_deleted", _) => {
                engine.execute(
                    "UPDATE chat_messages SET deleted_at = ?4, updated_at = ?4 \
                     WHERE room = ?1 AND sender = ?2 AND id = ?3 AND target IS NULL \
                     AND deleted_at IS NULL",
                    &[key[0].clone(), key[1].clone(), key[2].clone(), at],
                )?;
            }
            _ => {}
        }
    }
    add_reactions(engine, &mut added)
}

/// Inserts the reaction rows `added` holds (six values each: room, author, id, user, emoji, time)
/// in statements of up to [`REACTIONS_PER_INSERT`] rows; an add of one that is there changes
/// nothing. Empties `added`.
fn add_reactions(engine: &mut dyn Engine, added: &mut Vec<Value>) -> Result<(), StoreError> {
    for rows in added.chunks(6 * REACTIONS_PER_INSERT) {
        let values: Vec<String> = (0..rows.len() / 6)
            .map(|row| {
                let first = row * 6 + 1;
                let marks: Vec<String> = (first..first + 6).map(|n| format!("?{n}")).collect();
                format!("({})", marks.join(", "))
            })
            .collect();
        let sql = format!(
            "INSERT INTO chat_reactions (room, sender, id, user_id, emoji, created_at) \
             VALUES {} ON CONFLICT DO NOTHING",
            values.join(", ")
        );
        engine.execute(&sql, rows)?;
    }
    added.clear();
    Ok(())
}

/// The most reaction rows one insert carries (6 values each, well under both engines' limits).
const REACTIONS_PER_INSERT: usize = 500;

/// Takes back `user`'s reaction `emoji` to the message `key` (room, author, id); one that is not
/// there changes nothing. (Added ones go in by [`add_reactions`].)
fn remove_reaction(
    engine: &mut dyn Engine,
    key: &[Value; 3],
    (user, emoji): (&str, &str),
) -> Result<(), StoreError> {
    let mut params: Vec<Value> = key.to_vec();
    params.extend([text(user), text(emoji)]);
    engine.execute(
        "DELETE FROM chat_reactions \
         WHERE room = ?1 AND sender = ?2 AND id = ?3 AND user_id = ?4 AND emoji = ?5",
        &params,
    )?;
    Ok(())
}

/// Replaces the content of the message `key` (room, author, id), unless deleted, keeping the data
/// it replaces as a version.
fn edit(
    engine: &mut dyn Engine,
    key: &[Value; 3],
    content: &str,
    at: Value,
) -> Result<(), StoreError> {
    const MESSAGE: &str = "room = ?1 AND sender = ?2 AND id = ?3 AND target IS NULL \
                           AND deleted_at IS NULL";
    let params =
        |more: &[Value]| key.iter().cloned().chain(more.iter().cloned()).collect::<Vec<_>>();
    let rows = engine.query(&format!("SELECT data FROM chat_messages WHERE {MESSAGE}"), key)?;
    let Some(old) = rows.first().map(|row| row[0].text()).transpose()? else { return Ok(()) };
    let mut data: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&old).unwrap_or_default();
    data.insert("content".into(), serde_json::Value::String(content.to_owned()));
    let new = serde_json::Value::Object(data).to_string();
    engine.execute(
        "INSERT INTO chat_message_versions (room, sender, id, data, replaced_at) \
         VALUES (?1, ?2, ?3, ?4, ?5)",
        &params(&[text(old), at.clone()]),
    )?;
    engine.execute(
        &format!(
            "UPDATE chat_messages SET data = ?4, content = ?5, edited_at = ?6, updated_at = ?6 \
             WHERE {MESSAGE}"
        ),
        &params(&[text(new), text(content), at]),
    )?;
    Ok(())
}
