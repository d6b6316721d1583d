//! A shard's answers to its connections' requests: chat, join, leave, presence, ping, refresh.
//!
//! Owns: the rules of each request (rate limit before membership, the join permission, the replies
//! and their error codes). May touch: the shard's cache and output, like the rest of the shard. Must
//! not: write into an outbox except through the shard's [`super::Output`], so a full one evicts.

use std::time::Instant;

use super::limits::Verdict;
use super::Shard;
use crate::auth::Permissions;
use crate::close;
use crate::mailbox::{ConnId, Delivery, Target};
use crate::protocol::{self, Action, ClientRequest, ErrorCode, Frame, MessageType, Room, UserId};

/// `{"type":"ack","id":...}`, when the client gave an id to acknowledge.
fn ack(id: Option<&str>) -> Option<Frame> {
    id.map(|id| protocol::reply_frame(MessageType::Ack, Some(id)))
}

fn not_member(id: Option<&str>, room: &Room) -> Frame {
    let message = format!("not a member of room {room}");
    protocol::error_frame(id, ErrorCode::NotMember, &message)
}

impl Shard {
    pub(super) fn on_request(&mut self, conn: ConnId, request: ClientRequest) {
        if self.cache.get(conn).is_none() {
            return;
        }
        self.cache.touch(conn, Instant::now());
        let ClientRequest { id, action } = request;
        let id = id.as_deref();
        let reply = match action {
            Action::Chat { room, frame } => self.chat(conn, id, room, frame),
            Action::Join(room) => self.request_join(conn, id, room),
            Action::Leave(room) if self.cache.is_member(conn, &room) => {
                self.leave(conn, &room);
                ack(id)
            }
            Action::Leave(room) => Some(not_member(id, &room)),
            Action::Presence(room) => {
                self.spawn_presence_answer(conn, id.map(str::to_owned), room);
                None
            }
            Action::Ping => Some(protocol::reply_frame(MessageType::Pong, id)),
        };
        if let Some(frame) = reply {
            self.reply(conn, frame);
        }
    }

    /// Queues `frame` for one local connection through the output (held while a commit is
    /// pending; a full outbox marks the connection for eviction).
    pub(super) fn reply(&mut self, conn: ConnId, frame: Frame) {
        let Some(connection) = self.cache.get(conn) else { return };
        self.out.send_to(conn, &connection.outbox, frame, self.hub.metrics().shard(self.id));
    }

    /// The user and address of a cached connection, for the rules and the audit log.
    fn who(&self, conn: ConnId) -> Option<(UserId, std::net::SocketAddr)> {
        self.cache.get(conn).map(|connection| (connection.user.clone(), connection.remote))
    }

    fn chat(
        &mut self,
        conn: ConnId,
        id: Option<&str>,
        room: Option<Room>,
        frame: Frame,
    ) -> Option<Frame> {
        let (user, remote) = self.who(conn)?;
        match self.limits.check(&user, Instant::now()) {
            Verdict::Flooding => {
                tracing::warn!(target: "audit", event = "rate_limit_close", %user, %remote);
                self.remove(conn, Some(close::FLOODING));
                return None;
            }
            Verdict::Refused => {
                let message = "too many messages: slow down";
                return Some(protocol::error_frame(id, ErrorCode::RateLimited, message));
            }
            Verdict::Allowed => {}
        }
        if let Some(room) = room.as_ref().filter(|room| !self.cache.is_member(conn, room)) {
            return Some(not_member(id, room));
        }
        self.publish(room.map_or(Target::All, Target::Room), frame);
        ack(id)
    }

    fn request_join(&mut self, conn: ConnId, id: Option<&str>, room: Room) -> Option<Frame> {
        let may_join = self.cache.get(conn)?.permissions.may_join(&room);
        if !may_join {
            let (user, remote) = self.who(conn)?;
            tracing::warn!(target: "audit", event = "forbidden_join", %user, %remote, %room);
            let message = format!("not allowed to join room {room}");
            return Some(protocol::error_frame(id, ErrorCode::Forbidden, &message));
        }
        self.join(conn, room);
        ack(id)
    }

    /// A verified `refresh`: the new permissions replace the old, and the client gets its ack.
    pub(super) fn reauthorize(&mut self, conn: ConnId, id: Option<&str>, permissions: Permissions) {
        let Some(connection) = self.cache.get_mut(conn) else { return };
        connection.permissions = permissions;
        self.reply(conn, protocol::reply_frame(MessageType::Ack, id));
    }

    /// Answers a presence query off the shard (it may ask Redis); the answer comes back to this
    /// shard as a [`Delivery::Reply`] and goes out through the output like every other frame.
    fn spawn_presence_answer(&self, conn: ConnId, id: Option<String>, room: Room) {
        let (hub, shard) = (self.hub.clone(), self.id);
        tokio::spawn(async move {
            let (users, _) = hub.room_users(&room).await;
            let away: Vec<UserId> =
                users.iter().filter(|(_, away)| *away).map(|(u, _)| u.clone()).collect();
            let names: Vec<UserId> = users.into_iter().map(|(u, _)| u).collect();
            let frame = protocol::presence_list_frame(id.as_deref(), &room, &names, &away);
            hub.router().deliver(shard, Delivery::Reply { conn, frame });
        });
    }
}
