//! The chat writes, written once over any [`Engine`]: what a write does inside the writer's
//! transaction (the reads are in [`super::reads`], re-exported here).
//!
//! Owns: the SQL of every write and the rules that need the database (a room name taken); what a
//! room event changes in its message is in [`super::room_events`]. Must not: open connections,
//! batch or retry; the writer and the read pool do.

use crate::protocol::Millis;
use std::collections::{BTreeMap, HashMap, HashSet};

use serde::Deserialize;

use super::messages::{int, text};
pub use super::reads::{read, Answer, Found, Read};
use super::room_events;
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
    /// `CreateRoom`: the name is taken; `Message`: one with its room, sender and id is stored
    /// already (a resend), so this one was not.
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

/// Applies `batch` inside the open transaction: its messages go in as one insert.
///
/// Rows that other instances' writers may take at the same time are locked in one order, so two
/// batches seldom wait for each other in a cycle (a deadlock, in PostgreSQL, which the writer
/// retries): the rooms the batch creates first, by id; then the participants it adds, by room and
/// user; the other writes in the batch's order, with all of its messages at the place of the first
/// (the engine takes their keys in key order); the presence rows last, by user. None of it changes
/// what a write of the batch finds: a room's row is inserted for the first write that creates it
/// (that write adds its members in its place); rooms are never deleted, and a participant is added
/// by no other write (REST and joins add to rooms they found); a participant some other write of
/// the batch also adds or removes stays in its place; no other write reads or changes a message
/// but the batch's own room events (which come after what they change, in stream order), and a
/// file a chat links was complete before the chat was accepted; presence rows are read by no write.
pub fn apply(engine: &mut dyn Engine, batch: &[Write]) -> Result<Vec<Outcome>, StoreError> {
    let created = create_rooms_in_order(engine, batch)?;
    let mut outcomes: Vec<Option<Outcome>> = vec![None; batch.len()];
    for (index, outcome) in add_participants_in_order(engine, batch)? {
        outcomes[index] = Some(outcome);
    }
    let mut messages_pending = true;
    for (index, write) in batch.iter().enumerate() {
        if outcomes[index].is_some() {
            continue;
        }
        outcomes[index] = match write {
            Write::Message(_) if messages_pending => {
                messages_pending = false;
                for (at, outcome) in insert_messages(engine, batch)? {
                    outcomes[at] = Some(outcome);
                }
                continue;
            }
            Write::Message(_) => continue,
            Write::CreateRoom { room, members } | Write::EnsureRoom { room, members } => {
                let creator_owns = matches!(write, Write::CreateRoom { .. });
                let inserted = created.get(&room.id) == Some(&index);
                Some(add_members(engine, room, members, creator_owns, inserted)?)
            }
            Write::Presence { .. } => Some(Outcome::Done),
            write => Some(apply_one(engine, write)?),
        };
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
    Ok(outcomes.into_iter().map(|outcome| outcome.expect("every write applied")).collect())
}

/// Inserts every message of `batch` in one statement, by room and seq (already their order within
/// a room, so history's order stays); then what each message inserted changes (an event's edit, a
/// chat's files: a resend found stored changes nothing again). Their outcomes by index.
fn insert_messages(
    engine: &mut dyn Engine,
    batch: &[Write],
) -> Result<Vec<(usize, Outcome)>, StoreError> {
    let mut messages: Vec<(usize, &NewMessage)> = batch
        .iter()
        .enumerate()
        .filter_map(|(index, write)| match write {
            Write::Message(message) => Some((index, message)),
            _ => None,
        })
        .collect();
    messages.sort_by(|a, b| stream_order(a.1).cmp(&stream_order(b.1)));
    let sorted: Vec<&NewMessage> = messages.iter().map(|(_, message)| *message).collect();
    let inserted = engine.insert_messages(&sorted)?;
    let stored: Vec<&NewMessage> =
        sorted.iter().zip(&inserted).filter(|(_, new)| **new).map(|(m, _)| *m).collect();
    room_events::apply(engine, &stored)?;
    super::attachments::attach(engine, &stored)?;
    Ok(messages
        .into_iter()
        .zip(inserted)
        .map(|((index, _), new)| (index, if new { Outcome::Done } else { Outcome::Exists }))
        .collect())
}

/// Where a message goes in a batch's insert: its room, then its seq (none: a global message).
fn stream_order(message: &NewMessage) -> (Option<&str>, Option<i64>) {
    (message.room.as_deref(), message.stream.as_ref().map(|(seq, _)| *seq))
}

/// Adds the participants of `batch`'s `AddParticipant`s, by room and user, but for a pair that
/// another write of the batch touches too; their outcomes by index.
fn add_participants_in_order(
    engine: &mut dyn Engine,
    batch: &[Write],
) -> Result<Vec<(usize, Outcome)>, StoreError> {
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
    let mut outcomes = Vec::with_capacity(adds.len());
    for (index, room, user, role, at) in adds {
        outcomes.push((index, add_participant(engine, room, user, role, at)?));
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
        // Their rows are inserted first, in order, by `apply`; messages all at once.
        Write::CreateRoom { .. } | Write::EnsureRoom { .. } | Write::Message(_) => {
            unreachable!("apply creates rooms and inserts messages itself")
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
