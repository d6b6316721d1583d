//! A chat that replies to a message (`data.reply_to`) or carries files (`data.attachments`): the
//! message and the files are looked up in the store off the shard (the connection's later frames
//! wait, so they keep their order), then the chat goes on like any other, its files described in
//! its data, or is refused with why. Deleted messages may be replied to.
//!
//! Owns: nothing; the order of the connection's frames is `order.rs`'s. Must not: wait on the store
//! on the shard's thread.

use super::Shard;
use crate::attachments;
use crate::events;
use crate::hub::Hub;
use crate::mailbox::{ConnId, Delivery};
use crate::protocol::{self, Chat, ErrorCode, Room, UserId};

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
        tokio::spawn(async move {
            let mut chat = Box::new(chat);
            let refused = checked(&hub, &room, &user, &mut chat).await.err();
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
        refused: Option<(ErrorCode, String)>,
    ) {
        let Some((user, _)) = self.who(conn) else { return self.order.forget(conn) };
        let frame = match refused {
            None => self.chat_accepted(conn, id.as_deref(), user, chat),
            Some((code, message)) => Some(self.chat_refused(id.as_deref(), code, &message)),
        };
        if let Some(frame) = frame {
            self.reply(conn, frame);
        }
        self.answered(conn);
    }
}

/// Whether a chat's data names files (`"attachments"`): such a chat is checked before it goes on.
pub(super) fn names_files(chat: &Chat) -> bool {
    chat.room.is_some() && chat.data.get().contains("\"attachments\"")
}

/// A chat's reply target and files, checked against the store; its files' descriptions take the
/// place of their ids in its data.
async fn checked(
    hub: &Hub,
    room: &Room,
    user: &UserId,
    chat: &mut Chat,
) -> Result<(), (ErrorCode, String)> {
    if let Some(reply_to) = &chat.reply_to {
        let checked = events::reply_target(hub, room, reply_to, user).await;
        checked.map_err(|(code, message)| (code, message.to_owned()))?;
    }
    if names_files(chat) {
        let refused = |why: attachments::Refused| (why.code, why.message);
        let ids = attachments::named(&chat.data).map_err(refused)?;
        let files = attachments::carried(hub, room, user, &ids).await.map_err(refused)?;
        chat.data = attachments::described(&chat.data, &files).map_err(refused)?;
    }
    Ok(())
}
