//! Mutes, kicks and bans in a room, and instance-wide bans.
//!
//! Owns: their checks (a moderator or above acts on a lower rank; a mute or a kick needs a
//! participant) and their effects: the user's connections leave the room or close, on every
//! instance, and the user is told (`moderation`, and `room_removed` when it is no longer a
//! participant).

use super::{now, Action, Context, Rank, Refused};
use crate::mailbox::Target;
use crate::messages;
use crate::protocol::{self, Moderated, Room, UserId};
use crate::rules::Notice;
use crate::store::moderation::{Act, Kind, Sanction};
use crate::store::ops::Outcome;

/// Mute, unmute, kick, ban and unban in a room.
pub(super) async fn in_room(context: &Context<'_>, action: &Action) -> Result<(), Refused> {
    let (room, user) = match action {
        Action::Mute { room, user, .. }
        | Action::Unmute { room, user }
        | Action::Kick { room, user, .. }
        | Action::Ban { room, user, .. }
        | Action::Unban { room, user } => (room, user),
        _ => unreachable!("only room sanctions come here"),
    };
    let (actor, target) = context.ranks(room, Some(user)).await?;
    if actor < Rank::Moderator {
        return Err(Refused::forbidden(format!("only the owners and moderators of {room} may")));
    }
    if target >= actor {
        return Err(Refused::forbidden(format!("{user} ranks as high as you in {room}")));
    }
    let needs_participant = matches!(action, Action::Mute { .. } | Action::Kick { .. });
    if needs_participant && target == Rank::Outsider {
        return Err(Refused::not_found(format!("{user} is not a participant of {room}")));
    }
    let sanction = |kind, until, reason: &Option<String>| {
        Act::Impose(Sanction {
            room: room.to_string(),
            user: user.to_string(),
            kind,
            until,
            reason: reason.clone(),
            by: context.name.to_owned(),
            at: now(),
        })
    };
    let lift =
        |kind| Act::Lift { room: room.to_string(), user: user.to_string(), kind, ended: None };
    let act = match action {
        Action::Mute { until, reason, .. } => sanction(Kind::Mute, *until, reason),
        Action::Ban { until, reason, .. } => sanction(Kind::Ban, *until, reason),
        Action::Unmute { .. } => lift(Kind::Mute),
        Action::Unban { .. } => lift(Kind::Ban),
        Action::Kick { .. } => Act::Kick { room: room.to_string(), user: user.to_string() },
        _ => unreachable!(),
    };
    if context.write(act, action).await? != Outcome::Done {
        let what = match action {
            Action::Unmute { .. } => "muted",
            Action::Unban { .. } => "banned",
            _ => "a participant",
        };
        return Err(Refused::not_found(format!("{user} is not {what} in {room}")));
    }
    match action {
        Action::Mute { .. } | Action::Unmute { .. } => context.refresh_rules(room).await?,
        Action::Kick { .. } | Action::Ban { .. } => remove(context, room, user),
        _ => {}
    }
    tell(context, Some(room), user, action);
    Ok(())
}

/// The user's connections leave the room on every instance, and it is told.
fn remove(context: &Context<'_>, room: &Room, user: &UserId) {
    context.hub.enforce(Notice::Kick { room: room.to_string(), user: user.to_string() });
    messages::tell_removed(context.hub, room, user, context.name);
}

/// Tells `user` what was done to it (`moderation`), on every connection, on every instance.
fn tell(context: &Context<'_>, room: Option<&Room>, user: &UserId, action: &Action) {
    let until = action.until().map(|until| protocol::format_rfc3339(protocol::time_of(until)));
    let event = Moderated {
        action: action.name(),
        user: Some(user),
        by: context.name,
        until,
        reason: action.reason(),
        role: None,
    };
    let frame = protocol::moderation_frame(room.map(|room| &**room), &event);
    context.hub.publish(Target::User(user.clone()), frame);
}

/// An admin bans a user from the instance (every connection closes, new ones are refused) or
/// lifts the ban.
pub(super) async fn instance_wide(context: &Context<'_>, action: &Action) -> Result<(), Refused> {
    if !context.actor.admin {
        return Err(Refused::forbidden("only an admin may ban a user from the instance"));
    }
    let (act, notice, user) = match action {
        Action::BanUser { user, until, reason } => {
            let sanction = Sanction {
                room: String::new(),
                user: user.to_string(),
                kind: Kind::Ban,
                until: *until,
                reason: reason.clone(),
                by: context.name.to_owned(),
                at: now(),
            };
            let notice = Notice::Ban { user: user.to_string(), until: *until };
            (Act::Impose(sanction), notice, user)
        }
        Action::UnbanUser { user } => {
            let lift = Act::Lift {
                room: String::new(),
                user: user.to_string(),
                kind: Kind::Ban,
                ended: None,
            };
            (lift, Notice::Unban { user: user.to_string() }, user)
        }
        _ => unreachable!("only instance bans come here"),
    };
    if context.write(act, action).await? != Outcome::Done {
        return Err(Refused::not_found(format!("{user} is not banned")));
    }
    // The user hears why before its connections close (the close drains what is queued).
    tell(context, None, user, action);
    context.hub.enforce(notice);
    Ok(())
}
