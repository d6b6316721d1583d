//! The relay's outgoing side: messages published here, and room messages numbered by the stamp
//! script, sent to Redis in one pipeline per batch.
//!
//! Owns: nothing of its own; it is the half of [`Relay`] that publishes. Must not: write presence
//! (the other half does) or touch a shard except through the router.

use std::sync::atomic::Ordering::Relaxed;

use redis::aio::MultiplexedConnection;

use super::{within, Exchange, Outgoing, Relay};
use crate::cluster::streams::stamps as stamps_of;
use crate::cluster::wire::{self, Route};
use crate::directory::ShardId;
use crate::mailbox::{Delivery, Origin, Stamp, ToSequence, Unanswered};
use crate::protocol::{self, Room};

impl Relay {
    /// Sends `first` and whatever else arrives within the linger (up to a batch) in one pipeline.
    pub(super) async fn publish_batch(
        &mut self,
        first: Outgoing,
        conn: &mut MultiplexedConnection,
    ) -> Exchange<()> {
        let mut batch = vec![first];
        let deadline = tokio::time::Instant::now() + self.tuning.linger;
        while batch.len() < self.tuning.batch {
            match self.inputs.outgoing.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) if self.tuning.linger.is_zero() => break,
                Err(_) => {
                    match tokio::time::timeout_at(deadline, self.inputs.outgoing.recv_async()).await
                    {
                        Ok(Ok(next)) => batch.push(next),
                        _ => break,
                    }
                }
            }
        }
        let mut pipe = redis::pipe();
        let count = batch.len() as u64;
        let mut stamps = RoomBatches::default();
        for outgoing in batch {
            match outgoing {
                Outgoing::Publish { target, frame } => {
                    let payload = wire::encode_payload(&self.presence.me, &frame);
                    match self.names().route_of(&target) {
                        Route::Channel(channel) => {
                            pipe.publish(channel, payload).ignore();
                        }
                        Route::Users(users) => self.presence.add_direct(&mut pipe, users, &payload),
                    }
                }
                Outgoing::Stamp { item, home } => stamps.add(item, home),
            }
        }
        for (room, items) in &stamps.rooms {
            let heads: Vec<String> = items
                .iter()
                .map(|(item, _)| protocol::room_message_parts(unstamped(item)))
                .collect();
            let sent: Vec<String> = items.iter().map(|(item, _)| sent_id(item)).collect();
            let new_epoch = protocol::new_short_name();
            self.streams.add_stamp(&mut pipe, room, (&heads, &sent), &new_epoch);
        }
        let sent = within("publish", pipe.query_async::<Vec<(String, Vec<i64>)>>(conn)).await;
        let counter = if sent.is_ok() { &self.counters.published } else { &self.counters.dropped };
        counter.fetch_add(count, Relaxed);
        let answers: Vec<Option<Vec<Stamp>>> = match &sent {
            Ok(answers) => answers.iter().cloned().map(|answer| Some(stamps_of(answer))).collect(),
            Err(_) => vec![None; stamps.rooms.len()],
        };
        for ((_, items), answer) in stamps.rooms.into_iter().zip(answers) {
            let mut answer = answer.into_iter().flatten();
            for (item, home) in items {
                let stamped = answer.next().ok_or(Unanswered::Redis);
                self.router.deliver(home, Delivery::Stamped { item, stamped });
            }
        }
        sent.map(drop)
    }
}

/// A room message to number, and the home shard that hears its seq.
type ToStamp = (Box<ToSequence>, ShardId);

/// One batch's room messages to number, by room, each room's in the order they came: one script
/// call per room.
#[derive(Default)]
struct RoomBatches {
    rooms: Vec<(Room, Vec<ToStamp>)>,
    index: std::collections::HashMap<Room, usize>,
}

impl RoomBatches {
    fn add(&mut self, item: Box<ToSequence>, home: ShardId) {
        let next = self.rooms.len();
        let at = *self.index.entry(item.room.clone()).or_insert(next);
        if at == next {
            self.rooms.push((item.room.clone(), Vec::new()));
        }
        self.rooms[at].1.push((item, home));
    }
}

/// What recognises a resend of `item`: its sender and the id its client gave (none when the
/// client gave no id: the broker's own id is never sent twice).
fn sent_id(item: &ToSequence) -> String {
    match item.origin {
        Origin::Connection { acked: true, .. } => format!("{}\n{}", item.sender, item.id),
        _ => String::new(),
    }
}

/// A room message as it is published, before it has its place in the stream.
fn unstamped(item: &ToSequence) -> protocol::Published<'_> {
    let at = protocol::time_of(item.at);
    protocol::Published {
        kind: item.kind,
        id: &item.id,
        room: Some(&item.room),
        from: &item.sender,
        data: &item.data,
        at,
        stream: None,
        annotations: protocol::Annotations::default(),
    }
}
