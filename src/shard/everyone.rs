//! Chats to everyone (no room) with a store: stored first, then fanned out, then acked.
//!
//! Owns: nothing of its own; the order of a chat to everyone's three steps. Such a chat has no
//! room, so no stream and no seq: it is not numbered by a home shard, and the sender's shard keeps
//! it until the writer says it is committed ([`Completion::Everyone`]). Then it publishes it to
//! every connection (every instance, in cluster mode) and acks it, as a room's home does for a
//! room message: nobody sees a message that history lacks, and the ack follows the fan-out. The
//! store says whether it stored the chat or found it stored already (a resend through another
//! instance, or after a restart, that this shard's dedup cannot know): only the first goes out.
//! May touch: the shard's dedup, order and output, like the rest of the shard.

use super::Shard;
use crate::mailbox::{ConnId, Target};
use crate::protocol::{self, Chat, ErrorCode, Frame, MessageType, Room, UserId, GLOBAL_ROOM};
use crate::store::ops::Write;
use crate::store::{Completion, NewMessage};

impl Shard {
    /// A chat to everyone, with a store: a retry is acked (now, or at the original's commit) and
    /// goes no further; a new chat is handed to the writer, to be published and acked at its
    /// commit ([`Shard::on_everyone_committed`]).
    pub(super) fn store_for_everyone(
        &mut self,
        conn: ConnId,
        id: Option<&str>,
        user: UserId,
        chat: Chat,
    ) -> Option<Frame> {
        if let Err(answer) = self.first_time(conn, id, &user, &None) {
            return answer;
        }
        let frame = chat.frame(&user);
        let Chat { id: message_id, data, at, .. } = chat;
        let acked = id.map(|_| (conn, user.clone(), message_id.clone()));
        let done = Completion::Everyone { shard: self.id, frame, acked };
        let message = NewMessage {
            id: message_id.clone(),
            room: Some(Room::from(GLOBAL_ROOM)),
            sender: user.clone(),
            kind: MessageType::Chat.as_str(),
            data: data.get().into(),
            created_at: at,
            metadata: None,
            stream: None,
            target: None,
        };
        let store = self.hub.store().expect("checked by the caller");
        if let Err(refused) = store.write(Write::Message(message), done) {
            self.dedup.forget(&user, &None, &message_id);
            self.count_store_refusal(refused.why);
            let message = protocol::STORE_UNAVAILABLE;
            return Some(self.chat_refused(id, ErrorCode::Unavailable, message));
        }
        if id.is_some() {
            self.order.chat_sent(conn);
        }
        None
    }

    /// A chat to everyone sent on this shard is committed: out to every connection if this was
    /// its `first` commit, then acked to its sender (and any retry that waited) when it has an id.
    /// A resend of one stored before (through another instance, or before a restart) is only
    /// acked: its first send went out at its own commit.
    pub(super) fn on_everyone_committed(
        &mut self,
        frame: Frame,
        acked: Option<(ConnId, UserId, String)>,
        first: bool,
    ) {
        if first {
            self.publish(Target::All, frame);
        }
        if let Some((conn, user, id)) = acked {
            self.on_committed(conn, user, None, id, None);
        }
    }
}
