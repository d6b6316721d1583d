//! The router: the way into every shard, and the rule for which shards a target reaches.
//!
//! Owns: the sending ends of every shard's two inboxes and the room directory, fixed at start-up and
//! shared read-only (a clone is one `Arc`). It answers "which shards must see this?" and sends each of
//! them the frame once. May touch: shard inboxes (commands wait while the inbox is full, deliveries
//! never wait). Must not: hold connection state, or know the hub or the broker: the relay is handed a
//! router to fan incoming messages out exactly as local ones, and holds nothing else of this instance.

use std::collections::BTreeSet;
use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc;

use crate::directory::{RoomDirectory, ShardId, ShardSet};
use crate::mailbox::{Command, ConnId, Delivery, Inbox, Target};
use crate::protocol::{Frame, UserId};
use crate::rules::{Addressee, Notice};

/// Capacity of a shard's command inbox: how far readers and sessions may run ahead of their shard.
const COMMAND_INBOX: usize = 4096;

/// The sending ends of one shard's inboxes.
#[derive(Debug)]
struct ShardLink {
    commands: flume::Sender<Command>,
    deliveries: mpsc::UnboundedSender<Delivery>,
}

#[derive(Debug)]
struct Links {
    shards: Box<[ShardLink]>,
    directory: RoomDirectory,
}

/// A cheap, cloneable handle to every shard's inboxes and the room directory.
#[derive(Debug, Clone)]
pub struct Router(Arc<Links>);

/// The shard that owns every connection of `user` among `shard_count`: a stable hash, the same on
/// every instance and for every caller.
pub fn shard_of_user(user: &str, shard_count: usize) -> ShardId {
    let hash = BuildHasherDefault::<DefaultHasher>::default().hash_one(user);
    (hash % shard_count as u64) as ShardId
}

impl Router {
    /// A router to `count` shards, and the inboxes those shards will read (shard `i` reads `i`).
    pub fn new(count: usize) -> (Self, Vec<Inbox>) {
        let (links, inboxes): (Vec<ShardLink>, Vec<Inbox>) = (0..count)
            .map(|_| {
                let (commands, commands_rx) = flume::bounded(COMMAND_INBOX);
                let (deliveries, deliveries_rx) = mpsc::unbounded_channel();
                let inbox = Inbox { commands: commands_rx, deliveries: deliveries_rx };
                (ShardLink { commands, deliveries }, inbox)
            })
            .unzip();
        let links = Links { shards: links.into_boxed_slice(), directory: RoomDirectory::new() };
        (Self(Arc::new(links)), inboxes)
    }

    pub fn directory(&self) -> &RoomDirectory {
        &self.0.directory
    }

    pub fn shard_count(&self) -> usize {
        self.0.shards.len()
    }

    /// The shard that owns every connection of `user`.
    pub fn shard_of_user(&self, user: &str) -> ShardId {
        shard_of_user(user, self.shard_count())
    }

    /// The home shard of `room`: the one that numbers its messages and coalesces its presence
    /// (the same hash as a user's shard, of the room's name).
    pub fn home_of(&self, room: &str) -> ShardId {
        shard_of_user(room, self.shard_count())
    }

    /// Hands a moderation notice to the shard that enforces it here: a room's rules to its home,
    /// a kick or an instance ban to the user's shard.
    pub fn enforce(&self, notice: Notice) {
        let shard = match notice.addressee() {
            Addressee::Room(room) => self.home_of(room),
            Addressee::User(user) => self.shard_of_user(user),
        };
        self.deliver(shard, Delivery::Notice(Box::new(notice)));
    }

    /// Sends a command, waiting while the shard's inbox is full; `false` once the shard has stopped.
    pub async fn command(&self, shard: ShardId, command: Command) -> bool {
        self.0.shards[shard].commands.send_async(command).await.is_ok()
    }

    /// Tells `shard` that connection `conn` is gone (its reader, session or upgrade ended).
    pub async fn unregister(&self, shard: ShardId, conn: ConnId) {
        self.command(shard, Command::Unregister { conn }).await;
    }

    /// Hands a delivery to a shard without waiting.
    pub fn deliver(&self, shard: ShardId, delivery: Delivery) {
        // An unbounded send fails only once the shard has stopped, when nobody is left to deliver to.
        let _ = self.0.shards[shard].deliveries.send(delivery);
    }

    /// Sends a publish to every shard that may hold a recipient, except `skip` (which served its own).
    pub fn route(&self, target: Target, frame: Frame, accepted_at: Instant, skip: Option<ShardId>) {
        let without_skipped = |shards: ShardSet| skip.map_or(shards, |s| shards.without(s));
        let candidates = match target {
            Target::Users(users) => {
                let allowed = without_skipped(self.all_shards());
                return self.route_users(users, frame, accepted_at, allowed);
            }
            Target::Room(ref room) => self.directory().shards_of(room),
            Target::User(ref user) => ShardSet::default().with(self.shard_of_user(user)),
            Target::All => self.all_shards(),
        };
        for shard in without_skipped(candidates).iter() {
            let delivery =
                Delivery::Publish { target: target.clone(), frame: frame.clone(), accepted_at };
            self.deliver(shard, delivery);
        }
    }

    /// Each shard gets the listed users it owns, once each.
    fn route_users(&self, users: Vec<UserId>, frame: Frame, at: Instant, allowed: ShardSet) {
        let mut per_shard: Vec<Vec<UserId>> = vec![Vec::new(); self.shard_count()];
        let unique: BTreeSet<UserId> = users.into_iter().collect();
        for user in unique {
            per_shard[self.shard_of_user(&user)].push(user);
        }
        for (shard, users) in per_shard.into_iter().enumerate() {
            if !users.is_empty() && allowed.contains(shard) {
                let target = Target::Users(users);
                let delivery = Delivery::Publish { target, frame: frame.clone(), accepted_at: at };
                self.deliver(shard, delivery);
            }
        }
    }

    fn all_shards(&self) -> ShardSet {
        (0..self.shard_count()).fold(ShardSet::default(), ShardSet::with)
    }
}
