//! The room directory: which shards hold members of which room, read without locks.
//!
//! Owns: the copy-on-write snapshot `room -> set of shards`, split into buckets that each sit behind
//! an `ArcSwap`. Publishers load a bucket (an atomic pointer load) to learn where to send a message.
//! May touch: nothing else. Must not: know connections or users; only shards write it, and each shard
//! writes only its own bit, once per batch of commands ([`RoomDirectory::apply`]).
//!
//! Splitting into buckets bounds what a commit copies: a transition copies one bucket, about
//! `rooms / BUCKETS` entries, never the whole map.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::protocol::Room;

/// Index of a shard. Shards are numbered `0..shard_count`.
pub type ShardId = usize;

/// The most shards a broker may run, the width of [`ShardSet`].
pub const MAX_SHARDS: usize = 64;

const BUCKETS: usize = 256;

/// A set of shard ids, as a bitmask.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ShardSet(u64);

impl ShardSet {
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn contains(self, shard: ShardId) -> bool {
        self.0 & (1 << shard) != 0
    }

    pub fn with(self, shard: ShardId) -> Self {
        Self(self.0 | (1 << shard))
    }

    pub fn without(self, shard: ShardId) -> Self {
        Self(self.0 & !(1 << shard))
    }

    pub fn iter(self) -> impl Iterator<Item = ShardId> {
        let mut bits = self.0;
        std::iter::from_fn(move || {
            if bits == 0 {
                return None;
            }
            let shard = bits.trailing_zeros() as ShardId;
            bits &= bits - 1;
            Some(shard)
        })
    }
}

/// A room's presence on one shard changed: it got its first local member, or lost its last.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub room: Room,
    pub present: bool,
}

type Bucket = HashMap<Room, ShardSet>;

/// The shared directory. Cheap to read from any thread; written by shards in batches.
pub struct RoomDirectory {
    buckets: Box<[ArcSwap<Bucket>]>,
    hasher: RandomState,
}

impl std::fmt::Debug for RoomDirectory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoomDirectory").field("rooms", &self.room_count()).finish()
    }
}

impl Default for RoomDirectory {
    fn default() -> Self {
        Self::new()
    }
}

impl RoomDirectory {
    pub fn new() -> Self {
        let buckets = (0..BUCKETS).map(|_| ArcSwap::from_pointee(Bucket::new())).collect();
        Self { buckets, hasher: RandomState::new() }
    }

    fn bucket_of(&self, room: &str) -> usize {
        (self.hasher.hash_one(room) as usize) % BUCKETS
    }

    /// The shards that held members of `room` at the last commit.
    pub fn shards_of(&self, room: &str) -> ShardSet {
        let bucket = self.buckets[self.bucket_of(room)].load();
        bucket.get(room).copied().unwrap_or_default()
    }

    /// Publishes `shard`'s room transitions: each touched bucket is copied and swapped once.
    /// Concurrent commits from other shards are merged by compare-and-swap (`rcu`), never lost.
    pub fn apply(&self, shard: ShardId, transitions: &[Transition]) {
        let mut by_bucket: Vec<(usize, &Transition)> = transitions
            .iter()
            .map(|transition| (self.bucket_of(&transition.room), transition))
            .collect();
        // Stable: a room that came and went within one batch keeps that order.
        by_bucket.sort_by_key(|(bucket, _)| *bucket);
        for group in by_bucket.chunk_by(|a, b| a.0 == b.0) {
            self.buckets[group[0].0].rcu(|current| {
                let mut next = Bucket::clone(current);
                for (_, transition) in group {
                    apply_one(&mut next, shard, transition);
                }
                next
            });
        }
    }

    /// How many rooms have members anywhere on this instance.
    pub fn room_count(&self) -> usize {
        self.buckets.iter().map(|bucket| bucket.load().len()).sum()
    }
}

fn apply_one(bucket: &mut Bucket, shard: ShardId, transition: &Transition) {
    let current = bucket.get(&transition.room).copied().unwrap_or_default();
    let next = if transition.present { current.with(shard) } else { current.without(shard) };
    if next.is_empty() {
        bucket.remove(&transition.room);
    } else {
        bucket.insert(Arc::clone(&transition.room), next);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transition(room: &str, present: bool) -> Transition {
        Transition { room: Arc::from(room), present }
    }

    #[test]
    fn shard_set_iterates_its_members_in_order() {
        let set = ShardSet::default().with(3).with(0).with(63);
        assert_eq!(set.iter().collect::<Vec<_>>(), vec![0, 3, 63]);
        assert!(set.without(3).contains(63) && !set.without(3).contains(3));
    }

    #[test]
    fn transitions_from_several_shards_merge_and_empty_rooms_disappear() {
        let directory = RoomDirectory::new();
        directory.apply(0, &[transition("a", true), transition("b", true)]);
        directory.apply(1, &[transition("a", true)]);
        assert_eq!(directory.shards_of("a").iter().collect::<Vec<_>>(), vec![0, 1]);
        assert_eq!(directory.room_count(), 2);
        directory.apply(0, &[transition("a", false), transition("b", false)]);
        assert_eq!(directory.shards_of("a").iter().collect::<Vec<_>>(), vec![1]);
        assert!(directory.shards_of("b").is_empty());
        assert_eq!(directory.room_count(), 1);
    }

    #[test]
    fn a_room_that_came_and_went_in_one_batch_ends_absent() {
        let directory = RoomDirectory::new();
        let many: Vec<Transition> = (0..500).map(|r| transition(&format!("r{r}"), true)).collect();
        directory.apply(2, &[many.clone(), vec![transition("r7", false)]].concat());
        assert!(directory.shards_of("r7").is_empty());
        assert!(directory.shards_of("r8").contains(2));
        assert_eq!(directory.room_count(), 499);
    }

    #[test]
    fn concurrent_commits_from_every_shard_are_all_kept() {
        let directory = Arc::new(RoomDirectory::new());
        let writers: Vec<_> = (0..8)
            .map(|shard| {
                let directory = Arc::clone(&directory);
                std::thread::spawn(move || {
                    for room in 0..200 {
                        directory.apply(shard, &[transition(&format!("room-{room}"), true)]);
                    }
                })
            })
            .collect();
        writers.into_iter().for_each(|w| w.join().unwrap());
        for room in 0..200 {
            assert_eq!(directory.shards_of(&format!("room-{room}")).iter().count(), 8);
        }
    }
}
