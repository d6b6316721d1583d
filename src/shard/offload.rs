//! Work a shard hands to a task of its own because it waits: on the store (room access, history,
//! deletes, through [`crate::messages`]) or on Redis (cluster presence).
//!
//! Owns: nothing; each task reads what it needs and sends its answer back to the shard as a
//! delivery (`Reply`, `JoinDecided`), so the frame goes out through the shard's output in order
//! with the rest and a full outbox still evicts. Must not: touch the shard's cache.

use super::Shard;
use crate::events::{self, Deletion, Edit, Reaction};
use crate::hub::Hub;
use crate::mailbox::{ConnId, Delivery};
use crate::messages::{read_history, tell_added, History};
use crate::moderation;
use crate::protocol::{self, ErrorCode, Frame, Room, Since, UserId};
use crate::rooms::{self, Access};

/// The error frame answering a refused read or join.
fn refusal(id: Option<&str>, room: &str, access: Access) -> Frame {
    let (code, message) = access.refusal(room).expect("only refusals are answered with an error");
    protocol::error_frame(id, code, &message)
}

/// A refused resume is a bad request (a room the client may not join has no stream for it).
pub fn resume_refusal(id: Option<&str>, room: &str, access: Access) -> Frame {
    match access {
        Access::Unavailable => refusal(id, room, access),
        _ => {
            let message = format!("since names room {room}, which this user may not join");
            protocol::error_frame(id, ErrorCode::BadRequest, &message)
        }
    }
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
            let (access, added) = rooms::may_join(store, &room, &user, admin).await;
            if let Some(added) = added {
                tell_added(&hub, &added);
            }
            let decision = match access {
                Access::Allowed => Ok(()),
                access if since.is_some() => Err(resume_refusal(id.as_deref(), &room, access)),
                access => Err(refusal(id.as_deref(), &room, access)),
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

    /// Deletes or edits a stored message if the user may (a room event: the room is told).
    pub(super) fn offload_change(&self, conn: ConnId, change: Change) {
        let (hub, shard) = (self.hub.clone(), self.id);
        tokio::spawn(async move {
            let (id, changed) = match &change {
                Change::Delete(request) => {
                    (&request.id, events::delete_message(&hub, request).await)
                }
                Change::Edit(request) => (&request.id, events::edit_message(&hub, request).await),
                Change::React(request) => (&request.id, events::react(&hub, request).await),
            };
            let frame = match changed {
                Ok(seq) => protocol::ack_frame(id.as_deref(), Some(seq)),
                Err(why) => protocol::error_frame(id.as_deref(), why.code(), why.message()),
            };
            hub.router().deliver(shard, Delivery::Reply { conn, frame });
        });
    }
}

impl Shard {
    /// Marks a room read for the user, in the store.
    pub(super) fn offload_read(
        &self,
        conn: ConnId,
        id: Option<String>,
        user: UserId,
        room: Room,
        seq: u64,
    ) {
        let (hub, shard) = (self.hub.clone(), self.id);
        tokio::spawn(async move {
            let frame = match crate::messages::mark_read(&hub, &room, &user, seq).await {
                Ok(()) => protocol::ack_frame(id.as_deref(), None),
                Err((code, message)) => protocol::error_frame(id.as_deref(), code, &message),
            };
            hub.router().deliver(shard, Delivery::Reply { conn, frame });
        });
    }
}

impl Shard {
    /// A moderation request (mute, kick, ban, report, ...): acked once done, or refused.
    pub(super) fn offload_moderation(
        &self,
        conn: ConnId,
        id: Option<String>,
        (user, admin): (UserId, bool),
        room: Room,
        request: protocol::Moderate,
    ) {
        let (hub, shard) = (self.hub.clone(), self.id);
        tokio::spawn(async move {
            let actor = moderation::Actor { user: Some(user), admin };
            let done = match moderation::requested(room, request) {
                Ok(action) => moderation::act(&hub, &actor, action).await,
                Err(refused) => Err(refused),
            };
            let frame = match done {
                Ok(()) => protocol::ack_frame(id.as_deref(), None),
                Err(why) => protocol::error_frame(id.as_deref(), why.code, &why.message),
            };
            hub.router().deliver(shard, Delivery::Reply { conn, frame });
        });
    }
}

/// A change to a stored message a connection asked for.
#[derive(Debug)]
pub(super) enum Change {
    Delete(Deletion),
    Edit(Edit),
    React(Reaction),
}

/// A WebSocket `history`: the page, or the error.
async fn history(hub: &Hub, request: &History) -> Frame {
    let (id, room) = (request.id.as_deref(), &request.room);
    match read_history(hub, request).await {
        Ok((frames, next)) => protocol::history_frame(id, room, &frames, next),
        Err(access) => refusal(id, room, access),
    }
}
