//! A connection's frames take effect in the order it sent them.
//!
//! Owns: per connection that has something in flight, what holds its later requests back, and the
//! requests held. Two things hold a connection: an answer it waits for off the shard (a join asking
//! the store, a resume asking the room's home, a subscription in cluster mode, a history read, a
//! delete, a presence query), and, for a request that reads or changes stored messages (history,
//! delete), its own chats not yet acked (committed). Must not: answer a request itself; the shard
//! takes each released request as if it had just arrived.
//!
//! So a leave sent right after a join leaves the room the join entered, a chat right after a join is
//! in the room, and a history read or a delete right after a send sees the message.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};

use crate::mailbox::ConnId;
use crate::protocol::{Action, ClientRequest};

/// The most requests held behind one connection's answer; past it a request is refused with
/// `rate_limited` (the client sends faster than its requests can be answered).
pub(super) const MAX_HELD: usize = 256;

#[derive(Debug, Default)]
struct Waits {
    /// Answers awaited off the shard (more than one only for the rooms of a connect URL).
    answers: u32,
    /// Chats sent and not yet acked or refused.
    chats: u32,
    held: VecDeque<ClientRequest>,
}

impl Waits {
    fn lets_through(&self, request: &ClientRequest) -> bool {
        self.answers == 0 && (self.chats == 0 || !reads_stored(request))
    }

    fn is_idle(&self) -> bool {
        self.answers == 0 && self.chats == 0 && self.held.is_empty()
    }
}

/// A request whose answer depends on the stored messages (so on the sender's own chats before it):
/// a reply looks up the message it answers, which may be one of them.
fn reads_stored(request: &ClientRequest) -> bool {
    match &request.action {
        Action::History { .. } | Action::Delete { .. } | Action::Edit { .. } => true,
        Action::React { .. } | Action::Moderate { .. } => true,
        Action::Chat(chat) => chat.reply_to.is_some(),
        _ => false,
    }
}

/// What to do with a request that just arrived.
#[derive(Debug)]
pub(super) enum Admit {
    Now(ClientRequest),
    Held,
    /// Too many are held already: refuse it.
    Full(ClientRequest),
}

/// The connections of one shard with something in flight.
#[derive(Debug, Default)]
pub struct InOrder {
    conns: HashMap<ConnId, Waits>,
}

impl InOrder {
    pub(super) fn admit(&mut self, conn: ConnId, request: ClientRequest) -> Admit {
        let Some(waits) = self.conns.get_mut(&conn) else { return Admit::Now(request) };
        if waits.held.is_empty() && waits.lets_through(&request) {
            Admit::Now(request)
        } else if waits.held.len() >= MAX_HELD {
            Admit::Full(request)
        } else {
            waits.held.push_back(request);
            Admit::Held
        }
    }

    /// `conn` waits for an answer off the shard.
    pub(super) fn awaits_answer(&mut self, conn: ConnId) {
        self.conns.entry(conn).or_default().answers += 1;
    }

    /// `conn`'s answer came.
    pub(super) fn answered(&mut self, conn: ConnId) {
        self.update(conn, |waits| waits.answers = waits.answers.saturating_sub(1));
    }

    /// `conn` sent a chat that will be acked (or refused).
    pub(super) fn chat_sent(&mut self, conn: ConnId) {
        self.conns.entry(conn).or_default().chats += 1;
    }

    /// One of `conn`'s chats was acked or refused.
    pub(super) fn chat_done(&mut self, conn: ConnId) {
        self.update(conn, |waits| waits.chats = waits.chats.saturating_sub(1));
    }

    fn update(&mut self, conn: ConnId, change: impl FnOnce(&mut Waits)) {
        if let Entry::Occupied(mut entry) = self.conns.entry(conn) {
            change(entry.get_mut());
            if entry.get().is_idle() {
                entry.remove();
            }
        }
    }

    /// The next held request of `conn` that may go now.
    pub(super) fn next(&mut self, conn: ConnId) -> Option<ClientRequest> {
        let Entry::Occupied(mut entry) = self.conns.entry(conn) else { return None };
        let waits = entry.get_mut();
        if !waits.lets_through(waits.held.front()?) {
            return None;
        }
        let request = waits.held.pop_front()?;
        if entry.get().is_idle() {
            entry.remove();
        }
        Some(request)
    }

    /// Whether a chat of any connection is still waiting for its ack.
    pub(super) fn chats_in_flight(&self) -> bool {
        self.conns.values().any(|waits| waits.chats > 0)
    }

    /// `conn` is gone.
    pub(super) fn forget(&mut self, conn: ConnId) {
        self.conns.remove(&conn);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Page, Room};

    fn request(action: Action) -> ClientRequest {
        ClientRequest { id: None, action }
    }

    fn history() -> ClientRequest {
        let page = Page::Before(None);
        request(Action::History { room: Room::from("r"), limit: 10, page })
    }

    #[test]
    fn an_awaited_answer_holds_every_later_request_in_order() {
        let mut order = InOrder::default();
        assert!(matches!(order.admit(1, request(Action::Ping)), Admit::Now(_)));
        order.awaits_answer(1);
        assert!(matches!(order.admit(1, request(Action::Leave(Room::from("a")))), Admit::Held));
        assert!(matches!(order.admit(1, request(Action::Ping)), Admit::Held));
        assert!(matches!(order.admit(2, request(Action::Ping)), Admit::Now(_)), "others go on");
        assert!(order.next(1).is_none(), "still waiting");
        order.answered(1);
        assert!(matches!(order.next(1).map(|r| r.action), Some(Action::Leave(_))));
        assert!(matches!(order.next(1).map(|r| r.action), Some(Action::Ping)));
        assert!(order.next(1).is_none() && order.conns.is_empty());
    }

    #[test]
    fn unacked_chats_hold_reads_of_the_store_and_what_follows_them() {
        let mut order = InOrder::default();
        order.chat_sent(1);
        assert!(matches!(order.admit(1, request(Action::Ping)), Admit::Now(_)), "not a read");
        assert!(matches!(order.admit(1, history()), Admit::Held));
        assert!(matches!(order.admit(1, request(Action::Ping)), Admit::Held), "behind the read");
        order.chat_done(1);
        assert!(matches!(order.next(1).map(|r| r.action), Some(Action::History { .. })));
        assert!(matches!(order.next(1).map(|r| r.action), Some(Action::Ping)));
        assert!(order.conns.is_empty());
    }

    #[test]
    fn a_connection_holds_at_most_max_held() {
        let mut order = InOrder::default();
        order.awaits_answer(1);
        for _ in 0..MAX_HELD {
            assert!(matches!(order.admit(1, request(Action::Ping)), Admit::Held));
        }
        assert!(matches!(order.admit(1, request(Action::Ping)), Admit::Full(_)));
        order.forget(1);
        assert!(order.conns.is_empty());
    }
}
