//! The REST endpoints of moderation in a room: `mutes`, `bans`, `kick`, `roles`, `transfer`,
//! `settings`, `archive` (and its `reports` and `moderation-log`: [`super::reports`]; a user's
//! blocks and instance-wide bans: [`super::blocks`]).
//!
//! Owns: their request and response bodies and status codes. The rules are the moderation
//! service's ([`crate::moderation`]), the same the WebSocket frames use. Must not: decide.

use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};

use super::acting::{
    act, answered, refused, sanction_json, time, unless_moderator, user_of, OnUser,
};
use super::caller::{query_param, Caller};
use super::{bad_request, error, json, read_json, refusal, reports, App, Body};
use crate::moderation::{self, Action, Refused, SettingsChange};
use crate::protocol::{self, ErrorCode, Room};
use crate::store::moderation::{Ask, Found, Kind, Settings};
use crate::store::Role;

/// Whether `/rooms/{room}/{rest}` is one of these endpoints.
pub fn is_room_endpoint(rest: &[&str]) -> bool {
    matches!(
        rest.first(),
        Some(
            &("mutes"
                | "bans"
                | "kick"
                | "roles"
                | "transfer"
                | "settings"
                | "archive"
                | "reports"
                | "moderation-log")
        )
    )
}

/// Routes `/api/v1/chat/rooms/{room}/{what}...` ([`is_room_endpoint`]).
pub async fn route_room(
    app: &App,
    request: Request<Incoming>,
    method: &Method,
    (room, rest): (&str, &[&str]),
    caller: &Caller,
) -> Response<Body> {
    let Ok(room) = protocol::validate_room(room) else {
        return bad_request("not a valid room name");
    };
    let query = request.uri().query().map(str::to_owned);
    match (method, rest) {
        (&Method::POST, ["mutes" | "bans" | "kick"]) => {
            on_user(app, request, caller, room, rest[0]).await
        }
        (&Method::DELETE, ["mutes" | "bans", user]) => {
            let Ok(user) = user_of(user) else { return bad_request("not a valid user id") };
            let action = match rest[0] {
                "mutes" => Action::Unmute { room, user },
                _ => Action::Unban { room, user },
            };
            act(app, caller, action, StatusCode::NO_CONTENT).await
        }
        (&Method::GET, ["mutes" | "bans"]) => {
            let kind = if rest[0] == "mutes" { Kind::Mute } else { Kind::Ban };
            sanctions(app, caller, room, kind).await
        }
        (&Method::PUT, ["roles", user]) => role(app, request, caller, room, user).await,
        (&Method::POST, ["transfer"]) => match read_json::<OnUser>(app, request).await {
            Ok(body) => match user_of(&body.user) {
                Ok(user) => {
                    act(app, caller, Action::Transfer { room, user }, StatusCode::NO_CONTENT).await
                }
                Err(why) => refused(why),
            },
            Err(response) => response,
        },
        (&Method::GET, ["settings"]) => settings(app, caller, room).await,
        (&Method::PATCH, ["settings"]) => change_settings(app, request, caller, room).await,
        (&Method::POST, ["archive"]) => {
            let reason = query_param(query.as_deref(), "reason");
            act(app, caller, Action::Archive { room, reason }, StatusCode::NO_CONTENT).await
        }
        (&Method::POST, ["reports"]) => reports::report(app, request, caller, room).await,
        (&Method::GET, ["reports"]) => reports::reports(app, caller, room, query.as_deref()).await,
        (&Method::POST, ["reports", report, "resolve"]) => {
            reports::resolve(app, request, caller, room, report).await
        }
        (&Method::GET, ["moderation-log"]) => {
            reports::log(app, caller, room, query.as_deref()).await
        }
        _ => error(StatusCode::NOT_FOUND, "not_found", "no such endpoint"),
    }
}

async fn on_user(
    app: &App,
    request: Request<Incoming>,
    caller: &Caller,
    room: Room,
    what: &str,
) -> Response<Body> {
    let body = match read_json::<OnUser>(app, request).await {
        Ok(body) => body,
        Err(response) => return response,
    };
    let user = match user_of(&body.user) {
        Ok(user) => user,
        Err(why) => return refused(why),
    };
    let until = match (what, body.duration.map(moderation::until_after).transpose()) {
        ("kick", _) if body.duration.is_some() => return bad_request("a kick takes no duration"),
        (_, Ok(until)) => until,
        (_, Err(why)) => return refused(why),
    };
    let reason = body.reason;
    let action = match what {
        "mutes" => Action::Mute { room, user, until, reason },
        "bans" => Action::Ban { room, user, until, reason },
        _ => Action::Kick { room, user, reason },
    };
    act(app, caller, action, StatusCode::NO_CONTENT).await
}

async fn sanctions(app: &App, caller: &Caller, room: Room, kind: Kind) -> Response<Body> {
    if let Some(refusal) = unless_moderator(app, caller, &room).await {
        return refusal;
    }
    let ask = Ask::Sanctions { room: room.to_string(), kind, now: moderation::now() };
    answered(app, ask, |found| {
        let Found::Sanctions(list) = found else { return None };
        let items: Vec<Value> = list.iter().map(sanction_json).collect();
        Some(json!({ "room": room, "items": items }))
    })
    .await
}

async fn role(
    app: &App,
    request: Request<Incoming>,
    caller: &Caller,
    room: Room,
    user: &str,
) -> Response<Body> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct RoleBody {
        role: String,
    }
    let user = match user_of(user) {
        Ok(user) => user,
        Err(why) => return refused(why),
    };
    let body = match read_json::<RoleBody>(app, request).await {
        Ok(body) => body,
        Err(response) => return response,
    };
    let Some(role @ (Role::Member | Role::Moderator)) = Role::parse(&body.role) else {
        return bad_request("role must be member or moderator (the owner changes by a transfer)");
    };
    act(app, caller, Action::SetRole { room, user, role }, StatusCode::NO_CONTENT).await
}

fn settings_json(room: &Room, settings: &Settings) -> Value {
    json!({
        "room": room,
        "title": settings.title,
        "topic": settings.topic,
        "slow_mode_ms": settings.slow_mode_ms,
        "archived_at": time(settings.archived_at),
    })
}

/// Anyone who may read the room sees its settings.
async fn settings(app: &App, caller: &Caller, room: Room) -> Response<Body> {
    let Some(store) = app.hub.store() else {
        return error(StatusCode::NOT_FOUND, "not_found", "no rooms");
    };
    let access = crate::rooms::may_read(store, &room, caller.user.as_deref(), caller.admin).await;
    if let Some((code, message)) = access.refusal(&room) {
        return refusal(code, &message);
    }
    match moderation::ask(&app.hub, Ask::Settings { room: room.to_string() }).await {
        Ok(Found::Settings(Some(settings))) => {
            json(StatusCode::OK, &settings_json(&room, &settings))
        }
        Ok(_) => error(StatusCode::NOT_FOUND, "not_found", &format!("no room {room}")),
        Err(why) => refused(why),
    }
}

async fn change_settings(
    app: &App,
    request: Request<Incoming>,
    caller: &Caller,
    room: Room,
) -> Response<Body> {
    let body = match read_json::<serde_json::Map<String, Value>>(app, request).await {
        Ok(body) => body,
        Err(response) => return response,
    };
    let change = match settings_change(body) {
        Ok(change) => change,
        Err(why) => return refused(why),
    };
    act(app, caller, Action::Settings { room, change }, StatusCode::NO_CONTENT).await
}

/// The settings a `PATCH` body names: `title` and `topic` (a string, or null to clear),
/// `slow_mode_ms`.
fn settings_change(body: serde_json::Map<String, Value>) -> Result<SettingsChange, Refused> {
    let bad = |message: String| Refused::new(ErrorCode::BadRequest, message);
    let mut change = SettingsChange::default();
    for (key, value) in body {
        let text = match &value {
            Value::Null => None,
            Value::String(text) => Some(text.clone()),
            _ if key == "slow_mode_ms" => None,
            _ => return Err(bad(format!("{key} must be a string or null"))),
        };
        match key.as_str() {
            "title" => change.title = Some(text),
            "topic" => change.topic = Some(text),
            "slow_mode_ms" => {
                let ms = value.as_i64().ok_or_else(|| {
                    bad("slow_mode_ms must be a whole number of milliseconds".into())
                })?;
                change.slow_mode_ms = Some(ms);
            }
            other => return Err(bad(format!("unknown setting {other}"))),
        }
    }
    Ok(change)
}
