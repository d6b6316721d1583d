//! What room events (edits, reactions, deletions) change in the messages they are about, inside
//! the writer's transaction: a message's current content and its earlier versions, the reaction
//! rows, the deletion mark.
//!
//! Owns: that SQL, and the order in which a batch's events lock their messages. Must not: insert
//! the events themselves (they are messages, [`super::ops`] inserts them), batch or retry.

use serde::Deserialize;

use super::messages::{int, text};
use super::{Engine, NewMessage, StoreError, Value};

/// The `data` of a room event: the message it changes (`id`, by `from` when another user than
/// the event's sender wrote it) and, for an edit, the new content; for a reaction, the emoji.
#[derive(Deserialize)]
struct EventData {
    id: String,
    from: Option<String>,
    content: Option<String>,
    emoji: Option<String>,
}

/// Applies what the room events among `messages` change in their messages, each message's events
/// in order. The messages are locked by room, author and id, so two writers' batches never wait
/// for each other in a cycle.
pub(super) fn apply(engine: &mut dyn Engine, messages: &[&NewMessage]) -> Result<(), StoreError> {
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
