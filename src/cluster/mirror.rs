//! The relay's mirror of local presence and the subscriptions that follow from it.
//!
//! Owns: how many users are online on this instance and how many are in each room, as the shards
//! last reported it (who they are is asked of the shards when the instance's presence must be
//! written again), and the rule that turns a batch of changes into room channels to subscribe to
//! and to leave (users need none: messages for them come on the instance's own channel). Plain
//! data, no I/O: the relay applies what this decides, and rebuilds its subscriptions from the mirror
//! after any reconnect. Must not: talk to Redis or the shards.

use std::collections::{HashMap, HashSet};

use super::presence::Membership;
use super::wire::Names;
use crate::broker::LocalChange;
use crate::protocol::{PresenceStatus, Room, UserId};

/// Local presence as the relay last heard it from the shards: counts, since each user's first
/// and last connection here, and its first and last in a room, are reported once.
#[derive(Debug, Default)]
pub struct Mirror {
    /// Users online here.
    pub users: usize,
    /// Users in each room that has any here.
    pub rooms: HashMap<Room, u32>,
}

/// What a change did to the mirror.
#[derive(Debug, PartialEq, Eq)]
pub enum Mirrored {
    /// The user came online here (`true`) or went offline.
    User(UserId, bool),
    Room(Membership, Room, UserId),
    /// The user went away here (`Away`) or came back (`Back`); told in its rooms here when the
    /// cluster's view changed. The mirror keeps no count of it.
    Activity {
        user: UserId,
        status: PresenceStatus,
        rooms: Vec<Room>,
    },
}

impl Mirror {
    /// Updates the mirror with one change.
    pub fn apply(&mut self, change: LocalChange) -> Mirrored {
        match change {
            LocalChange::UserOnline(user) => {
                self.users += 1;
                Mirrored::User(user, true)
            }
            LocalChange::UserOffline(user) => {
                self.users = self.users.saturating_sub(1);
                Mirrored::User(user, false)
            }
            LocalChange::Joined { room, user } => {
                *self.rooms.entry(room.clone()).or_default() += 1;
                Mirrored::Room(Membership::Join, room, user)
            }
            LocalChange::Left { room, user } => {
                if let Some(members) = self.rooms.get_mut(&room) {
                    *members = members.saturating_sub(1);
                    if *members == 0 {
                        self.rooms.remove(&room);
                    }
                }
                Mirrored::Room(Membership::Leave, room, user)
            }
            LocalChange::WentAway { user, rooms } => {
                Mirrored::Activity { user, status: PresenceStatus::Away, rooms }
            }
            LocalChange::CameBack { user, rooms } => {
                Mirrored::Activity { user, status: PresenceStatus::Back, rooms }
            }
        }
    }

    /// Every channel the mirror needs: the global one, the instance's (`me`), one per local room.
    pub fn wanted_channels(&self, names: &Names, me: &str) -> Vec<String> {
        let mut wanted =
            vec![names.global_channel(), names.instance_channel(me), names.notice_channel()];
        wanted.extend(self.rooms.keys().map(|room| names.room_channel(room)));
        wanted
    }

    /// Channels to subscribe to and to leave, given what the mirror needs now (after the whole
    /// batch of changes, which touched `rooms`) and what is `subscribed`. Each channel is decided
    /// once, in linear time.
    pub fn subscription_changes(
        &self,
        rooms: &[Room],
        subscribed: &HashSet<String>,
        names: &Names,
    ) -> (Vec<String>, Vec<String>) {
        let (mut subscribe, mut unsubscribe) = (Vec::new(), Vec::new());
        let mut decided = HashSet::with_capacity(rooms.len());
        for room in rooms {
            let (channel, wanted) = (names.room_channel(room), self.rooms.contains_key(room));
            let listening = subscribed.contains(&channel);
            if wanted == listening || !decided.insert(channel.clone()) {
                continue;
            }
            if wanted {
                subscribe.push(channel);
            } else {
                unsubscribe.push(channel);
            }
        }
        (subscribe, unsubscribe)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Names {
        Names::new("p")
    }

    fn joined(room: &str, user: &str) -> LocalChange {
        LocalChange::Joined { room: room.into(), user: user.into() }
    }

    fn left(room: &str, user: &str) -> LocalChange {
        LocalChange::Left { room: room.into(), user: user.into() }
    }

    /// Applies `changes` and returns what they call for, given `subscribed`.
    fn run(
        mirror: &mut Mirror,
        changes: Vec<LocalChange>,
        subscribed: &[&str],
    ) -> (Vec<String>, Vec<String>) {
        let rooms: Vec<Room> = changes
            .into_iter()
            .filter_map(|change| match mirror.apply(change) {
                Mirrored::Room(_, room, _) => Some(room),
                Mirrored::User(..) | Mirrored::Activity { .. } => None,
            })
            .collect();
        let subscribed = subscribed.iter().map(|s| s.to_string()).collect();
        mirror.subscription_changes(&rooms, &subscribed, &names())
    }

    #[test]
    fn a_room_is_subscribed_once_however_many_join_it_in_one_batch() {
        let mut mirror = Mirror::default();
        let changes = (0..1024).map(|i| joined("r", &format!("u{i}"))).collect();
        assert_eq!(run(&mut mirror, changes, &[]), (vec!["p:room:r".to_owned()], vec![]));
        assert_eq!(mirror.rooms["r"], 1024);
    }

    #[test]
    fn joining_and_leaving_within_one_batch_touches_no_subscription() {
        let mut mirror = Mirror::default();
        let changes = vec![joined("r", "a"), left("r", "a")];
        assert_eq!(run(&mut mirror, changes, &[]), (vec![], vec![]));
        assert!(mirror.rooms.is_empty(), "an emptied room leaves the mirror");
    }

    #[test]
    fn the_last_member_leaving_unsubscribes_once() {
        let mut mirror = Mirror::default();
        run(&mut mirror, vec![joined("r", "a"), joined("r", "b")], &[]);
        let (subscribe, unsubscribe) = run(&mut mirror, vec![left("r", "a")], &["p:room:r"]);
        assert!(subscribe.is_empty() && unsubscribe.is_empty(), "b is still in the room");
        let changes = vec![joined("r", "c"), left("r", "c"), left("r", "b")];
        assert_eq!(run(&mut mirror, changes, &["p:room:r"]), (vec![], vec!["p:room:r".to_owned()]));
    }

    #[test]
    fn users_coming_and_going_touch_no_subscription_and_are_mirrored() {
        let mut mirror = Mirror::default();
        let online = vec![LocalChange::UserOnline("a".into()), LocalChange::UserOnline("b".into())];
        assert_eq!(run(&mut mirror, online, &[]), (vec![], vec![]));
        let offline = vec![LocalChange::UserOffline("a".into())];
        assert_eq!(run(&mut mirror, offline, &[]), (vec![], vec![]));
        assert_eq!(mirror.users, 1, "b");
        let wanted = mirror.wanted_channels(&names(), "n1");
        assert_eq!(wanted, ["p:global", "p:instance:n1", "p:moderation"]);
    }
}
