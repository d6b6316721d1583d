//! The message service: a room's history with its rules, shared by the REST API and the WebSocket
//! requests (a shard offloads those to it), and telling users of a room they were added to.
//! Changes to a message (edits, deletions) are [`crate::events`].
//!
//! Owns: nothing; the store keeps the messages, [`crate::rooms`] says who may read a room. May
//! touch: the hub (the store, and the room to tell of a deletion). Must not: touch a shard's cache;
//! a shard's answer goes back to it as a delivery.

use std::collections::HashMap;

use serde_json::value::RawValue;

use crate::hub::Hub;
use crate::mailbox::Target;
use crate::protocol::{self, time_of, Frame, MessageType, Next, Page, Published, Room, UserId};
use crate::rooms::{self, Access, Added};
use crate::store::ops::{Answer, Read};
use crate::store::{Store, StoredMessage};

/// A stored message as the envelope it went out as (a replay from the store).
pub fn stored_frame(message: &StoredMessage) -> Option<Frame> {
    with_reactions(message, None)
}

/// A stored message as history shows it: its current content and, when it has any, its reactions.
fn with_reactions(message: &StoredMessage, reactions: Option<&RawValue>) -> Option<Frame> {
    let kind = MessageType::parse_stored(&message.kind)?;
    let data = RawValue::from_string(message.data.clone()).ok()?;
    let at = time_of(message.created_at);
    let (id, room, from) = (message.id.as_str(), message.room.as_deref(), message.sender.as_str());
    let stream = message.stream.as_ref().map(|(seq, epoch)| (*seq as u64, epoch.as_str()));
    let edited_at = message.edited_at.map(time_of);
    let data = &data;
    let published = Published { kind, id, room, from, data, at, stream, edited_at, reactions };
    Some(protocol::room_message_frame(published))
}

/// A `history` request.
#[derive(Debug)]
pub struct History {
    pub id: Option<String>,
    pub room: Room,
    pub user: UserId,
    pub admin: bool,
    pub limit: i64,
    pub page: Page,
}

/// A page of `room`'s history for `user`: the envelopes, oldest first, and the cursor of the next
/// page. The rules of WebSocket `history` and of the REST endpoint alike.
pub async fn read_history(hub: &Hub, request: &History) -> Result<(Vec<Frame>, Next), Access> {
    let store = hub.store().ok_or(Access::NotFound)?;
    let user = Some(request.user.as_ref()).filter(|user| !user.is_empty());
    match rooms::may_read(store, &request.room, user, request.admin).await {
        Access::Allowed => {}
        access => return Err(access),
    }
    let (before, after) = match request.page {
        Page::Before(before) => (before, None),
        Page::After(after) => (None, Some(after)),
    };
    let read =
        Read::History { room: request.room.to_string(), before, after, limit: request.limit };
    let Ok(Answer::Messages(messages)) = store.read(read).await else {
        return Err(Access::Unavailable);
    };
    let mut reactions = reactions_of(store, &request.room, &messages, &request.user).await?;
    let frames: Vec<Frame> = messages
        .iter()
        .filter_map(|m| {
            with_reactions(m, reactions.remove(&(m.sender.clone(), m.id.clone())).as_deref())
        })
        .collect();
    let full = messages.len() as i64 == request.limit;
    let next = match request.page {
        Page::Before(_) => Next::Before(messages.first().filter(|_| full).map(|m| m.pos)),
        Page::After(_) => Next::After(messages.last().and_then(|m| m.stream.as_ref()).map(|s| s.0)),
    };
    Ok((frames, next))
}

/// The reactions to a page of messages as `viewer` sees them: per (author, id), the JSON array
/// `[{"emoji","count","mine"}]` of those that have any.
async fn reactions_of(
    store: &Store,
    room: &Room,
    messages: &[StoredMessage],
    viewer: &UserId,
) -> Result<HashMap<(String, String), Box<RawValue>>, Access> {
    if messages.is_empty() {
        return Ok(HashMap::new());
    }
    let messages = messages.iter().map(|m| (m.sender.clone(), m.id.clone())).collect();
    let read = Read::Reactions { room: room.to_string(), messages, viewer: viewer.to_string() };
    let Ok(Answer::Reactions(found)) = store.read(read).await else {
        return Err(Access::Unavailable);
    };
    let mut grouped: HashMap<(String, String), Vec<serde_json::Value>> = HashMap::new();
    for r in found {
        let entry = serde_json::json!({ "emoji": r.emoji, "count": r.count, "mine": r.mine });
        grouped.entry((r.sender, r.id)).or_default().push(entry);
    }
    let raw = |list: Vec<serde_json::Value>| {
        RawValue::from_string(serde_json::Value::Array(list).to_string()).ok()
    };
    Ok(grouped.into_iter().filter_map(|(key, list)| Some((key, raw(list)?))).collect())
}

/// Tells the users a room was added for (`room_added`), on every instance.
pub fn tell_added(hub: &Hub, added: &Added) {
    if added.users.is_empty() {
        return;
    }
    let frame = protocol::room_added_frame(&added.room, added.kind.as_str(), &added.by);
    let users = added.users.iter().map(|user| UserId::from(user.as_str())).collect();
    hub.publish(Target::Users(users), frame);
}
