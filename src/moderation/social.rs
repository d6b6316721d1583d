//! What any user may do: report a message (once), and block another user; and what moderators do
//! with reports.
//!
//! Owns: their checks and effects: a report is told to the room's moderators (`moderation`,
//! action `report`); a block takes the blocked user out of the direct room with the blocker on
//! every instance (the room's rules keep it out: [`crate::store::reads::Bar::Blocked`]).

use super::{now, Action, Context, Refused};
use crate::events;
use crate::protocol::{ErrorCode, Moderated, Room, UserId};
use crate::rooms::{self, Access};
use crate::rules::Notice;
use crate::store::moderation::{Act, Report};
use crate::store::ops::Outcome;

pub(super) async fn act(context: &Context<'_>, action: &Action) -> Result<(), Refused> {
    match action {
        Action::Report { room, message, from, reason } => {
            report(context, action, room, (message, from.clone()), reason).await
        }
        Action::Resolve { room, report, resolution } => {
            super::may_see(context.hub, context.actor, room).await?;
            let act = Act::Resolve {
                room: room.to_string(),
                report: *report,
                by: context.name.to_owned(),
                resolution: resolution.clone(),
                at: now(),
            };
            match context.write(act, action).await? {
                Outcome::Done => Ok(()),
                _ => Err(Refused::not_found(format!("no open report {report} in {room}"))),
            }
        }
        Action::Block { user } | Action::Unblock { user } => block(context, action, user).await,
        _ => unreachable!("only reports and blocks come here"),
    }
}

async fn report(
    context: &Context<'_>,
    action: &Action,
    room: &Room,
    (message, from): (&str, Option<String>),
    reason: &str,
) -> Result<(), Refused> {
    let Some(user) = context.actor.user.clone() else {
        return Err(Refused::new(ErrorCode::BadRequest, "name yourself to report a message"));
    };
    if reason.trim().is_empty() {
        return Err(Refused::new(ErrorCode::BadRequest, "a report needs a reason"));
    }
    match rooms::may_read(context.store, room, Some(&user), context.actor.admin).await {
        Access::Allowed => {}
        refusal => return Err(Refused::of(room, refusal)),
    }
    let (author, ..) = events::target(context.hub, room, message, from, &user)
        .await
        .map_err(|refused| Refused::new(refused.code(), refused.message()))?;
    let report = Report {
        pos: 0,
        room: room.to_string(),
        sender: author,
        message: message.to_owned(),
        reporter: user.to_string(),
        reason: reason.to_owned(),
        at: now(),
        resolved: None,
    };
    match context.write(Act::Report(report), action).await? {
        Outcome::Done => {}
        _ => return Err(Refused::new(ErrorCode::Conflict, "you reported this message already")),
    }
    let by = context.name;
    let event = Moderated { action: "report", user: Some(message), by, ..Moderated::default() };
    super::tell_moderators(context.hub, context.store, room, &event).await;
    Ok(())
}

async fn block(context: &Context<'_>, action: &Action, user: &UserId) -> Result<(), Refused> {
    let Some(me) = context.actor.user.clone() else {
        return Err(Refused::new(ErrorCode::BadRequest, "name yourself to block a user"));
    };
    if me == *user {
        return Err(Refused::new(ErrorCode::BadRequest, "you cannot block yourself"));
    }
    let (me_name, blocked) = (me.to_string(), user.to_string());
    let (act, blocking) = match action {
        Action::Block { .. } => (Act::Block { user: me_name, blocked, at: now() }, true),
        _ => (Act::Unblock { user: me_name, blocked }, false),
    };
    match (context.write(act, action).await?, blocking) {
        (Outcome::Done, true) => {
            if let Some(room) = rooms::direct_room(&me, user) {
                context
                    .hub
                    .enforce(Notice::Kick { room: room.to_string(), user: user.to_string() });
            }
            Ok(())
        }
        (Outcome::Done, false) => Ok(()),
        (_, true) => Err(Refused::new(ErrorCode::Conflict, format!("you blocked {user} already"))),
        (_, false) => Err(Refused::not_found(format!("you have not blocked {user}"))),
    }
}
