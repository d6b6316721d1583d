//! What the moderation endpoints share: an action done for the caller and its answer, and the
//! shapes their bodies share.
//!
//! Owns: those helpers. Must not: decide; [`crate::moderation`] does.

use hyper::{Response, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};

use super::caller::Caller;
use super::{refusal, App, Body};
use crate::moderation::{self, Action, Actor, Refused};
use crate::protocol::{self, format_rfc3339, time_of, ErrorCode, Millis, Room, UserId};
use crate::store::moderation::{Ask, Found, Sanction};

/// `{"user": id, "duration"?: seconds, "reason"?: text}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct OnUser {
    pub user: String,
    pub duration: Option<i64>,
    pub reason: Option<String>,
}

pub(super) fn answer(done: Result<(), Refused>, status: StatusCode) -> Response<Body> {
    match done {
        Ok(()) => {
            Response::builder().status(status).body(super::empty()).expect("a valid response")
        }
        Err(refused) => refusal(refused.code, &refused.message),
    }
}

pub(super) fn refused(refused: Refused) -> Response<Body> {
    refusal(refused.code, &refused.message)
}

pub(super) fn user_of(name: &str) -> Result<UserId, Refused> {
    protocol::validate_user(name)
        .map_err(|why| Refused::new(ErrorCode::BadRequest, format!("user: {why}")))
}

pub(super) fn time(at: Option<Millis>) -> Value {
    at.map_or(Value::Null, |at| json!(format_rfc3339(time_of(at))))
}

pub(super) async fn act(
    app: &App,
    caller: &Caller,
    action: Action,
    status: StatusCode,
) -> Response<Body> {
    answer(moderation::act(&app.hub, &actor(caller), action).await, status)
}

/// Who the caller is, as the moderation service knows actors.
pub(super) fn actor(caller: &Caller) -> Actor {
    Actor { user: caller.user.clone(), admin: caller.admin }
}

/// The refusal of a caller who is not among `room`'s moderators (nor an admin); `None`: it is.
pub(super) async fn unless_moderator(
    app: &App,
    caller: &Caller,
    room: &Room,
) -> Option<Response<Body>> {
    moderation::may_see(&app.hub, &actor(caller), room).await.err().map(refused)
}

/// The answer to a moderation question: `body` makes the JSON of what it found (`None`: an answer
/// of another kind, which the store never gives); a store that cannot answer is `unavailable`.
pub(super) async fn answered(
    app: &App,
    ask: Ask,
    body: impl FnOnce(Found) -> Option<Value>,
) -> Response<Body> {
    match moderation::ask(&app.hub, ask).await.map(body) {
        Ok(Some(body)) => super::json(StatusCode::OK, &body),
        Ok(None) => refused(Refused::unavailable()),
        Err(why) => refused(why),
    }
}

pub(super) fn sanction_json(sanction: &Sanction) -> Value {
    json!({
        "user": sanction.user,
        "kind": sanction.kind.as_str(),
        "until": time(sanction.until),
        "reason": sanction.reason,
        "by": sanction.by,
        "at": time(Some(sanction.at)),
    })
}
