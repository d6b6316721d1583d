//! Room administration: roles, handing a room over, its settings (title, topic, slow mode), and
//! archiving it.
//!
//! Owns: their checks (the owner or an admin; a role change never makes or unmakes an owner) and
//! their effects: the room's rules follow on every instance, members get `room_updated` (or
//! `room_deleted`), a user whose role changed gets `moderation`.

use super::{now, Action, Context, Rank, Refused, SettingsChange};
use super::{MAX_SLOW_MODE_MS, MAX_TITLE, MAX_TOPIC};
use crate::mailbox::Target;
use crate::protocol::{self, ErrorCode, Moderated, Room, RoomSettings, UserId};
use crate::store::moderation::{Act, Ask, Found, Settings};
use crate::store::ops::Outcome;
use crate::store::Role;

pub(super) async fn administer(context: &Context<'_>, action: &Action) -> Result<(), Refused> {
    match action {
        Action::SetRole { room, user, role } => set_role(context, action, room, user, *role).await,
        Action::Transfer { room, user } => transfer(context, action, room, user).await,
        Action::Settings { room, change } => settings(context, action, room, change).await,
        Action::Archive { room, .. } => archive(context, action, room).await,
        _ => unreachable!("only room administration comes here"),
    }
}

/// The owner or an admin only.
async fn owner_only(
    context: &Context<'_>,
    room: &Room,
    user: Option<&str>,
) -> Result<Rank, Refused> {
    let (actor, target) = context.ranks(room, user).await?;
    if actor < Rank::Owner {
        return Err(Refused::forbidden(format!("only the owner of {room} may")));
    }
    Ok(target)
}

async fn set_role(
    context: &Context<'_>,
    action: &Action,
    room: &Room,
    user: &UserId,
    role: Role,
) -> Result<(), Refused> {
    let target = owner_only(context, room, Some(user)).await?;
    if role == Role::Owner || target == Rank::Owner {
        let message = "the owner changes only by a transfer (POST .../transfer)";
        return Err(Refused::new(ErrorCode::BadRequest, message));
    }
    if target == Rank::Outsider {
        return Err(Refused::not_found(format!("{user} is not a participant of {room}")));
    }
    let act = Act::SetRole { room: room.to_string(), user: user.to_string(), role };
    if context.write(act, action).await? != Outcome::Done {
        return Err(Refused::not_found(format!("{user} is not a participant of {room}")));
    }
    context.refresh_rules(room).await?;
    tell_role(context, room, user, role);
    Ok(())
}

async fn transfer(
    context: &Context<'_>,
    action: &Action,
    room: &Room,
    user: &UserId,
) -> Result<(), Refused> {
    let (actor, target) = context.ranks(room, Some(user)).await?;
    if actor != Rank::Owner {
        return Err(Refused::forbidden(format!("only the owner of {room} may hand it over")));
    }
    if target == Rank::Outsider {
        return Err(Refused::not_found(format!("{user} is not a participant of {room}")));
    }
    let (from, to) = (context.name.to_owned(), user.to_string());
    let act = Act::Transfer { room: room.to_string(), from, to };
    if context.write(act, action).await? != Outcome::Done {
        return Err(Refused::not_found(format!("{user} is not a participant of {room}")));
    }
    context.refresh_rules(room).await?;
    tell_role(context, room, user, Role::Owner);
    if let Ok(me) = protocol::validate_user(context.name) {
        tell_role(context, room, &me, Role::Moderator);
    }
    Ok(())
}

fn tell_role(context: &Context<'_>, room: &Room, user: &UserId, role: Role) {
    let event = Moderated {
        action: "set_role",
        user: Some(user),
        by: context.name,
        role: Some(role.as_str()),
        ..Moderated::default()
    };
    let frame = protocol::moderation_frame(Some(room), &event);
    context.hub.publish(Target::User(user.clone()), frame);
}

/// The room's settings now.
async fn current(context: &Context<'_>, room: &Room) -> Result<Settings, Refused> {
    match context.ask(Ask::Settings { room: room.to_string() }).await? {
        Found::Settings(Some(settings)) => Ok(settings),
        _ => Err(Refused::not_found(format!("no room {room}"))),
    }
}

/// `change` applied to `settings`, or why it cannot be.
pub fn changed(mut settings: Settings, change: &SettingsChange) -> Result<Settings, Refused> {
    let bad = |message: String| Err(Refused::new(ErrorCode::BadRequest, message));
    if let Some(title) = &change.title {
        if title.as_ref().is_some_and(|title| title.chars().count() > MAX_TITLE) {
            return bad(format!("a title holds at most {MAX_TITLE} characters"));
        }
        settings.title = title.clone().filter(|title| !title.trim().is_empty());
    }
    if let Some(topic) = &change.topic {
        if topic.as_ref().is_some_and(|topic| topic.chars().count() > MAX_TOPIC) {
            return bad(format!("a topic holds at most {MAX_TOPIC} characters"));
        }
        settings.topic = topic.clone().filter(|topic| !topic.trim().is_empty());
    }
    if let Some(slow) = change.slow_mode_ms {
        if !(0..=MAX_SLOW_MODE_MS).contains(&slow) {
            return bad(format!("slow_mode_ms must be 0 (off) to {MAX_SLOW_MODE_MS}"));
        }
        settings.slow_mode_ms = slow;
    }
    Ok(settings)
}

async fn settings(
    context: &Context<'_>,
    action: &Action,
    room: &Room,
    change: &SettingsChange,
) -> Result<(), Refused> {
    owner_only(context, room, None).await?;
    let settings = changed(current(context, room).await?, change)?;
    save(context, action, room, settings).await
}

async fn archive(context: &Context<'_>, action: &Action, room: &Room) -> Result<(), Refused> {
    owner_only(context, room, None).await?;
    let mut settings = current(context, room).await?;
    if settings.archived_at.is_some() {
        return Err(Refused::new(ErrorCode::Conflict, format!("{room} is archived already")));
    }
    settings.archived_at = Some(now());
    save(context, action, room, settings).await
}

/// Writes the settings, puts the room's rules in force and tells its members.
async fn save(
    context: &Context<'_>,
    action: &Action,
    room: &Room,
    settings: Settings,
) -> Result<(), Refused> {
    let act = Act::Settings { room: room.to_string(), settings: settings.clone() };
    if context.write(act, action).await? != Outcome::Done {
        return Err(Refused::not_found(format!("no room {room}")));
    }
    context.refresh_rules(room).await?;
    let view = RoomSettings {
        title: settings.title.as_deref(),
        topic: settings.topic.as_deref(),
        slow_mode_ms: settings.slow_mode_ms,
        archived: settings.archived_at.is_some(),
        by: context.name,
    };
    let frame = protocol::room_settings_frame(room, &view);
    context.hub.publish(Target::Room(room.clone()), frame);
    Ok(())
}
