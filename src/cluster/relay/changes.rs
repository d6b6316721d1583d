//! The relay's presence side: local changes into subscriptions and Redis presence, cluster
//! questions, heartbeats and the reaping of silent instances.
//!
//! Owns: nothing of its own; it is the half of [`Relay`] that writes presence. Must not: publish
//! chat messages (the other half does) or touch a shard except through the router.

use redis::aio::MultiplexedConnection;

use std::collections::HashMap;

use super::{send_pipe, within, Exchange, Handover, Link, Ordered, Relay, CHANGE_BATCH};
use crate::broker::{LocalChange, Question};
use crate::cluster::mirror::Mirrored;
use crate::cluster::presence::{Lookup, Membership};
use crate::cluster::wire;
use crate::mailbox::{Delivery, Target};
use crate::protocol::{self, Frame, PresenceBatch, PresenceStatus, Room, UserId};

/// A change that was the cluster's (a join or leave the first or last anywhere, an away or back
/// the user's everywhere), with the room's size after it when known.
type Told = (PresenceStatus, Room, UserId, Option<usize>);

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
        let (mut waiting, mut changes) = (Vec::new(), Vec::new());
        for ordered in batch {
            match (ordered, &mut self.handover) {
                (Ordered::Change(change), Some(handover)) => handover.held.push(change),
                (Ordered::Change(change), None) => changes.push(change),
                (Ordered::HoldChanges, handover) => drop(handover.get_or_insert_default()),
                (Ordered::HandOver { grace, done }, handover) => {
                    let at = tokio::time::Instant::now() + grace;
                    handover.get_or_insert_default().finish = Some((at, done));
                }
                (step, _) => waiting.push(step),
            }
        }
        let told = self.apply_local_changes(changes, link).await?;
        for (status, room, user, members) in told {
            self.tell_home(status, &room, &user, members);
        }
        for step in waiting {
            match step {
                Ordered::Notify { shard, then } => self.router.deliver(shard, then),
                Ordered::Notice(notice) => {
                    let json = serde_json::to_string(&notice).expect("a notice serializes");
                    let payload = wire::encode_payload(&self.presence.me, &Frame::from(json));
                    let mut publish = redis::cmd("PUBLISH");
                    publish.arg(&self.notice_channel).arg(payload);
                    let published = publish.query_async::<()>(&mut link.conn);
                    within("publish a moderation notice", published).await?;
                }
                Ordered::Read { request, home } => {
                    let read = self.streams.read(&mut link.conn, &request.room, request.since.seq);
                    let read = within("read a room stream", read).await?;
                    let read = Ok(read);
                    self.router.deliver(home, Delivery::StreamRead { request, read });
                }
                _ => unreachable!("changes and handover steps were taken above"),
            }
        }
        Ok(())
    }

    /// Applies local changes; returns those that were the cluster's (see [`Told`]).
    async fn apply_local_changes(
        &mut self,
        batch: Vec<LocalChange>,
        link: &mut Link,
    ) -> Exchange<Vec<Told>> {
        let mut rooms: Vec<Room> = Vec::with_capacity(batch.len());
        let mut users = redis::pipe();
        let (mut memberships, mut activity) = (Vec::new(), Vec::new());
        for change in batch {
            match self.mirror.apply(change) {
                Mirrored::User(user, online) => {
                    self.presence.user_command(&mut users, &user, online)
                }
                Mirrored::Room(membership, room, user) => {
                    rooms.push(room.clone());
                    memberships.push((membership, room, user))
                }
                Mirrored::Activity { user, status, rooms } => activity.push((user, status, rooms)),
            }
        }
        let (subscribe, unsubscribe) =
            self.mirror.subscription_changes(&rooms, &link.subscribed, self.names());
        if !subscribe.is_empty() {
            within("subscribe", link.sink.subscribe(&subscribe)).await?;
            self.reset_streams(&subscribe);
            link.subscribed.extend(subscribe);
        }
        send_pipe("user presence", &users, &mut link.conn).await?;
        let mut told = self.write_memberships(&memberships, &mut link.conn).await?;
        told.extend(self.write_activity(activity, &mut link.conn).await?);
        if !unsubscribe.is_empty() {
            within("unsubscribe", link.sink.unsubscribe(&unsubscribe)).await?;
            for channel in &unsubscribe {
                link.subscribed.remove(channel);
            }
        }
        Ok(told)
    }

    /// Tells the home of each room newly listened to that its stream has a hole behind it, before
    /// any message of the new subscription reaches it.
    fn reset_streams(&self, channels: &[String]) {
        for channel in channels {
            if let Some(Target::Room(room)) = self.names().target_of(channel) {
                let home = self.router.home_of(&room);
                self.router.deliver(home, Delivery::StreamReset { room });
            }
        }
    }

    /// Runs the batch's joins and leaves in one script call: the joins and leaves that were the
    /// first or last in the cluster (told to the room's home shard, which coalesces the room's
    /// events and publishes them).
    async fn write_memberships(
        &self,
        memberships: &[(Membership, Room, UserId)],
        conn: &mut MultiplexedConnection,
    ) -> Exchange<Vec<Told>> {
        if memberships.is_empty() {
            return Ok(Vec::new());
        }
        let answers = self.presence.apply_memberships(conn, memberships);
        let answers = within("room presence", answers).await?;
        let told = memberships.iter().zip(answers).filter(|(_, answer)| *answer >= 1);
        let told = told.map(|((membership, room, user), answer)| {
            ((*membership).into(), room.clone(), user.clone(), usize::try_from(answer - 1).ok())
        });
        Ok(told.collect())
    }

    /// Runs the batch's aways and backs in one script call: those that changed the cluster's view
    /// of the user, once per room of the user here.
    async fn write_activity(
        &self,
        changes: Vec<(UserId, PresenceStatus, Vec<Room>)>,
        conn: &mut MultiplexedConnection,
    ) -> Exchange<Vec<Told>> {
        if changes.is_empty() {
            return Ok(Vec::new());
        }
        let users: Vec<(UserId, PresenceStatus)> =
            changes.iter().map(|(user, status, _)| (user.clone(), *status)).collect();
        let answers = within("away and back", self.presence.apply_activity(conn, &users)).await?;
        let told = changes.into_iter().zip(answers).filter(|(_, changed)| *changed);
        let told = told.flat_map(|((user, status, rooms), _)| {
            rooms.into_iter().map(move |room| (status, room, user.clone(), None))
        });
        Ok(told.collect())
    }

    /// The grace period of a stopping instance ended: its held leaves are applied, and those that
    /// were the last in the cluster are announced (its shards are gone: one batch frame per room,
    /// published from here).
    pub(super) async fn hand_over(&mut self, link: &mut Link) -> Exchange<()> {
        let Some(Handover { held, finish }) = self.handover.take() else { return Ok(()) };
        let told = self.apply_local_changes(held, link).await?;
        let mut left: HashMap<Room, Vec<UserId>> = HashMap::new();
        for (status, room, user, _) in told {
            if status == PresenceStatus::Leave && self.tuning.presence_events {
                left.entry(room).or_default().push(user);
            }
        }
        let mut pipe = redis::pipe();
        for (room, mut users) in left {
            users.sort_unstable();
            let batch = PresenceBatch { left: users, ..PresenceBatch::default() };
            let frame = protocol::presence_batch_frame(&room, &batch);
            let payload = wire::encode_payload(&self.presence.me, &frame);
            pipe.publish(self.names().room_channel(&room), payload).ignore();
        }
        send_pipe("announce the handed-over leaves", &pipe, &mut link.conn).await?;
        if let Some((_, done)) = finish {
            let _ = done.send(());
        }
        Ok(())
    }

    /// A cluster-wide change, for the room's home shard (when presence events are on).
    pub(super) fn tell_home(
        &self,
        status: PresenceStatus,
        room: &Room,
        user: &UserId,
        members: Option<usize>,
    ) {
        if !self.tuning.presence_events {
            return;
        }
        let (room, user) = (room.clone(), user.clone());
        let home = self.router.home_of(&room);
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
        if !survived && self.mirror.users > 0 {
            tracing::warn!(instance = %self.presence.me, "redis lost this instance's presence: registering again");
            self.register_mirror(&mut link.conn).await?;
        }
        for (room, user) in gone {
            let (Ok(room), Ok(user)) =
                (protocol::validate_room(&room), protocol::validate_user(&user))
            else {
                continue;
            };
            self.tell_home(PresenceStatus::Leave, &room, &user, None);
        }
        Ok(())
    }
}
