//! The message service: a room's history with its rules, shared by the REST API and the WebSocket
//! requests (a shard offloads those to it); read state; and the user's own stream: telling users
//! of a room they were added to or removed from, where a room stands for them (`unread`), and a
//! small room who read it (`receipt`).
//! Changes to a message (edits, deletions) are [`crate::events`].
//!
//! Owns: nothing; the store keeps the messages, [`crate::rooms`] says who may read a room. May
//! touch: the hub (the store, and the room to tell of a deletion). Must not: touch a shard's cache;
//! a shard's answer goes back to it as a delivery.

use std::collections::HashMap;

use serde_json::value::RawValue;

use crate::hub::Hub;
use crate::mailbox::Target;
use crate::protocol::{
    self, time_of, Annotations, ErrorCode, Frame, MessageType, Next, Page, Published, Room, Unread,
    UserId,
};
use crate::rooms::{self, Access, Added};
use crate::store::ops::{Answer, Read, Write};
use crate::store::{Store, StoredMessage};

/// A stored message as the envelope it went out as (a replay from the store).
pub fn stored_frame(message: &StoredMessage) -> Option<Frame> {
    annotated(message, &Shown::default())
}

/// A stored message as history shows it: its current content (and when it was edited), and, when
/// it has any, its reactions, its thread and the message it quotes.
fn annotated(message: &StoredMessage, shown: &Shown) -> Option<Frame> {
    let kind = MessageType::parse_stored(&message.kind)?;
    let data = RawValue::from_string(message.data.clone()).ok()?;
    let at = time_of(message.created_at);
    // A chat to everyone went out with no room, and is shown as it went out.
    let room = message.room.as_deref().filter(|room| *room != protocol::GLOBAL_ROOM);
    let (id, from) = (message.id.as_str(), message.sender.as_str());
    let stream = message.stream.as_ref().map(|(seq, epoch)| (*seq as u64, epoch.as_str()));
    let annotations = Annotations {
        edited_at: message.edited_at.map(time_of),
        reactions: shown
            .reactions
            .get(&(message.sender.clone(), message.id.clone()))
            .map(AsRef::as_ref),
        thread: shown.threads.get(&message.id).map(AsRef::as_ref),
        quote: message
            .reply_to
            .as_ref()
            .and_then(|quoted| shown.quotes.get(quoted))
            .map(AsRef::as_ref),
    };
    let data = &data;
    let published = Published { kind, id, room, from, data, at, stream, annotations };
    Some(protocol::room_message_frame(published))
}

/// What a history page shows beyond its messages, as its reader sees it: per (author, id) the
/// reactions, per id the thread (replies, last reply), per quoted id the quote.
#[derive(Debug, Default)]
struct Shown {
    reactions: HashMap<(String, String), Box<RawValue>>,
    threads: HashMap<String, Box<RawValue>>,
    quotes: HashMap<String, Box<RawValue>>,
}

/// The most characters of a quoted message's content a reply shows.
const QUOTE_CHARS: usize = 200;

fn raw(value: serde_json::Value) -> Option<Box<RawValue>> {
    RawValue::from_string(value.to_string()).ok()
}

/// Reads what `messages` show for `viewer`: their reactions, threads and quotes.
async fn shown(
    store: &Store,
    room: &Room,
    messages: &[StoredMessage],
    viewer: &UserId,
) -> Result<Shown, Access> {
    let mut shown = Shown::default();
    if messages.is_empty() {
        return Ok(shown);
    }
    let keys = messages.iter().map(|m| (m.sender.clone(), m.id.clone())).collect();
    let read =
        Read::Reactions { room: room.to_string(), messages: keys, viewer: viewer.to_string() };
    let Ok(Answer::Reactions(found)) = store.read(read).await else {
        return Err(Access::Unavailable);
    };
    let mut grouped: HashMap<(String, String), Vec<serde_json::Value>> = HashMap::new();
    for r in found {
        let entry = serde_json::json!({ "emoji": r.emoji, "count": r.count, "mine": r.mine });
        grouped.entry((r.sender, r.id)).or_default().push(entry);
    }
    let lists = grouped.into_iter().map(|(key, list)| (key, serde_json::Value::Array(list)));
    shown.reactions = lists.filter_map(|(key, list)| Some((key, raw(list)?))).collect();
    let ids = messages.iter().map(|m| m.id.clone()).collect();
    let quoted = messages.iter().filter_map(|m| m.reply_to.clone()).collect();
    let read = Read::Replies { room: room.to_string(), ids, quoted };
    let Ok(Answer::Replies { threads, quoted }) = store.read(read).await else {
        return Err(Access::Unavailable);
    };
    for (root, replies, last) in threads {
        let last = protocol::format_rfc3339(time_of(last));
        let thread = serde_json::json!({ "replies": replies, "last_reply_at": last });
        shown.threads.extend(raw(thread).map(|thread| (root, thread)));
    }
    for (id, from, content, deleted) in quoted {
        let quote = if deleted {
            serde_json::json!({ "id": id, "from": from, "deleted": true })
        } else {
            let content: String = content.unwrap_or_default().chars().take(QUOTE_CHARS).collect();
            serde_json::json!({ "id": id, "from": from, "content": content })
        };
        shown.quotes.extend(raw(quote).map(|quote| (id, quote)));
    }
    Ok(shown)
}

/// A thread: the replies to message `root` of `request.room`, oldest first, `request.limit` after
/// the position `after`; and the cursor of the next page. For those who may read the room.
pub async fn read_thread(
    hub: &Hub,
    request: &History,
    root: &str,
    after: Option<i64>,
) -> Result<(Vec<Frame>, Option<i64>), Access> {
    let store = hub.store().ok_or(Access::NotFound)?;
    let user = Some(request.user.as_ref()).filter(|user| !user.is_empty());
    match rooms::may_read(store, &request.room, user, request.admin).await {
        Access::Allowed => {}
        access => return Err(access),
    }
    let (room, root_id, limit) = (request.room.to_string(), root.to_owned(), request.limit);
    let read = Read::Thread { room, root: root_id, after, limit };
    let Ok(Answer::Messages(replies)) = store.read(read).await else {
        return Err(Access::Unavailable);
    };
    let shown = shown(store, &request.room, &replies, &request.user).await?;
    let frames = replies.iter().filter_map(|m| annotated(m, &shown)).collect();
    let next = replies.last().filter(|_| replies.len() as i64 == limit).map(|m| m.pos);
    Ok((frames, next))
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
    // The chats to everyone were sent to every caller; a room's history, to those who may read it.
    if request.room.as_ref() != protocol::GLOBAL_ROOM {
        match rooms::may_read(store, &request.room, user, request.admin).await {
            Access::Allowed => {}
            access => return Err(access),
        }
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
    let shown = shown(store, &request.room, &messages, &request.user).await?;
    let frames: Vec<Frame> = messages.iter().filter_map(|m| annotated(m, &shown)).collect();
    let full = messages.len() as i64 == request.limit;
    let next = match request.page {
        Page::Before(_) => Next::Before(messages.first().filter(|_| full).map(|m| m.pos)),
        Page::After(_) => Next::After(messages.last().and_then(|m| m.stream.as_ref()).map(|s| s.0)),
    };
    Ok((frames, next))
}

/// Marks `room` read by `user` up to `seq` (never backwards): for its participants, and no
/// further than the room's last seq. The refusal's code and message otherwise.
pub async fn mark_read(
    hub: &Hub,
    room: &Room,
    user: &UserId,
    seq: u64,
) -> Result<(), (ErrorCode, String)> {
    let unavailable = || (ErrorCode::Unavailable, protocol::STORE_UNAVAILABLE.to_owned());
    let store = hub.store().ok_or((ErrorCode::NotFound, "no read state without a store".into()))?;
    let read = Read::ReadState { room: room.to_string(), user: user.to_string() };
    let Ok(Answer::ReadState { last_seq, last_read }) = store.read(read).await else {
        return Err(unavailable());
    };
    let Some(last_seq) = last_seq else {
        return Err((ErrorCode::NotFound, format!("no room {room}")));
    };
    if last_read.is_none() {
        return Err((ErrorCode::NotMember, format!("not a participant of room {room}")));
    }
    let seq = i64::try_from(seq).unwrap_or(i64::MAX);
    if seq > last_seq {
        let message = format!("seq {seq} is beyond the room's last, {last_seq}");
        return Err((ErrorCode::BadRequest, message));
    }
    let write = Write::MarkRead { room: room.to_string(), user: user.to_string(), seq };
    store.write_and_wait(write).await.map_err(|_| unavailable())?;
    if last_read.is_some_and(|read| read >= seq) {
        return Ok(());
    }
    let last_read = seq;
    let unread =
        Unread { unread: (last_seq - last_read).max(0), last_seq, last_read, last_message: None };
    hub.publish(Target::User(user.clone()), protocol::unread_frame(room, &unread));
    tell_receipt(hub, room, user, last_read).await;
    Ok(())
}

/// Tells a small room (at most `--receipts-max-members` participants) that `user` read it up to
/// `seq`.
async fn tell_receipt(hub: &Hub, room: &Room, user: &UserId, seq: i64) {
    let max = hub.settings().receipts_max_members;
    let Some(store) = hub.store().filter(|_| max > 0) else { return };
    let read = Read::Readers { room: room.to_string(), max };
    if let Ok(Answer::Readers { readers: Some(_), .. }) = store.read(read).await {
        hub.publish(Target::Room(room.clone()), protocol::receipt_frame(room, user, seq));
    }
}

/// Tells each participant of `room` (when it has at most `--unread-max-members`) where the room
/// stands for it: its unread count and newest message. One frame per distinct count.
pub async fn tell_unread(hub: &Hub, room: &Room) {
    let max = hub.settings().unread_max_members;
    let Some(store) = hub.store() else { return };
    let read = Read::Readers { room: room.to_string(), max };
    let Ok(Answer::Readers { head: Some(head), readers: Some(readers) }) = store.read(read).await
    else {
        return;
    };
    let last = head.last_message.as_ref().and_then(stored_frame);
    let last_message = last.as_ref().and_then(|frame| serde_json::from_str(frame.as_str()).ok());
    let mut by_read: HashMap<i64, Vec<UserId>> = HashMap::new();
    for (user, last_read) in readers {
        by_read.entry(last_read).or_default().push(UserId::from(user));
    }
    let last_seq = head.last_seq;
    for (last_read, users) in by_read {
        let unread =
            Unread { unread: (last_seq - last_read).max(0), last_seq, last_read, last_message };
        hub.publish(Target::Users(users), protocol::unread_frame(room, &unread));
    }
}

/// Tells `user` on every connection, on every instance, that it is no longer a participant of
/// `room` (`room_removed`).
pub fn tell_removed(hub: &Hub, room: &Room, user: &UserId, by: &str) {
    hub.publish(Target::User(user.clone()), protocol::room_removed_frame(room, by));
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
