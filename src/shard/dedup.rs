//! Idempotent send: the chat ids each user sent recently, so a retry is recognised.
//!
//! Owns: per user, a print of the `(room, id)` of its chats within `--dedup-window`, each pending
//! (handed to the store) or stored (committed and acked). Users are pinned to shards, so a user's
//! retries, from any of its connections, always reach this set. Bounded: at most [`PER_USER`] ids
//! per user, and entries older than the window go. Must not: send anything; the shard acks.

use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasher;
use std::time::{Duration, Instant};

use crate::mailbox::ConnId;
use crate::protocol::{Room, UserId};

/// The most recent chat ids remembered per user.
pub const PER_USER: usize = 1024;

/// A chat id in its room, as two 64-bit SipHash values under two random keys: 16 bytes however
/// long the id, and no copy of it kept. Two different ids of one user meet the same print with a
/// chance of about one in 2^118 per look-up at the cap (1,024 ids), far below a disk's undetected
/// error rate.
type Print = [u64; 2];

/// What the set knows of a chat id.
#[derive(Debug, PartialEq, Eq)]
pub enum Seen {
    /// Never seen (or too long ago): a new message.
    New,
    /// Handed to the store, not committed yet: the retry is acked with the original.
    Pending,
    /// Committed (with its seq, when it has one): the retry is acked at once.
    Stored(Option<u64>),
}

#[derive(Debug, Clone, Copy)]
enum State {
    /// Waiting for the commit; the connections to ack then are in [`UserIds::waiting`].
    Pending,
    Stored(Option<u64>),
}

#[derive(Debug, Default)]
struct UserIds {
    order: VecDeque<(Instant, Print)>,
    states: HashMap<Print, State>,
    /// The pending ids' connections to ack at the commit (the sender's, and retries'): a handful,
    /// for the length of a commit.
    waiting: Vec<(Print, Vec<ConnId>)>,
}

impl UserIds {
    fn expire(&mut self, now: Instant, window: Duration) {
        while let Some((at, _)) = self.order.front() {
            if now.saturating_duration_since(*at) < window && self.order.len() <= PER_USER {
                break;
            }
            let (_, print) = self.order.pop_front().expect("checked above");
            if let Some(State::Pending) = self.states.remove(&print) {
                self.take_waiting(&print);
            }
        }
    }

    fn take_waiting(&mut self, print: &Print) -> Vec<ConnId> {
        match self.waiting.iter().position(|(p, _)| p == print) {
            Some(at) => self.waiting.swap_remove(at).1,
            None => Vec::new(),
        }
    }
}

#[derive(Debug)]
pub struct Dedup {
    window: Duration,
    users: HashMap<UserId, UserIds>,
    last_sweep: Instant,
    keys: [std::collections::hash_map::RandomState; 2],
}

impl Dedup {
    pub fn new(window: Duration) -> Self {
        let keys = [Default::default(), Default::default()];
        Self { window, users: HashMap::new(), last_sweep: Instant::now(), keys }
    }

    fn print(&self, room: &Option<Room>, id: &str) -> Print {
        self.keys.each_ref().map(|key| key.hash_one((room, id)))
    }

    /// Looks `id` up for `user` in `room`; a pending one records `conn` to be acked at its commit.
    pub fn check(
        &mut self,
        user: &UserId,
        room: &Option<Room>,
        id: &str,
        conn: ConnId,
        now: Instant,
    ) -> Seen {
        let print = self.print(room, id);
        let Some(ids) = self.users.get_mut(user) else { return Seen::New };
        ids.expire(now, self.window);
        match ids.states.get(&print) {
            None => Seen::New,
            Some(State::Stored(seq)) => Seen::Stored(*seq),
            Some(State::Pending) => {
                match ids.waiting.iter_mut().find(|(p, _)| *p == print) {
                    Some((_, conns)) => conns.push(conn),
                    None => ids.waiting.push((print, vec![conn])),
                }
                Seen::Pending
            }
        }
    }

    /// Records a new chat handed to the store, to be acked to `conn` at its commit.
    pub fn pending(
        &mut self,
        user: &UserId,
        room: &Option<Room>,
        id: &str,
        conn: ConnId,
        now: Instant,
    ) {
        let print = self.print(room, id);
        let ids = self.users.entry(user.clone()).or_default();
        ids.order.push_back((now, print));
        ids.states.insert(print, State::Pending);
        ids.take_waiting(&print);
        ids.waiting.push((print, vec![conn]));
        ids.expire(now, self.window);
    }

    /// Marks a chat committed; the connections waiting for its ack (empty when it is not pending
    /// here, e.g. it expired before the commit came back).
    pub fn stored(
        &mut self,
        user: &UserId,
        room: &Option<Room>,
        id: &str,
        seq: Option<u64>,
    ) -> Vec<ConnId> {
        let print = self.print(room, id);
        let Some(ids) = self.users.get_mut(user) else { return Vec::new() };
        match ids.states.get_mut(&print) {
            Some(state @ State::Pending) => {
                *state = State::Stored(seq);
                ids.take_waiting(&print)
            }
            Some(State::Stored(_)) | None => Vec::new(),
        }
    }

    /// Forgets a chat that was refused (so a retry is a new message); the connections that waited.
    pub fn forget(&mut self, user: &UserId, room: &Option<Room>, id: &str) -> Vec<ConnId> {
        let print = self.print(room, id);
        let Some(ids) = self.users.get_mut(user) else { return Vec::new() };
        match ids.states.remove(&print) {
            Some(State::Pending) => ids.take_waiting(&print),
            _ => Vec::new(),
        }
    }

    /// Drops expired entries of every user, and rebuilds each one's table, at most once a quarter
    /// window.
    pub fn sweep(&mut self, now: Instant) {
        if now.saturating_duration_since(self.last_sweep) < self.window / 4 {
            return;
        }
        self.last_sweep = now;
        let window = self.window;
        self.users.retain(|_, ids| {
            ids.expire(now, window);
            // Rebuilt, not kept: a busy sender's table only churns (each new id evicts the oldest),
            // and the removals' tombstones would fill it until the hash table doubles, holding
            // the room of twice the ids for good.
            ids.states = std::mem::take(&mut ids.states).into_iter().collect();
            !ids.order.is_empty()
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_retry_is_pending_until_the_commit_then_stored_until_the_window_ends() {
        let (user, room): (UserId, Option<Room>) = ("alice".into(), Some("r".into()));
        let window = Duration::from_secs(300);
        let start = Instant::now();
        let mut dedup = Dedup::new(window);
        assert_eq!(dedup.check(&user, &room, "m1", 1, start), Seen::New);
        dedup.pending(&user, &room, "m1", 1, start);
        assert_eq!(
            dedup.check(&user, &room, "m1", 2, start),
            Seen::Pending,
            "a retry on another device"
        );
        assert_eq!(
            dedup.check(&user, &None, "m1", 2, start),
            Seen::New,
            "another room, another message"
        );
        assert_eq!(dedup.stored(&user, &room, "m1", Some(7)), vec![1, 2], "both are acked");
        assert_eq!(dedup.check(&user, &room, "m1", 3, start), Seen::Stored(Some(7)));
        dedup.pending(&user, &room, "m2", 1, start);
        assert_eq!(dedup.forget(&user, &room, "m2"), vec![1], "refused: told, then forgotten");
        assert_eq!(dedup.check(&user, &room, "m2", 1, start), Seen::New);
        let later = start + window;
        assert_eq!(dedup.check(&user, &room, "m1", 3, later), Seen::New, "the window has passed");
    }

    #[test]
    fn a_user_remembers_at_most_its_last_ids() {
        let (user, now) = (UserId::from("bob"), Instant::now());
        let mut dedup = Dedup::new(Duration::from_secs(300));
        for n in 0..PER_USER + 10 {
            dedup.pending(&user, &None, &n.to_string(), 1, now);
        }
        assert_eq!(dedup.check(&user, &None, "0", 1, now), Seen::New, "the oldest were let go");
        assert_eq!(dedup.check(&user, &None, &(PER_USER + 9).to_string(), 1, now), Seen::Pending);
        dedup.sweep(now + Duration::from_secs(301));
        assert!(dedup.users.is_empty(), "a sweep drops users whose ids all expired");
    }

    #[test]
    fn a_busy_senders_set_keeps_its_size_however_long_it_churns() {
        // The soak's case: a user at its cap for half an hour. Each new id evicts the oldest; the
        // removals leave tombstones in the hash table, which would make it double once they
        // fill it (the soak's instances grew ~150 KiB per such user after ~20 minutes).
        let (user, window) = (UserId::from("bot"), Duration::from_secs(300));
        let (mut dedup, start) = (Dedup::new(window), Instant::now());
        let mut most = 0;
        for n in 0..200 * PER_USER {
            let now = start + Duration::from_millis(n as u64 * 60);
            let (room, id) = (Some("r".into()), format!("c7-{n}"));
            dedup.pending(&user, &room, &id, 1, now);
            dedup.stored(&user, &room, &id, Some(n as u64));
            dedup.sweep(now);
            most = most.max(dedup.users[&user].states.capacity());
        }
        assert!(most < 2 * PER_USER, "the table grew to {most} entries for {PER_USER} ids");
    }

    #[test]
    fn an_id_costs_the_same_few_bytes_however_long_it_is() {
        // At the cap a user holds 1,024 of each, in a table of 2,048 places: ~96 KiB, where the
        // ids themselves, kept twice, made it ~250 KiB (the soak's heap profile).
        assert!(std::mem::size_of::<(Instant, Print)>() <= 32);
        assert!(std::mem::size_of::<(Print, State)>() <= 32);
        let (user, now) = (UserId::from("carol"), Instant::now());
        let mut dedup = Dedup::new(Duration::from_secs(300));
        let long = "x".repeat(4096);
        dedup.pending(&user, &None, &long, 1, now);
        assert_eq!(dedup.check(&user, &None, &long, 2, now), Seen::Pending);
        assert_eq!(dedup.check(&user, &None, &long[1..], 2, now), Seen::New, "one byte less");
        assert_eq!(dedup.stored(&user, &None, &long, None), vec![1, 2]);
        assert!(dedup.users[&user].waiting.is_empty(), "nothing waits once it is stored");
    }
}
