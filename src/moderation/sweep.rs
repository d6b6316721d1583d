//! What is in force when an instance starts, and timed mutes and bans ending by themselves.
//!
//! Owns: the start-up load (every sanction and room rule in force, handed to this instance's
//! shards; again after Redis came back, as a notice may have been lost meanwhile) and the sweep, which lifts ended sanctions every [`SWEEP_EVERY`] and tells the room's
//! moderators (`moderation`, action `mute_ended` or `ban_ended`). In a cluster every instance
//! sweeps; the store lets one lift each sanction, and that one tells. Must not: enforce anything
//! (an ended mute already lets chats through at its home: the sweep only tidies and tells).

use std::time::Duration;

use super::now;
use crate::hub::Hub;
use crate::mailbox::Delivery;
use crate::protocol::Moderated;
use crate::rules::{InForce, Notice};
use crate::store::moderation::{Act, Ask, Found, Kind, Logged, Sanction};
use crate::store::ops::{Answer, Outcome, Read, Write};
use crate::store::{Store, Unavailable};

/// How often ended sanctions are lifted.
pub const SWEEP_EVERY: Duration = Duration::from_secs(2);
/// The most lifted in one sweep.
const SWEEP_BATCH: i64 = 500;

/// Hands everything in force to this instance's shards, each keeping its part in place of what
/// it had (before the first connection is taken, and again after Redis came back).
pub async fn load(hub: &Hub) -> Result<(), Unavailable> {
    let Some(store) = hub.store() else { return Ok(()) };
    let Answer::Moderation(Found::InForce { sanctions, rooms }) =
        store.read(Read::Moderation(Ask::InForce { now: now() })).await?
    else {
        return Err(Unavailable);
    };
    let bans = sanctions.into_iter().filter(|sanction| sanction.room.is_empty());
    let bans = bans.map(|ban| (ban.user, ban.until)).collect();
    let in_force = std::sync::Arc::new(InForce { rooms, bans });
    for shard in 0..hub.router().shard_count() {
        hub.router().deliver(shard, Delivery::InForce(std::sync::Arc::clone(&in_force)));
    }
    Ok(())
}

/// Lifts ended sanctions, forever (a task of the HTTP runtime).
pub async fn run(hub: Hub) {
    let mut every = tokio::time::interval(SWEEP_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let reconnects = || hub.metrics().relay.reconnects.load(std::sync::atomic::Ordering::Relaxed);
    let mut loaded_at = reconnects();
    loop {
        every.tick().await;
        let Some(store) = hub.store() else { continue };
        if reconnects() != loaded_at && load(&hub).await.is_ok() {
            loaded_at = reconnects();
        }
        if let Err(Unavailable) = sweep(&hub, store).await {
            tracing::debug!("the moderation sweep waits for the store");
        }
    }
}

async fn sweep(hub: &Hub, store: &Store) -> Result<(), Unavailable> {
    let at = now();
    let Answer::Moderation(Found::Sanctions(ended)) =
        store.read(Read::Moderation(Ask::Ended { now: at, limit: SWEEP_BATCH })).await?
    else {
        return Err(Unavailable);
    };
    for sanction in ended {
        if lift(store, &sanction, at).await? {
            tell(hub, store, &sanction).await;
        }
    }
    Ok(())
}

/// Lifts one ended sanction; whether this instance did (another may have first).
async fn lift(store: &Store, sanction: &Sanction, at: i64) -> Result<bool, Unavailable> {
    let Sanction { room, user, kind, .. } = sanction.clone();
    let action = format!("{}_ended", kind.as_str());
    let log = Logged {
        room: room.clone(),
        actor: "system".into(),
        target: Some(user.clone()),
        action,
        reason: None,
        until: sanction.until,
        at,
    };
    let act = Act::Lift { room, user, kind, ended: Some(at) };
    let write = Write::Moderate { act: Box::new(act), log: Some(Box::new(log)) };
    Ok(store.write_and_wait(write).await? == Outcome::Done)
}

/// The room's rules follow on every instance, and its moderators hear it ended.
async fn tell(hub: &Hub, store: &Store, sanction: &Sanction) {
    let action = format!("{}_ended", sanction.kind.as_str());
    tracing::info!(target: "audit", event = "moderation", action, actor = "system", room = sanction.room, target = sanction.user, outcome = "done");
    if sanction.room.is_empty() {
        return hub.enforce(Notice::Unban { user: sanction.user.clone() });
    }
    if sanction.kind == Kind::Mute {
        let read = Read::Moderation(Ask::Rules { room: sanction.room.clone(), now: now() });
        if let Ok(Answer::Moderation(Found::Rules(rules))) = store.read(read).await {
            hub.enforce(Notice::Rules { room: sanction.room.clone(), rules });
        }
    }
    let event = Moderated {
        action: &action,
        user: Some(&sanction.user),
        by: "system",
        ..Moderated::default()
    };
    super::tell_moderators(hub, store, &sanction.room, &event).await;
}
