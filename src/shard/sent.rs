//! Idempotent send across a restart (standalone, with a store): the ids a room's senders used
//! within `--dedup-window` before this start, read back with the room's stream.
//!
//! Owns: per room stream on its home shard, those ids and the seq each got, until the window
//! after the start has passed. Must not: grow: it holds what the load read (at most
//! [`crate::store::reads::MAX_SENT`] per room) and is dropped once the window is over; ids sent
//! since the start are the user's shard's ([`super::dedup`]).

use std::collections::HashMap;
use std::time::Instant;

use crate::mailbox::{Origin, ToSequence};

/// The ids used before this start, or nothing (none were, or the window is over).
#[derive(Debug, Default)]
pub struct SentBefore(Option<Box<Known>>);

#[derive(Debug)]
struct Known {
    until: Instant,
    /// `sender\nid` -> seq.
    seqs: HashMap<String, u64>,
}

fn key(sender: &str, id: &str) -> String {
    format!("{sender}\n{id}")
}

impl SentBefore {
    /// `sent` as the store gave it: (sender, id, seq); remembered until `until`.
    pub fn new(sent: Vec<(String, String, i64)>, until: Instant) -> Self {
        if sent.is_empty() {
            return Self::default();
        }
        let seqs = sent.into_iter().map(|(sender, id, seq)| (key(&sender, &id), seq as u64));
        Self(Some(Box::new(Known { until, seqs: seqs.collect() })))
    }

    /// The seq of the message `item` resends, when its client sent it before this start.
    pub fn seq_of(&mut self, item: &ToSequence, now: Instant) -> Option<u64> {
        let known = self.0.as_ref()?;
        if now >= known.until {
            self.0 = None;
            return None;
        }
        if !matches!(item.origin, Origin::Connection { acked: true, .. }) {
            return None;
        }
        known.seqs.get(&key(&item.sender, &item.id)).copied()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::protocol::{MessageType, Room, UserId};

    fn chat(sender: &str, id: &str, acked: bool) -> ToSequence {
        ToSequence {
            room: Room::from("r"),
            id: id.to_owned(),
            sender: UserId::from(sender),
            kind: MessageType::Chat,
            data: serde_json::value::RawValue::from_string("{}".into()).unwrap(),
            at: 0,
            origin: Origin::Connection { shard: 0, conn: 1, acked, admin: false },
        }
    }

    #[test]
    fn a_resend_of_an_id_sent_before_the_start_gets_its_seq_until_the_window_is_over() {
        let now = Instant::now();
        let sent = vec![("alice".to_owned(), "m1".to_owned(), 7)];
        let mut before = SentBefore::new(sent, now + Duration::from_secs(60));
        assert_eq!(before.seq_of(&chat("alice", "m1", true), now), Some(7));
        assert_eq!(before.seq_of(&chat("bob", "m1", true), now), None, "another sender's id");
        assert_eq!(before.seq_of(&chat("alice", "m1", false), now), None, "no client id");
        assert_eq!(before.seq_of(&chat("alice", "m1", true), now + Duration::from_secs(61)), None);
        assert!(before.0.is_none(), "forgotten once the window is over");
    }
}
