//! A shard's answers to its connections' requests: chat, join, leave, presence, history, delete,
//! ping, refresh.
//!
//! Owns: the rules of each request (rate limit before membership, the join permission, the replies
//! and their error codes). May touch: the shard's cache and output, like the rest of the shard. Must
//! not: write into an outbox except through the shard's [`super::Output`], so a full one evicts.

use std::time::Instant;

use super::dedup::Seen;
use super::limits::Pace;
use super::offload::Change;
use super::order::Admit;
use super::Shard;
use crate::auth::Permissions;
use crate::close;
use crate::events::{Deletion, Edit, Reaction};
use crate::mailbox::{ConnId, Delivery, Origin, Target, ToSequence};
use crate::messages::History;
use crate::metrics::UnavailableCause;
use crate::protocol::{
    self, Action, Chat, ClientRequest, ErrorCode, Frame, MessageType, Room, UserId,
};
use crate::rules::Refusal;

/// `{"type":"ack","id":...}`, when the client gave an id to acknowledge.
pub(super) fn ack(id: Option<&str>) -> Option<Frame> {
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
        if request.action.shows_presence() {
            self.shows_presence(conn);
        }
        match self.order.admit(conn, request) {
            Admit::Now(request) => self.take_request(conn, request),
            Admit::Held => {}
            Admit::Full(request) => {
                let message = "too many requests waiting for an answer: slow down";
                let refused =
                    protocol::error_frame(request.id.as_deref(), ErrorCode::RateLimited, message);
                self.reply(conn, refused);
            }
        }
    }

    fn take_request(&mut self, conn: ConnId, request: ClientRequest) {
        let ClientRequest { id, action } = request;
        if let Some(frame) = self.answer_request(conn, id.as_deref(), action) {
            self.reply(conn, frame);
        }
    }

    /// Takes the requests `conn` held back that may go now, in order.
    pub(super) fn take_held(&mut self, conn: ConnId) {
        while let Some(request) = self.order.next(conn) {
            if self.cache.get(conn).is_none() {
                return self.order.forget(conn);
            }
            self.take_request(conn, request);
        }
    }

    /// The answer `conn` waited for came (or will not come): its held requests go on.
    pub(super) fn answered(&mut self, conn: ConnId) {
        self.order.answered(conn);
        self.take_held(conn);
    }

    /// The immediate answer to a request, if any (an offloaded one is answered later).
    fn answer_request(&mut self, conn: ConnId, id: Option<&str>, action: Action) -> Option<Frame> {
        match action {
            Action::Chat(chat) => self.chat(conn, id, *chat),
            Action::Join(room) => self.request_join(conn, id, room, None),
            Action::Resume { room, since } => self.request_join(conn, id, room, Some(since)),
            Action::History { room, limit, page } => {
                let (user, admin) = self.who_asks(conn)?;
                let id = id.map(str::to_owned);
                self.order.awaits_answer(conn);
                self.offload_history(conn, History { id, room, user, admin, limit, page });
                None
            }
            Action::Delete { room, id: message, from } => {
                let (user, admin) = self.who_asks(conn)?;
                let id = id.map(str::to_owned);
                self.order.awaits_answer(conn);
                self.offload_change(
                    conn,
                    Change::Delete(Deletion { id, room, message, from, user, admin }),
                );
                None
            }
            Action::Edit { room, id: message, content } => {
                let (user, _) = self.who_asks(conn)?;
                let id = id.map(str::to_owned);
                self.order.awaits_answer(conn);
                self.offload_change(conn, Change::Edit(Edit { id, room, message, content, user }));
                None
            }
            Action::Leave(room) if self.cache.is_member(conn, &room) => {
                self.leave(conn, &room);
                ack(id)
            }
            Action::Leave(room) => Some(not_member(id, &room)),
            Action::Presence { room, after } => {
                self.order.awaits_answer(conn);
                self.offload_presence(conn, id.map(str::to_owned), room, after);
                None
            }
            Action::Ping => Some(protocol::reply_frame(MessageType::Pong, id)),
            Action::Active => ack(id),
            Action::Typing { room, typing } if self.cache.is_member(conn, &room) => {
                let (user, _) = self.who_asks(conn)?;
                self.typing(user, room, typing);
                ack(id)
            }
            Action::Typing { room, .. } => Some(not_member(id, &room)),
            Action::Read { room, seq } => {
                let (user, _) = self.who_asks(conn)?;
                self.order.awaits_answer(conn);
                self.offload_read(conn, id.map(str::to_owned), user, room, seq);
                None
            }
            Action::Moderate { room, request } => {
                let (user, admin) = self.who_asks(conn)?;
                self.order.awaits_answer(conn);
                self.offload_moderation(conn, id.map(str::to_owned), (user, admin), room, *request);
                None
            }
            // Any message the user may read, in a room it joined or not (events::react asks).
            Action::React { room, id: message, from, emoji, remove } => {
                let (user, _) = self.who_asks(conn)?;
                let id = id.map(str::to_owned);
                self.order.awaits_answer(conn);
                let reaction = Reaction { id, room, message, from, emoji, remove, user };
                self.offload_change(conn, Change::React(reaction));
                None
            }
        }
    }

    /// The user of a cached connection and whether it is an admin.
    fn who_asks(&self, conn: ConnId) -> Option<(UserId, bool)> {
        let connection = self.cache.get(conn)?;
        Some((connection.user.clone(), connection.permissions.admin))
    }

    /// Queues `frame` for one local connection through the output (held while a commit is
    /// pending; a full outbox marks the connection for eviction).
    pub(super) fn reply(&mut self, conn: ConnId, frame: Frame) {
        let Some(connection) = self.cache.get(conn) else { return };
        self.out.send_to(conn, &connection.outbox, frame, self.hub.metrics().shard(self.id));
    }

    /// The user and address of a cached connection, for the rules and the audit log.
    pub(super) fn who(&self, conn: ConnId) -> Option<(UserId, std::net::SocketAddr)> {
        self.cache.get(conn).map(|connection| (connection.user.clone(), connection.remote.into()))
    }

    fn chat(&mut self, conn: ConnId, id: Option<&str>, chat: Chat) -> Option<Frame> {
        let (user, remote) = self.who(conn)?;
        match self.limits.check(&user, Instant::now()) {
            Pace::Flooding => {
                tracing::warn!(target: "audit", event = "rate_limit_close", %user, %remote);
                self.remove(conn, Some(&close::FLOODING));
                return None;
            }
            Pace::Refused => {
                let message = "too many messages: slow down";
                return Some(self.chat_refused(id, ErrorCode::RateLimited, message));
            }
            Pace::Allowed => {}
        }
        if let Some(room) = chat.room.as_ref().filter(|room| !self.cache.is_member(conn, room)) {
            self.counters().labelled.chat_refused(ErrorCode::NotMember);
            return Some(not_member(id, room));
        }
        // Without a store there is nothing to look up (and no file to carry).
        let stored = self.hub.store().is_some();
        if stored && (chat.reply_to.is_some() || super::replies::names_files(&chat)) {
            return self.check_reply(conn, id, user, chat);
        }
        self.chat_accepted(conn, id, user, chat)
    }

    /// The error a chat is refused with, counted.
    pub(super) fn chat_refused(&self, id: Option<&str>, code: ErrorCode, message: &str) -> Frame {
        self.counters().labelled.chat_refused(code);
        protocol::error_frame(id, code, message)
    }

    /// A chat the rules let through (and whose reply target is checked): sent on, or refused while
    /// the broker shuts down.
    pub(super) fn chat_accepted(
        &mut self,
        conn: ConnId,
        id: Option<&str>,
        user: UserId,
        chat: Chat,
    ) -> Option<Frame> {
        if self.quiescing {
            let message = "the broker is shutting down; resend after reconnecting";
            self.count_unavailable(UnavailableCause::ShuttingDown);
            return Some(self.chat_refused(id, ErrorCode::Unavailable, message));
        }
        match chat.room.clone() {
            Some(room) => self.chat_send_home(conn, id, user, room, chat),
            _ if self.hub.store().is_none() => {
                let frame = chat.frame(&user);
                self.publish(chat.room.map_or(Target::All, Target::Room), frame);
                self.counters().labelled.chat_accepted();
                ack(id)
            }
            _ => self.store_for_everyone(conn, id, user, chat),
        }
    }

    /// Looks a chat id up; `Err` is the answer to a retry (an ack now, or `None`: at the original's
    /// commit). A new id is recorded as pending.
    pub(super) fn first_time(
        &mut self,
        conn: ConnId,
        id: Option<&str>,
        user: &UserId,
        room: &Option<Room>,
    ) -> Result<(), Option<Frame>> {
        let Some(id) = id else { return Ok(()) };
        let now = Instant::now();
        match self.dedup.check(user, room, id, conn, now) {
            Seen::Stored(seq) => Err(Some(protocol::ack_frame(Some(id), seq))),
            Seen::Pending => Err(None),
            Seen::New => {
                self.dedup.pending(user, room, id, conn, now);
                Ok(())
            }
        }
    }

    /// A room chat goes to the room's home shard, which numbers, stores and publishes it; the ack
    /// (with the seq) comes once it is in.
    fn chat_send_home(
        &mut self,
        conn: ConnId,
        id: Option<&str>,
        user: UserId,
        room: Room,
        chat: Chat,
    ) -> Option<Frame> {
        if let Err(answer) = self.first_time(conn, id, &user, &Some(room.clone())) {
            return answer;
        }
        let admin = self.cache.get(conn).is_some_and(|c| c.permissions.admin);
        let origin = Origin::Connection { shard: self.id, conn, acked: id.is_some(), admin };
        if id.is_some() {
            self.order.chat_sent(conn);
        }
        let Chat { id: message, data, at, .. } = chat;
        let kind = MessageType::Chat;
        self.send_home(ToSequence { room, id: message, sender: user, kind, data, at, origin });
        None
    }

    /// A chat is in (committed, or numbered without a store), told to the room's home (or to a
    /// global chat's sender's shard): its sender's shard acks it (`Delivery::Stored`), after this
    /// home's fan-out of it (and, in cluster mode, once this home has heard it, [`super::unheard`]).
    pub(super) fn on_committed(
        &mut self,
        conn: ConnId,
        user: UserId,
        room: Option<Room>,
        id: String,
        seq: Option<u64>,
    ) {
        if let Some(room) = &room {
            if let Some(seq) = seq {
                self.on_room_committed(room, seq);
            }
            self.note_unread(room);
        }
        let owner = self.hub.router().shard_of_user(&user);
        let waits = match (&room, seq) {
            (Some(room), Some(seq)) => self.awaits_hearing(room, seq).then(|| (room.clone(), seq)),
            _ => None,
        };
        let stored = Delivery::Stored { conn, user, room, id, seq };
        match waits {
            Some((room, seq)) => self.unheard.park(room, seq, owner, stored),
            None => self.release_answer(owner, stored),
        }
    }

    /// A chat of `user` is in: ack it (with its seq) to its connection and every retry that waited.
    pub(super) fn on_stored(
        &mut self,
        conn: ConnId,
        user: &UserId,
        room: Option<Room>,
        id: String,
        seq: Option<u64>,
    ) {
        let mut waiting = self.dedup.stored(user, &room, &id, seq);
        if waiting.is_empty() {
            waiting.push(conn);
        }
        self.counters().labelled.chat_accepted();
        for conn in waiting {
            self.reply(conn, protocol::ack_frame(Some(&id), seq));
        }
        self.order.chat_done(conn);
        self.take_held(conn);
    }

    /// The room's home could not take a chat: its sender (and any retry) hears why, or
    /// `unavailable`.
    pub(super) fn on_refused(
        &mut self,
        conn: ConnId,
        user: &UserId,
        room: Room,
        id: String,
        why: Option<Refusal>,
    ) {
        let mut waiting = self.dedup.forget(user, &Some(room.clone()), &id);
        if waiting.is_empty() {
            waiting.push(conn);
        }
        let message = protocol::STORE_UNAVAILABLE;
        let code = why.as_ref().map_or(ErrorCode::Unavailable, Refusal::code);
        self.counters().labelled.chat_refused(code);
        let frame = match why {
            Some(why) => why.frame(Some(&id), &room),
            None => protocol::error_frame(Some(&id), ErrorCode::Unavailable, message),
        };
        for conn in waiting {
            self.reply(conn, frame.clone());
        }
        self.order.chat_done(conn);
        self.take_held(conn);
    }

    /// A verified `refresh`: the new permissions replace the old, and the client gets its ack.
    pub(super) fn reauthorize(&mut self, conn: ConnId, id: Option<&str>, permissions: Permissions) {
        let Some(connection) = self.cache.get_mut(conn) else { return };
        connection.permissions = permissions;
        self.reply(conn, protocol::reply_frame(MessageType::Ack, id));
    }
}
