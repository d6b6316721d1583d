//! A chat that replies to a message (`data.reply_to`): the message is looked up in the store off
//! the shard (the connection's later frames wait, so they keep their order), then the chat goes on
//! like any other, or is refused with why. Deleted messages may be replied to.
//!
//! Owns: nothing; the order of the connection's frames is `order.rs`'s. Must not: wait on the store
//! on the shard's thread.

use super::Shard;
use crate::events;
use crate::mailbox::{ConnId, Delivery};
use crate::protocol::{self, Chat, ErrorCode, UserId};

impl Shard {
    /// Looks up the message `chat` replies to; the answer comes back as `Delivery::ReplyChecked`.
    pub(super) fn check_reply(
        &mut self,
        conn: ConnId,
        id: Option<&str>,
        user: UserId,
        chat: Chat,
    ) -> Option<protocol::Frame> {
        let room = chat.room.clone()?;
        self.order.awaits_answer(conn);
        let (hub, shard, id) = (self.hub.clone(), self.id, id.map(str::to_owned));
        let reply_to = chat.reply_to.clone().unwrap_or_default();
        tokio::spawn(async move {
            let refused = events::reply_target(&hub, &room, &reply_to, &user).await.err();
            let chat = Box::new(chat);
            hub.router().deliver(shard, Delivery::ReplyChecked { conn, id, chat, refused });
        });
        None
    }

    /// The looked-up reply goes on, or its sender hears why not; the connection's held frames
    /// follow.
    pub(super) fn on_reply_checked(
        &mut self,
        conn: ConnId,
        id: Option<String>,
        chat: Chat,
        refused: Option<(ErrorCode, &'static str)>,
    ) {
        let Some((user, _)) = self.who(conn) else { return self.order.forget(conn) };
        let frame = match refused {
            None => self.chat_accepted(conn, id.as_deref(), user, chat),
            Some((code, message)) => Some(protocol::error_frame(id.as_deref(), code, message)),
        };
        if let Some(frame) = frame {
            self.reply(conn, frame);
        }
        self.answered(conn);
    }
}
