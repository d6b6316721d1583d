//! Attachments in the store: a file's row, its bytes in chunks, its thumbnail; which message
//! carries it. Written once over any [`Engine`].
//!
//! Owns: the SQL of migration 0010's tables. Must not: decide who may upload or download, sniff or
//! decode anything; [`crate::attachments`] does, and hands the writer one chunk at a time.

use serde::Deserialize;

use super::messages::{int, text};
use super::{Engine, NewMessage, StoreError, Value};
use crate::protocol::Millis;

/// The bytes of one chunk row (the last of a file may be shorter).
pub const CHUNK: usize = 256 * 1024;

/// A file as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    pub id: String,
    pub room: String,
    pub uploader: String,
    pub name: String,
    pub content_type: String,
    pub size: i64,
    pub width: Option<i64>,
    pub height: Option<i64>,
    /// Every byte is stored.
    pub complete: bool,
    pub created_at: Millis,
    /// (sender, id) of the message that carries it.
    pub message: Option<(String, String)>,
    /// That message was deleted.
    pub message_deleted: bool,
    pub has_thumbnail: bool,
}

/// A change to the attachments, applied by the writer.
#[derive(Debug, Clone)]
pub enum Put {
    /// A new upload (no bytes yet; `content_type` as far as known).
    Begin { id: String, room: String, uploader: String, name: String, at: Millis },
    /// Chunk `n` of the file (from 0), in order.
    Chunk { id: String, n: i64, data: Vec<u8> },
    /// Every byte is in: the sniffed type, an image's size and thumbnail.
    Finish {
        id: String,
        content_type: String,
        width: Option<i64>,
        height: Option<i64>,
        thumbnail: Option<Vec<u8>>,
    },
    /// An upload given up (refused, cancelled) or swept.
    Remove { id: String },
    /// Uploads no message took, made before `before` (at most `limit`): `Purged(n)`.
    Sweep { before: Millis, limit: i64 },
}

/// A question about attachments.
#[derive(Debug, Clone)]
pub enum Get {
    Meta {
        id: String,
    },
    /// The chunks `first..=last` of a file, in order.
    Chunks {
        id: String,
        first: i64,
        last: i64,
    },
    Thumbnail {
        id: String,
    },
    /// What `user` stores (bytes) and how many uploads it began since `since`.
    Usage {
        user: String,
        since: Millis,
    },
    /// Several files (those a chat names).
    Metas {
        ids: Vec<String>,
    },
    /// Whether any upload made before `before` was taken by no message (what `Put::Sweep` removes).
    Unclaimed {
        before: Millis,
    },
}

/// What a question found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Got {
    Meta(Option<Box<Attachment>>),
    Chunks(Vec<(i64, Vec<u8>)>),
    Thumbnail(Option<Vec<u8>>),
    Usage { bytes: i64, recent: i64 },
    Metas(Vec<Attachment>),
    Unclaimed(bool),
}

/// Applies one change; the number of rows it touched.
pub fn apply(engine: &mut dyn Engine, put: &Put) -> Result<u64, StoreError> {
    match put {
        Put::Begin { id, room, uploader, name, at } => engine.execute(
            "INSERT INTO chat_attachments (id, room, uploader, name, content_type, size, \
             created_at) VALUES (?1, ?2, ?3, ?4, 'application/octet-stream', 0, ?5)",
            &[text(id), text(room), text(uploader), text(name), int(*at)],
        ),
        Put::Chunk { id, n, data } => {
            let len = i64::try_from(data.len()).unwrap_or(i64::MAX);
            engine.execute(
                "INSERT INTO chat_attachment_chunks (attachment, n, data) VALUES (?1, ?2, ?3)",
                &[text(id), int(*n), Value::Bytes(Some(data.clone()))],
            )?;
            engine.execute(
                "UPDATE chat_attachments SET size = size + ?2 WHERE id = ?1",
                &[text(id), int(len)],
            )
        }
        Put::Finish { id, content_type, width, height, thumbnail } => engine.execute(
            "UPDATE chat_attachments SET complete = 1, content_type = ?2, width = ?3, \
             height = ?4, thumbnail = ?5 WHERE id = ?1",
            &[
                text(id),
                text(content_type),
                Value::Int(*width),
                Value::Int(*height),
                Value::Bytes(thumbnail.clone()),
            ],
        ),
        Put::Remove { id } => remove(engine, "id = ?1", &[text(id)]),
        Put::Sweep { before, limit } => remove(
            engine,
            "id IN (SELECT id FROM chat_attachments WHERE message_id IS NULL AND created_at < ?1 \
             ORDER BY created_at LIMIT ?2)",
            &[int(*before), int(*limit)],
        ),
    }
}

/// Deletes the files (and their chunks) `filter` picks.
fn remove(engine: &mut dyn Engine, filter: &str, params: &[Value]) -> Result<u64, StoreError> {
    engine.execute(
        &format!(
            "DELETE FROM chat_attachment_chunks WHERE attachment IN \
             (SELECT id FROM chat_attachments WHERE {filter})"
        ),
        params,
    )?;
    engine.execute(&format!("DELETE FROM chat_attachments WHERE {filter}"), params)
}

/// Retention: the files made before `before`, with their messages.
pub fn purge(engine: &mut dyn Engine, before: Millis) -> Result<u64, StoreError> {
    remove(engine, "created_at < ?1", &[int(before)])
}

#[derive(Deserialize)]
struct Carried {
    attachments: Vec<CarriedFile>,
}

#[derive(Deserialize)]
struct CarriedFile {
    id: String,
}

/// The messages of a batch that carry files take them: each file uploaded by the message's sender
/// into its room, that no message took before.
pub fn attach(engine: &mut dyn Engine, messages: &[&NewMessage]) -> Result<(), StoreError> {
    for message in messages {
        if message.kind != "chat" || !message.data.contains("\"attachments\"") {
            continue;
        }
        let (Some(room), Ok(carried)) =
            (&message.room, serde_json::from_str::<Carried>(&message.data))
        else {
            continue;
        };
        for file in carried.attachments {
            engine.execute(
                "UPDATE chat_attachments SET message_sender = ?3, message_id = ?4 \
                 WHERE id = ?1 AND room = ?2 AND uploader = ?3 AND message_id IS NULL",
                &[
                    text(file.id),
                    text(room.as_ref()),
                    text(message.sender.as_ref()),
                    text(&message.id),
                ],
            )?;
        }
    }
    Ok(())
}

const META: &str = "SELECT a.id, a.room, a.uploader, a.name, a.content_type, a.size, a.width, \
    a.height, a.complete, a.created_at, a.message_sender, a.message_id, \
    (SELECT m.deleted_at FROM chat_messages m WHERE m.room = a.room \
     AND m.sender = a.message_sender AND m.id = a.message_id), \
    CASE WHEN a.thumbnail IS NULL THEN 0 ELSE 1 END FROM chat_attachments a";

fn meta_of(row: &[Value]) -> Result<Attachment, StoreError> {
    let message = match (row[10].opt_text()?, row[11].opt_text()?) {
        (Some(sender), Some(id)) => Some((sender, id)),
        _ => None,
    };
    Ok(Attachment {
        id: row[0].text()?,
        room: row[1].text()?,
        uploader: row[2].text()?,
        name: row[3].text()?,
        content_type: row[4].text()?,
        size: row[5].int()?,
        width: row[6].opt_int()?,
        height: row[7].opt_int()?,
        complete: row[8].int()? == 1,
        created_at: row[9].int()?,
        message,
        message_deleted: row[12].opt_int()?.is_some(),
        has_thumbnail: row[13].int()? == 1,
    })
}

/// Answers one question.
pub fn get(engine: &mut dyn Engine, get: &Get) -> Result<Got, StoreError> {
    match get {
        Get::Meta { id } => {
            let rows = engine.query(&format!("{META} WHERE a.id = ?1"), &[text(id)])?;
            rows.first().map(|row| meta_of(row)).transpose().map(|m| Got::Meta(m.map(Box::new)))
        }
        Get::Metas { ids } => {
            let mut metas = Vec::with_capacity(ids.len());
            for id in ids {
                let rows = engine.query(&format!("{META} WHERE a.id = ?1"), &[text(id)])?;
                if let Some(row) = rows.first() {
                    metas.push(meta_of(row)?);
                }
            }
            Ok(Got::Metas(metas))
        }
        Get::Chunks { id, first, last } => {
            let rows = engine.query(
                "SELECT n, data FROM chat_attachment_chunks WHERE attachment = ?1 AND n >= ?2 \
                 AND n <= ?3 ORDER BY n",
                &[text(id), int(*first), int(*last)],
            )?;
            let chunks = rows.into_iter().map(|mut row| {
                let data = row.pop().expect("two columns").bytes()?;
                Ok((row[0].int()?, data))
            });
            chunks.collect::<Result<_, StoreError>>().map(Got::Chunks)
        }
        Get::Thumbnail { id } => {
            let mut rows = engine
                .query("SELECT thumbnail FROM chat_attachments WHERE id = ?1", &[text(id)])?;
            let thumbnail = rows.pop().and_then(|mut row| row.pop()).map(Value::opt_bytes);
            Ok(Got::Thumbnail(thumbnail.transpose()?.flatten()))
        }
        Get::Usage { user, since } => {
            let rows = engine.query(
                "SELECT CAST(COALESCE(SUM(size), 0) AS BIGINT), CAST(COALESCE(SUM(CASE WHEN \
                 created_at >= ?2 THEN 1 ELSE 0 END), 0) AS BIGINT) FROM chat_attachments \
                 WHERE uploader = ?1",
                &[text(user), int(*since)],
            )?;
            let row = rows.first().ok_or_else(|| StoreError::Corrupt("no usage row".into()))?;
            Ok(Got::Usage { bytes: row[0].int()?, recent: row[1].int()? })
        }
        Get::Unclaimed { before } => {
            let rows = engine.query(
                "SELECT id FROM chat_attachments WHERE message_id IS NULL AND created_at < ?1 \
                 LIMIT 1",
                &[int(*before)],
            )?;
            Ok(Got::Unclaimed(!rows.is_empty()))
        }
    }
}
