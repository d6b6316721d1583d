//! Work a shard hands to a task of its own because it waits: on the store (room access, history,
//! deletes) or on Redis (cluster presence).
//!
//! Owns: nothing; each task reads what it needs and sends its answer back to the shard as a
//! delivery (`Reply`, `JoinDecided`), so the frame goes out through the shard's output in order
//! with the rest and a full outbox still evicts. Must not: touch the shard's cache.

use std::time::SystemTime;

use super::Shard;
use crate::mailbox::{ConnId, Delivery, Target};
use crate::protocol::{
    self, ErrorCode, Frame, MessageType, Next, Page, Published, Room, Since, UserId,
};
use crate::rooms::{self, Verdict};
use crate::store::ops::{Answer, Outcome, Read, Write};
use crate::store::{millis, time_of, StoredMessage};

/// The error frame answering a refused read or join.
fn refusal(id: Option<&str>, room: &str, verdict: Verdict) -> Frame {
    let (code, message) = match verdict {
        Verdict::Allowed => unreachable!("only refusals are answered with an error"),
        Verdict::Forbidden(why) => (ErrorCode::Forbidden, why),
        Verdict::NotFound => (ErrorCode::NotFound, format!("no room {room}")),
        Verdict::Unavailable => {
            (ErrorCode::Unavailable, "the message store is unavailable; retry later".to_owned())
        }
    };
    protocol::error_frame(id, code, &message)
}

/// A refused resume is a bad request (a room the client may not join has no stream for it).
pub fn resume_refusal(id: Option<&str>, room: &str, verdict: Verdict) -> Frame {
    match verdict {
        Verdict::Unavailable => refusal(id, room, verdict),
        _ => {
            let message = format!("since names room {room}, which this user may not join");
            protocol::error_frame(id, ErrorCode::BadRequest, &message)
        }
    }
}

/// A stored message as the envelope it went out as.
pub fn stored_frame(message: &StoredMessage) -> Option<Frame> {
    let kind = MessageType::parse_published(&message.kind)?;
    let data = serde_json::value::RawValue::from_string(message.data.clone()).ok()?;
    let at = time_of(message.created_at);
    let (id, room, from) = (message.id.as_str(), message.room.as_deref(), message.sender.as_str());
    let stream = message.stream.as_ref().map(|(seq, epoch)| (*seq as u64, epoch.as_str()));
    Some(protocol::room_message_frame(Published { kind, id, room, from, data: &data, at, stream }))
}

impl Shard {
    /// Answers a presence query off the shard (it may ask Redis).
    /// A page of the room's users (in id order, after `after`), with who of them is away.
    pub(super) fn offload_presence(
        &self,
        conn: ConnId,
        id: Option<String>,
        room: Room,
        after: Option<UserId>,
    ) {
        let (hub, shard) = (self.hub.clone(), self.id);
        tokio::spawn(async move {
            let (mut users, _) = hub.room_users(&room).await;
            users.sort_unstable();
            users.retain(|(user, _)| after.as_ref().is_none_or(|after| user > after));
            let more = users.len() > protocol::PRESENCE_PAGE;
            users.truncate(protocol::PRESENCE_PAGE);
            let next_after = users.last().filter(|_| more).map(|(user, _)| user.to_string());
            let away: Vec<UserId> =
                users.iter().filter(|(_, away)| *away).map(|(u, _)| u.clone()).collect();
            let names: Vec<UserId> = users.into_iter().map(|(u, _)| u).collect();
            let lists = (names.as_slice(), away.as_slice());
            let frame =
                protocol::presence_list_frame(id.as_deref(), &room, lists, next_after.as_deref());
            hub.router().deliver(shard, Delivery::Reply { conn, frame });
        });
    }

    /// Asks the store whether the connection's user may join `room` (creating it when nobody has).
    pub(super) fn offload_join(
        &self,
        conn: ConnId,
        id: Option<String>,
        (room, since): (Room, Option<Since>),
        user: UserId,
        admin: bool,
    ) {
        let (hub, shard) = (self.hub.clone(), self.id);
        tokio::spawn(async move {
            let Some(store) = hub.store() else { return };
            let decision = match rooms::may_join(store, &room, &user, admin).await {
                Verdict::Allowed => Ok(()),
                verdict if since.is_some() => Err(resume_refusal(id.as_deref(), &room, verdict)),
                verdict => Err(refusal(id.as_deref(), &room, verdict)),
            };
            let decided = Delivery::JoinDecided { conn, id, room, since, decision };
            hub.router().deliver(shard, decided);
        });
    }

    /// A page of the room's history, for a reader of it.
    pub(super) fn offload_history(&self, conn: ConnId, request: History) {
        let (hub, shard) = (self.hub.clone(), self.id);
        tokio::spawn(async move {
            let frame = history(&hub, &request).await;
            hub.router().deliver(shard, Delivery::Reply { conn, frame });
        });
    }

    /// Deletes a stored message if the user may, and tells the room.
    pub(super) fn offload_delete(&self, conn: ConnId, request: Deletion) {
        let (hub, shard) = (self.hub.clone(), self.id);
        tokio::spawn(async move {
            let frame = delete(&hub, request).await;
            hub.router().deliver(shard, Delivery::Reply { conn, frame });
        });
    }
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
pub async fn history_page(
    hub: &crate::hub::Hub,
    request: &History,
) -> Result<(Vec<Frame>, Next), Verdict> {
    let store = hub.store().ok_or(Verdict::NotFound)?;
    let user = Some(request.user.as_ref()).filter(|user| !user.is_empty());
    match rooms::may_read(store, &request.room, user, request.admin).await {
        Verdict::Allowed => {}
        verdict => return Err(verdict),
    }
    let (before, after) = match request.page {
        Page::Before(before) => (before, None),
        Page::After(after) => (None, Some(after)),
    };
    let read =
        Read::History { room: request.room.to_string(), before, after, limit: request.limit };
    let Ok(Answer::Messages(messages)) = store.read(read).await else {
        return Err(Verdict::Unavailable);
    };
    let frames: Vec<Frame> = messages.iter().filter_map(stored_frame).collect();
    let full = messages.len() as i64 == request.limit;
    let next = match request.page {
        Page::Before(_) => Next::Before(messages.first().filter(|_| full).map(|m| m.pos)),
        Page::After(_) => Next::After(messages.last().and_then(|m| m.stream.as_ref()).map(|s| s.0)),
    };
    Ok((frames, next))
}

/// A WebSocket `history`: the page, or the error.
async fn history(hub: &crate::hub::Hub, request: &History) -> Frame {
    let (id, room) = (request.id.as_deref(), &request.room);
    match history_page(hub, request).await {
        Ok((frames, next)) => protocol::history_frame(id, room, &frames, next),
        Err(verdict) => refusal(id, room, verdict),
    }
}

/// A `delete` request.
#[derive(Debug)]
pub struct Deletion {
    pub id: Option<String>,
    pub room: Room,
    pub message: String,
    pub from: Option<String>,
    pub user: UserId,
    pub admin: bool,
}

/// Why a delete did not happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotDeleted {
    Forbidden,
    /// Several senders used the id in the room, and the request named none of them.
    Ambiguous,
    NotFound,
    Unavailable,
}

impl NotDeleted {
    pub fn code(self) -> ErrorCode {
        match self {
            Self::Forbidden => ErrorCode::Forbidden,
            Self::Ambiguous => ErrorCode::Conflict,
            Self::NotFound => ErrorCode::NotFound,
            Self::Unavailable => ErrorCode::Unavailable,
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            Self::Forbidden => {
                "only its author, the room's owner or moderators, or an admin may delete it"
            }
            Self::Ambiguous => "several senders used this id here: name the sender with from",
            Self::NotFound => "no such message in this room",
            Self::Unavailable => "the message store is unavailable; retry later",
        }
    }
}

/// Soft-deletes a stored message if the caller may (its author, the room's owner or a moderator,
/// an admin), and tells the room with `message_deleted`. The rules of WebSocket `delete` and of
/// `DELETE .../messages/{id}` alike.
pub async fn delete_message(hub: &crate::hub::Hub, request: &Deletion) -> Result<(), NotDeleted> {
    let store = hub.store().ok_or(NotDeleted::NotFound)?;
    let write = Write::Delete {
        room: request.room.to_string(),
        id: request.message.clone(),
        sender: request.from.clone(),
        caller: request.user.to_string(),
        admin: request.admin,
        at: millis(SystemTime::now()),
    };
    match store.write(write).await {
        Ok(Outcome::Deleted { sender }) => {
            let frame = protocol::message_deleted_frame(&request.room, &request.message, &sender);
            hub.publish(Target::Room(request.room.clone()), frame);
            Ok(())
        }
        Ok(Outcome::Forbidden) => Err(NotDeleted::Forbidden),
        Ok(Outcome::Ambiguous) => Err(NotDeleted::Ambiguous),
        Ok(_) => Err(NotDeleted::NotFound),
        Err(_) => Err(NotDeleted::Unavailable),
    }
}

/// A WebSocket `delete`: its ack, or the error.
async fn delete(hub: &crate::hub::Hub, request: Deletion) -> Frame {
    let id = request.id.as_deref();
    match delete_message(hub, &request).await {
        Ok(()) => protocol::reply_frame(MessageType::Ack, id),
        Err(why) => protocol::error_frame(id, why.code(), why.message()),
    }
}
