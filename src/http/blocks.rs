//! The REST endpoints of a user's blocks and of instance-wide bans.
//!
//! Owns: their bodies and status codes. Must not: decide; [`crate::moderation`] does.

use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{json, Value};

use super::acting::{act, answered, refused, sanction_json, time, user_of, OnUser};
use super::caller::Caller;
use super::{bad_request, error, read_json, App, Body};
use crate::moderation::{self, Action};
use crate::store::moderation::{Ask, Found, Kind};

/// `/api/v1/chat/users/{user}/blocks...`: the user's own blocks.
pub async fn route_blocks(
    app: &App,
    request: Request<Incoming>,
    method: &Method,
    (user, rest): (&str, &[&str]),
    caller: &Caller,
) -> Response<Body> {
    if caller.user.as_deref() != Some(user) {
        return error(StatusCode::FORBIDDEN, "forbidden", "a user's blocks are its own");
    }
    match (method, rest) {
        (&Method::GET, []) => {
            answered(app, Ask::Blocks { user: user.to_owned() }, |found| {
                let Found::Blocks(list) = found else { return None };
                let items: Vec<Value> = list
                    .iter()
                    .map(|(user, at)| json!({"user": user, "at": time(Some(*at))}))
                    .collect();
                Some(json!({ "items": items }))
            })
            .await
        }
        (&Method::POST, []) => match read_json::<OnUser>(app, request).await {
            Ok(OnUser { user, duration: None, reason: None }) => match user_of(&user) {
                Ok(user) => act(app, caller, Action::Block { user }, StatusCode::NO_CONTENT).await,
                Err(why) => refused(why),
            },
            Ok(_) => bad_request("a block takes only {\"user\": id}"),
            Err(response) => response,
        },
        (&Method::DELETE, [blocked]) => match user_of(blocked) {
            Ok(user) => act(app, caller, Action::Unblock { user }, StatusCode::NO_CONTENT).await,
            Err(why) => refused(why),
        },
        _ => error(StatusCode::NOT_FOUND, "not_found", "no such endpoint"),
    }
}

/// `/api/v1/chat/bans...`: instance-wide bans, for admins.
pub async fn route_bans(
    app: &App,
    request: Request<Incoming>,
    method: &Method,
    rest: &[&str],
    caller: &Caller,
) -> Response<Body> {
    match (method, rest) {
        (&Method::GET, []) if caller.admin => {
            let ask =
                Ask::Sanctions { room: String::new(), kind: Kind::Ban, now: moderation::now() };
            answered(app, ask, |found| {
                let Found::Sanctions(list) = found else { return None };
                Some(json!({ "items": list.iter().map(sanction_json).collect::<Vec<Value>>() }))
            })
            .await
        }
        (&Method::GET, []) => error(StatusCode::FORBIDDEN, "forbidden", "only an admin may"),
        (&Method::POST, []) => {
            let body = match read_json::<OnUser>(app, request).await {
                Ok(body) => body,
                Err(response) => return response,
            };
            let user = match user_of(&body.user) {
                Ok(user) => user,
                Err(why) => return refused(why),
            };
            let until = match body.duration.map(moderation::until_after).transpose() {
                Ok(until) => until,
                Err(why) => return refused(why),
            };
            let action = Action::BanUser { user, until, reason: body.reason };
            act(app, caller, action, StatusCode::NO_CONTENT).await
        }
        (&Method::DELETE, [user]) => match user_of(user) {
            Ok(user) => act(app, caller, Action::UnbanUser { user }, StatusCode::NO_CONTENT).await,
            Err(why) => refused(why),
        },
        _ => error(StatusCode::NOT_FOUND, "not_found", "no such endpoint"),
    }
}
