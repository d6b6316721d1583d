//! The moderation service: who may mute, kick, ban, change a room's settings, report and block,
//! and what each action does; shared by the REST API and the WebSocket requests.
//!
//! Owns: the rules of every action (ranks member < moderator < owner < admin; an action on a user
//! reaches only a lower rank), their refusals, their audit lines, and the notices that put them in
//! force. May touch: the store (an action and its moderation-log line are one write), the hub
//! (notices, events to users and rooms). Must not: enforce anything itself: the room's home shard
//! and the user's shard do ([`crate::rules`], `shard/enforce.rs`).

mod action;
mod rooms;
mod sanctions;
mod social;
pub mod sweep;

use std::time::{Duration, SystemTime};

pub use crate::rooms::Refused;
pub use action::{requested, Action};

use crate::hub::Hub;
use crate::mailbox::Target;
use crate::protocol::{self, millis, ErrorCode, Millis, Moderated, Room, UserId};
use crate::rooms::Access;
use crate::rules::Notice;
use crate::store::moderation::{Act, Ask, Found, Logged};
use crate::store::ops::{Answer, Outcome, Read, Write};
use crate::store::{Role, Store};

/// The longest a mute or ban may be timed for (longer: make it permanent).
pub const MAX_DURATION: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// The longest slow-mode interval.
pub const MAX_SLOW_MODE_MS: i64 = 3_600_000;
pub const MAX_TITLE: usize = 100;
pub const MAX_TOPIC: usize = 1000;

/// Who acts: a user (none when auth is off and no `?user=` was given) and whether it is an admin.
#[derive(Debug, Clone)]
pub struct Actor {
    pub user: Option<UserId>,
    pub admin: bool,
}

/// The settings a change names; the others stay.
#[derive(Debug, Clone, Default)]
pub struct SettingsChange {
    pub title: Option<Option<String>>,
    pub topic: Option<Option<String>>,
    pub slow_mode_ms: Option<i64>,
}

/// A rank: an action on a user reaches only a lower one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Rank {
    Outsider,
    Member,
    Moderator,
    Owner,
    Admin,
}

fn rank(role: Option<Role>, admin: bool) -> Rank {
    match (admin, role) {
        (true, _) => Rank::Admin,
        (_, Some(Role::Owner)) => Rank::Owner,
        (_, Some(Role::Moderator)) => Rank::Moderator,
        (_, Some(Role::Member)) => Rank::Member,
        (_, None) => Rank::Outsider,
    }
}

/// When a timed action of `seconds` from now ends; refused when absurd.
pub fn until_after(seconds: i64) -> Result<Millis, Refused> {
    let max = i64::try_from(MAX_DURATION.as_secs()).unwrap_or(i64::MAX);
    if !(1..=max).contains(&seconds) {
        let message = format!("duration must be 1 to {max} seconds (leave it out: until lifted)");
        return Err(Refused::new(ErrorCode::BadRequest, message));
    }
    Ok(now() + seconds * 1000)
}

pub fn now() -> Millis {
    millis(SystemTime::now())
}

/// What one act needs: the hub, its store, and who acts.
struct Context<'a> {
    hub: &'a Hub,
    store: &'a Store,
    actor: &'a Actor,
    /// The actor's name ("" when anonymous).
    name: &'a str,
}

/// Does `action` for `actor`, or refuses it (nothing changed). Every attempt is an audit line.
pub async fn act(hub: &Hub, actor: &Actor, action: Action) -> Result<(), Refused> {
    let outcome = run(hub, actor, &action).await;
    let (actor, room) = (actor.user.as_deref().unwrap_or_default(), action.room());
    let (target, reason) = (action.target().unwrap_or_default(), action.reason());
    let action = action.name();
    match &outcome {
        Ok(()) => {
            tracing::info!(target: "audit", event = "moderation", action, actor, room = room.map(|r| &**r), target, reason, outcome = "done")
        }
        Err(refused) => {
            tracing::warn!(target: "audit", event = "moderation", action, actor, room = room.map(|r| &**r), target, reason, outcome = refused.code.as_str(), why = %refused.message)
        }
    }
    outcome
}

async fn run(hub: &Hub, actor: &Actor, action: &Action) -> Result<(), Refused> {
    let store = hub.store().ok_or_else(|| {
        Refused::not_found("this server keeps no rooms (it runs with --database-url none)")
    })?;
    if actor.user.is_none() && !actor.admin {
        let message = "name yourself: a token, or ?user= with authentication off";
        return Err(Refused::new(ErrorCode::BadRequest, message));
    }
    check_reason(hub, action.reason())?;
    let name = actor.user.as_deref().unwrap_or("admin");
    let context = Context { hub, store, actor, name };
    match action {
        Action::Mute { .. }
        | Action::Unmute { .. }
        | Action::Kick { .. }
        | Action::Ban { .. }
        | Action::Unban { .. } => sanctions::in_room(&context, action).await,
        Action::BanUser { .. } | Action::UnbanUser { .. } => {
            sanctions::instance_wide(&context, action).await
        }
        Action::SetRole { .. }
        | Action::Transfer { .. }
        | Action::Settings { .. }
        | Action::Archive { .. } => rooms::administer(&context, action).await,
        Action::Report { .. }
        | Action::Resolve { .. }
        | Action::Block { .. }
        | Action::Unblock { .. } => social::act(&context, action).await,
    }
}

/// A reason (or resolution) holds at most `--max-content` characters.
fn check_reason(hub: &Hub, reason: Option<&str>) -> Result<(), Refused> {
    let max = hub.settings().max_content;
    match reason {
        Some(reason) if reason.chars().count() > max => Err(Refused::new(
            ErrorCode::ContentTooLong,
            format!("a reason holds at most {max} characters"),
        )),
        _ => Ok(()),
    }
}

impl Context<'_> {
    /// The actor's and `user`'s ranks in `room` (which must exist).
    async fn ranks(&self, room: &Room, user: Option<&str>) -> Result<(Rank, Rank), Refused> {
        let (info, role) = crate::rooms::room_and_role(self.store, room, self.name)
            .await
            .map_err(|_| Refused::unavailable())?;
        if info.is_none() {
            return Err(Refused::of(room, Access::NotFound));
        }
        let actor = rank(role, self.actor.admin);
        let target = match user {
            Some(user) => {
                let (_, role) = crate::rooms::room_and_role(self.store, room, user)
                    .await
                    .map_err(|_| Refused::unavailable())?;
                rank(role, false)
            }
            None => Rank::Outsider,
        };
        Ok((actor, target))
    }

    /// Writes `act` with its log line; `Ok(false)`: it changed nothing.
    async fn write(&self, act: Act, action: &Action) -> Result<Outcome, Refused> {
        let log = Logged {
            room: action.room().map(|room| room.to_string()).unwrap_or_default(),
            actor: self.name.to_owned(),
            target: action.target().map(str::to_owned),
            action: action.name().to_owned(),
            reason: action.reason().map(str::to_owned),
            until: action.until(),
            at: now(),
        };
        let write = Write::Moderate { act: Box::new(act), log: Some(Box::new(log)) };
        self.store.write_and_wait(write).await.map_err(|_| Refused::unavailable())
    }

    async fn ask(&self, ask: Ask) -> Result<Found, Refused> {
        read(self.store, ask).await
    }

    /// Puts `room`'s rules, as the store has them now, in force on every instance.
    async fn refresh_rules(&self, room: &Room) -> Result<(), Refused> {
        let Found::Rules(rules) =
            self.ask(Ask::Rules { room: room.to_string(), now: now() }).await?
        else {
            return Err(Refused::unavailable());
        };
        self.hub.enforce(Notice::Rules { room: room.to_string(), rules });
        Ok(())
    }
}

/// Moderation reads (lists) for `actor`: the room's moderators (and admins) only.
pub async fn may_see(hub: &Hub, actor: &Actor, room: &Room) -> Result<(), Refused> {
    let store = hub.store().ok_or_else(|| Refused::not_found("this server keeps no rooms"))?;
    let access = crate::rooms::may_moderate(store, room, actor.user.as_deref(), actor.admin).await;
    match access {
        Access::Allowed => Ok(()),
        refusal => Err(Refused::of(room, refusal)),
    }
}

/// Answers a moderation question (the caller checked who may ask).
pub async fn ask(hub: &Hub, ask: Ask) -> Result<Found, Refused> {
    let store = hub.store().ok_or_else(|| Refused::not_found("this server keeps no rooms"))?;
    read(store, ask).await
}

async fn read(store: &Store, ask: Ask) -> Result<Found, Refused> {
    match store.read(Read::Moderation(ask)).await {
        Ok(Answer::Moderation(found)) => Ok(found),
        _ => Err(Refused::unavailable()),
    }
}

/// Tells the owners and moderators of `room` of `event` (best effort: a store that cannot say who
/// they are leaves it unsaid; the lists and the log keep it).
pub(crate) async fn tell_moderators(hub: &Hub, store: &Store, room: &str, event: &Moderated<'_>) {
    let read = Read::Participants { room: room.to_owned() };
    let Ok(Answer::Participants(participants)) = store.read(read).await else { return };
    let moderators: Vec<UserId> = participants
        .iter()
        .filter(|participant| participant.role != Role::Member)
        .map(|participant| UserId::from(participant.user.as_str()))
        .collect();
    if !moderators.is_empty() {
        hub.publish(Target::Users(moderators), protocol::moderation_frame(Some(room), event));
    }
}
