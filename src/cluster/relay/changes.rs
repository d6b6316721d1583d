//! The relay's presence side: local changes into subscriptions and Redis presence, cluster
//! questions, heartbeats and the reaping of silent instances.
//!
//! Owns: nothing of its own; it is the half of [`Relay`] that writes presence. Must not: publish
//! chat messages (the other half does) or touch a shard except through the router.

use redis::aio::MultiplexedConnection;

use super::{send_pipe, within, Exchange, Link, Ordered, Relay, CHANGE_BATCH};
use crate::broker::{LocalChange, Question};
use crate::cluster::mirror::{Interest, Mirrored};
use crate::cluster::presence::{Lookup, Membership};
use crate::mailbox::{Delivery, Target};
use crate::protocol::{self, PresenceStatus, Room, UserId};

impl Relay {
    /// Applies `first` and the changes already waiting: subscribes to what became needed, writes the
    /// presence (so another instance that sees a user here knows this instance already listens), then
    /// unsubscribes from what is no longer needed.
    ///
    /// The steps that wait for the changes before them (notices, stream reads) run after that.
    pub(super) async fn apply_changes(&mut self, first: Ordered, link: &mut Link) -> Exchange<()> {
        let mut batch = vec![first];
        while batch.len() < CHANGE_BATCH {
            let Ok(next) = self.inputs.changes.try_recv() else {
                break;
            };
            batch.push(next);
        }
        let mut waiting = Vec::new();
        let changes: Vec<LocalChange> = batch
            .into_iter()
            .filter_map(|ordered| match ordered {
                Ordered::Change(change) => Some(change),
                step => {
                    waiting.push(step);
                    None
                }
            })
            .collect();
        self.apply_local_changes(changes, link).await?;
        for step in waiting {
            match step {
                Ordered::Notify { shard, then } => self.router.deliver(shard, then),
                Ordered::Read { request, home } => {
                    let read = self.streams.read(&mut link.conn, &request.room, request.since.seq);
                    let read = within("read a room stream", read).await?;
                    let read = Ok(read);
                    self.router.deliver(home, Delivery::StreamRead { request, read });
                }
                Ordered::Change(_) => unreachable!("changes were applied above"),
            }
        }
        Ok(())
    }

    async fn apply_local_changes(
        &mut self,
        batch: Vec<LocalChange>,
        link: &mut Link,
    ) -> Exchange<()> {
        let mut interests: Vec<Interest> = Vec::with_capacity(batch.len());
        let mut users = redis::pipe();
        let mut memberships = Vec::new();
        for change in batch {
            let mirrored = self.mirror.apply(change);
            interests.push(mirrored.interest());
            match mirrored {
                Mirrored::User(user, online) => {
                    self.presence.user_command(&mut users, &user, online)
                }
                Mirrored::Room(membership, room, user) => {
                    memberships.push((membership, room, user))
                }
            }
        }
        let (subscribe, unsubscribe) =
            self.mirror.subscription_changes(&interests, &link.subscribed, self.names());
        if !subscribe.is_empty() {
            within("subscribe", link.sink.subscribe(&subscribe)).await?;
            self.reset_streams(&subscribe);
            link.subscribed.extend(subscribe);
        }
        send_pipe("user presence", &users, &mut link.conn).await?;
        self.write_memberships(&memberships, &mut link.conn).await?;
        if !unsubscribe.is_empty() {
            within("unsubscribe", link.sink.unsubscribe(&unsubscribe)).await?;
            for channel in &unsubscribe {
                link.subscribed.remove(channel);
            }
        }
        Ok(())
    }

    /// Tells the home of each room newly listened to that its stream has a hole behind it, before
    /// any message of the new subscription reaches it.
    fn reset_streams(&self, channels: &[String]) {
        for channel in channels {
            if let Some(Target::Room(room)) = self.names().target_of(channel) {
                let home = self.router.shard_of_user(&room);
                self.router.deliver(home, Delivery::StreamReset { room });
            }
        }
    }

    /// Runs the join/leave scripts; each join or leave that was the first or last in the cluster
    /// goes to the room's home shard here, which coalesces the room's events and publishes them.
    async fn write_memberships(
        &self,
        memberships: &[(Membership, Room, UserId)],
        conn: &mut MultiplexedConnection,
    ) -> Exchange<()> {
        if memberships.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for (membership, room, user) in memberships {
            self.presence.add_change(&mut pipe, membership, room, user, b"");
        }
        let answers: Vec<i64> = within("room presence", pipe.query_async(conn)).await?;
        for ((membership, room, user), answer) in memberships.iter().zip(answers) {
            if answer >= 1 {
                let members = usize::try_from(answer - 1).ok();
                self.tell_home(*membership, room, user, members);
            }
        }
        Ok(())
    }

    /// A cluster-wide join or leave, for the room's home shard (when presence events are on).
    pub(super) fn tell_home(
        &self,
        membership: Membership,
        room: &Room,
        user: &UserId,
        members: Option<usize>,
    ) {
        if !self.tuning.presence_events {
            return;
        }
        let status = match membership {
            Membership::Join => PresenceStatus::Join,
            Membership::Leave => PresenceStatus::Leave,
        };
        let (room, user) = (room.clone(), user.clone());
        let home = self.router.shard_of_user(&room);
        self.router.deliver(home, Delivery::PresenceChange { room, user, status, members });
    }

    pub(super) async fn answer(
        &self,
        question: Question,
        conn: &mut MultiplexedConnection,
    ) -> Exchange<()> {
        let to_ids = |users: Vec<String>| users.into_iter().map(UserId::from).collect::<Vec<_>>();
        match question {
            Question::OnlineUsers(reply) => {
                let users =
                    within("online users", self.presence.query(conn, Lookup::Online)).await?;
                let _ = reply.send(to_ids(users));
            }
            Question::RoomUsers(room, reply) => {
                let users =
                    within("room users", self.presence.query(conn, Lookup::Room(&room))).await?;
                let _ = reply.send(to_ids(users));
            }
            Question::UserOnline(user, reply) => {
                let found =
                    within("user online", self.presence.query(conn, Lookup::User(&user))).await?;
                let _ = reply.send(!found.is_empty());
            }
        }
        Ok(())
    }

    /// Renews this instance, registers it again if Redis lost it, and announces the users that left
    /// with a reaped instance.
    pub(super) async fn heartbeat(&mut self, link: &mut Link) -> Exchange<()> {
        let (survived, gone) = within("heartbeat", self.presence.heartbeat(&mut link.conn)).await?;
        if !survived && !self.mirror.users.is_empty() {
            tracing::warn!(instance = %self.presence.me, "redis lost this instance's presence: registering again");
            self.register_mirror(&mut link.conn).await?;
        }
        for (room, user) in gone {
            let (Ok(room), Ok(user)) =
                (protocol::validate_room(&room), protocol::validate_user(&user))
            else {
                continue;
            };
            self.tell_home(Membership::Leave, &room, &user, None);
        }
        Ok(())
    }
}
