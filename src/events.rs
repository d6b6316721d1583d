//! Room events: the changes to a stored message (its author's edit, a deletion, a reaction), with
//! their rules,
//! shared by the REST API and the WebSocket requests (a shard offloads those here).
//!
//! Owns: who may change which message, and how a change becomes a room event. Must not: change a
//! row itself. An allowed change goes to the room's home like a message: it is numbered in the
//! room's stream (so a resume replays it in order), stored as its own row, and fanned out; the
//! store's writer applies it to the message in the same commit ([`crate::store::ops`]).

use std::time::{Duration, SystemTime};

use serde::Serialize;
use serde_json::value::RawValue;

use crate::hub::Hub;
use crate::mailbox::ToSequence;
use crate::protocol::{self, millis, ErrorCode, MessageType, Room, UserId};
use crate::rooms::{self, Access};
use crate::store::ops::{Answer, Found, Read, Write};

/// A `delete`: `message` (by `from`, where two senders used the id) in `room`, asked by `user`.
#[derive(Debug)]
pub struct Deletion {
    pub id: Option<String>,
    pub room: Room,
    pub message: String,
    pub from: Option<String>,
    pub user: UserId,
    pub admin: bool,
}

/// An `edit`: `user`'s own `message` in `room` gets `content`.
#[derive(Debug)]
pub struct Edit {
    pub id: Option<String>,
    pub room: Room,
    pub message: String,
    pub content: String,
    pub user: UserId,
}

/// A `react`: `user` adds (or, `remove`, takes back) `emoji` on `message` (by `from`).
#[derive(Debug)]
pub struct Reaction {
    pub id: Option<String>,
    pub room: Room,
    pub message: String,
    pub from: Option<String>,
    pub emoji: String,
    pub remove: bool,
    pub user: UserId,
}

/// Why a change did not happen (nothing changed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Only its author, the room's owners and moderators, or an admin may delete a message.
    NotDeletable,
    /// Only its author may edit a message.
    NotAuthor,
    /// The edit window is over (`--edit-window`), or editing is off.
    TooLate,
    /// Several senders used the id in the room, and the request named none of them.
    Ambiguous,
    /// No such message in the room (or it is deleted).
    NotFound,
    /// The user reacted with this emoji already.
    AlreadyReacted,
    /// The user has no such reaction to take back.
    NotReacted,
    /// The user may not read the room (a private or direct room it takes no part in).
    NoAccess,
    Unavailable,
}

impl Refused {
    pub fn code(self) -> ErrorCode {
        match self {
            Self::NotDeletable | Self::NotAuthor | Self::TooLate | Self::NoAccess => {
                ErrorCode::Forbidden
            }
            Self::Ambiguous | Self::AlreadyReacted => ErrorCode::Conflict,
            Self::NotFound | Self::NotReacted => ErrorCode::NotFound,
            Self::Unavailable => ErrorCode::Unavailable,
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            Self::NotDeletable => {
                "only its author, the room's owner or moderators, or an admin may delete it"
            }
            Self::NotAuthor => "only its author may edit a message",
            Self::TooLate => "this message can no longer be edited (--edit-window)",
            Self::Ambiguous => "several senders used this id here: name the sender with from",
            Self::NotFound => "no such message in this room",
            Self::AlreadyReacted => "you reacted to this message with this emoji already",
            Self::NotReacted => "you have no such reaction to this message",
            Self::NoAccess => "you may not read this room",
            Self::Unavailable => protocol::STORE_UNAVAILABLE,
        }
    }
}

/// Soft-deletes a stored message if the caller may (its author, the room's owner or a moderator,
/// an admin): a `message_deleted` event in the room's stream. The rules of WebSocket `delete` and of
/// `DELETE .../messages/{id}` alike.
pub async fn delete_message(hub: &Hub, request: &Deletion) -> Result<u64, Refused> {
    let (author, _, moderates) =
        target(hub, &request.room, &request.message, request.from.clone(), &request.user).await?;
    if author != request.user.as_ref() && !moderates && !request.admin {
        return Err(Refused::NotDeletable);
    }
    #[derive(Serialize)]
    struct Deleted<'a> {
        id: &'a str,
        from: &'a str,
    }
    let data = Deleted { id: &request.message, from: &author };
    let kind = MessageType::MessageDeleted;
    let deleted = publish(hub, &request.room, &request.user, kind, &data).await;
    if deleted.is_ok() {
        let (actor, room, message) = (&*request.user, &*request.room, &request.message);
        tracing::info!(target: "audit", event = "message_deleted", actor, room, message, author, moderated = author != actor);
    }
    deleted
}

/// Replaces the content of the caller's own message, within `--edit-window` of its sending: a
/// `message_edited` event in the room's stream.
pub async fn edit_message(hub: &Hub, request: &Edit) -> Result<u64, Refused> {
    let window = hub.settings().edit_window;
    if window.is_zero() {
        return Err(Refused::TooLate);
    }
    // Several senders used the id, none of them the caller: the caller has no message to edit.
    let found = target(hub, &request.room, &request.message, None, &request.user).await;
    let (author, sent_at, _) = found.map_err(|refused| match refused {
        Refused::Ambiguous => Refused::NotAuthor,
        refused => refused,
    })?;
    if author != request.user.as_ref() {
        return Err(Refused::NotAuthor);
    }
    let age = millis(SystemTime::now()).saturating_sub(sent_at);
    if Duration::from_millis(u64::try_from(age).unwrap_or(0)) > window {
        return Err(Refused::TooLate);
    }
    #[derive(Serialize)]
    struct Edited<'a> {
        id: &'a str,
        content: &'a str,
        edited_at: &'a str,
    }
    let at = millis(SystemTime::now());
    let edited_at = protocol::format_rfc3339(protocol::time_of(at));
    let data = Edited { id: &request.message, content: &request.content, edited_at: &edited_at };
    publish_at(hub, &request.room, &request.user, (MessageType::MessageEdited, at), &data).await
}

/// Adds or takes back the caller's reaction to a message in a room it is in: a `reaction_added` or
/// `reaction_removed` event in the room's stream. One reaction per user, message and emoji.
pub async fn react(hub: &Hub, request: &Reaction) -> Result<u64, Refused> {
    let store = hub.store().ok_or(Refused::NotFound)?;
    match rooms::may_read(store, &request.room, Some(&request.user), false).await {
        Access::Allowed => {}
        Access::Forbidden(_) => return Err(Refused::NoAccess),
        Access::NotFound => return Err(Refused::NotFound),
        Access::Unavailable => return Err(Refused::Unavailable),
    }
    let (author, _, _) =
        target(hub, &request.room, &request.message, request.from.clone(), &request.user).await?;
    let read = Read::Reacted {
        room: request.room.to_string(),
        sender: author.clone(),
        id: request.message.clone(),
        user: request.user.to_string(),
        emoji: request.emoji.clone(),
    };
    match (store.read(read).await, request.remove) {
        (Ok(Answer::Reacted(true)), false) => return Err(Refused::AlreadyReacted),
        (Ok(Answer::Reacted(false)), true) => return Err(Refused::NotReacted),
        (Ok(Answer::Reacted(_)), _) => {}
        _ => return Err(Refused::Unavailable),
    }
    #[derive(Serialize)]
    struct Reacted<'a> {
        id: &'a str,
        from: &'a str,
        emoji: &'a str,
    }
    let data = Reacted { id: &request.message, from: &author, emoji: &request.emoji };
    let kind =
        if request.remove { MessageType::ReactionRemoved } else { MessageType::ReactionAdded };
    publish(hub, &request.room, &request.user, kind, &data).await
}

/// The data each edit of `from`'s `message` replaced, oldest first, with when. The caller checked
/// who asks (the room's owners and moderators, admins).
pub async fn versions(
    hub: &Hub,
    room: &Room,
    message: &str,
    from: &str,
) -> Result<Vec<(String, SystemTime)>, Refused> {
    let store = hub.store().ok_or(Refused::NotFound)?;
    let read = Read::Versions { room: room.to_string(), sender: from.into(), id: message.into() };
    let Ok(Answer::Versions(versions)) = store.read(read).await else {
        return Err(Refused::Unavailable);
    };
    Ok(versions.into_iter().map(|(data, at)| (data, protocol::time_of(at))).collect())
}

/// The message a change is about: its author, when it was sent, and whether the caller is an
/// owner or moderator of the room. Without a store there is nothing to change.
pub(crate) async fn target(
    hub: &Hub,
    room: &Room,
    message: &str,
    sender: Option<String>,
    caller: &UserId,
) -> Result<(String, protocol::Millis, bool), Refused> {
    let store = hub.store().ok_or(Refused::NotFound)?;
    let (room, id, caller) = (room.to_string(), message.to_owned(), caller.to_string());
    let deleted_too = false;
    match store.read(Read::Target { room, id, sender, caller, deleted_too }).await {
        Ok(Answer::Target(Found::Message { author, created_at, caller_moderates })) => {
            Ok((author, created_at, caller_moderates))
        }
        Ok(Answer::Target(Found::Ambiguous)) => Err(Refused::Ambiguous),
        Ok(_) => Err(Refused::NotFound),
        Err(_) => Err(Refused::Unavailable),
    }
}

/// Whether the message a chat replies to (`reply_to`) is one of the room's, deleted or not: the
/// refusal's code and message when it is not (or several senders used the id).
pub async fn reply_target(
    hub: &Hub,
    room: &Room,
    reply_to: &str,
    caller: &UserId,
) -> Result<(), (ErrorCode, &'static str)> {
    let Some(store) = hub.store() else { return Ok(()) };
    let (room, id, caller) = (room.to_string(), reply_to.to_owned(), caller.to_string());
    let read = Read::Target { room, id, sender: None, caller, deleted_too: true };
    let mut found = store.read(read.clone()).await;
    if matches!(found, Ok(Answer::Target(Found::NotFound))) {
        // A message is fanned out before its commit: one just seen live may not be stored yet.
        // Every write handed over before the barrier is committed after it; look once more.
        let _ = store.write_and_wait(Write::Barrier).await;
        found = store.read(read).await;
    }
    match found {
        Ok(Answer::Target(Found::Message { .. })) => Ok(()),
        Ok(Answer::Target(Found::Ambiguous)) => {
            Err((ErrorCode::Conflict, "reply_to: several senders used this id in the room"))
        }
        Ok(_) => Err((ErrorCode::NotFound, "reply_to: no such message in this room")),
        Err(_) => Err((ErrorCode::Unavailable, protocol::STORE_UNAVAILABLE)),
    }
}

/// Hands a room event to the room's home, which numbers, stores and fans it out; its seq once
/// committed.
async fn publish(
    hub: &Hub,
    room: &Room,
    user: &UserId,
    kind: MessageType,
    data: &impl Serialize,
) -> Result<u64, Refused> {
    let at = millis(SystemTime::now());
    publish_at(hub, room, user, (kind, at), data).await
}

/// [`publish`] stamped `at` (the event's timestamp).
async fn publish_at(
    hub: &Hub,
    room: &Room,
    user: &UserId,
    (kind, at): (MessageType, protocol::Millis),
    data: &impl Serialize,
) -> Result<u64, Refused> {
    let data = serde_json::to_string(data).expect("an event's data serializes");
    let data = RawValue::from_string(data).expect("serialized JSON is JSON");
    let (room, sender, id) = (room.clone(), user.clone(), protocol::new_message_id());
    let item = move |origin| ToSequence { room, id, sender, kind, data, at, origin };
    hub.publish_in_room(item).await.ok_or(Refused::Unavailable)
}
