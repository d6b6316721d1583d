//! The REST endpoints of a room's reports and moderation log.
//!
//! Owns: their bodies and status codes. Must not: decide; [`crate::moderation`] does.

use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};

use super::acting::{act, answered, time, unless_moderator};
use super::caller::{page, query_param, Caller};
use super::{bad_request, read_json, App, Body};
use crate::moderation::Action;
use crate::protocol::Room;
use crate::store::moderation::{Ask, Found, Logged, Report};

pub(super) async fn report(
    app: &App,
    request: Request<Incoming>,
    caller: &Caller,
    room: Room,
) -> Response<Body> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct ReportBody {
        message: String,
        from: Option<String>,
        reason: String,
    }
    let body = match read_json::<ReportBody>(app, request).await {
        Ok(body) => body,
        Err(response) => return response,
    };
    let action =
        Action::Report { room, message: body.message, from: body.from, reason: body.reason };
    act(app, caller, action, StatusCode::CREATED).await
}

fn report_json(report: &Report) -> Value {
    let resolved = report.resolved.as_ref().map(
        |(by, resolution, at)| json!({ "by": by, "resolution": resolution, "at": time(Some(*at)) }),
    );
    json!({
        "id": report.pos,
        "room": report.room,
        "message": report.message,
        "from": report.sender,
        "reporter": report.reporter,
        "reason": report.reason,
        "at": time(Some(report.at)),
        "resolved": resolved,
    })
}

/// Open reports of the room, oldest first (`?all=true`: resolved ones too), for its moderators.
pub(super) async fn reports(
    app: &App,
    caller: &Caller,
    room: Room,
    query: Option<&str>,
) -> Response<Body> {
    if let Some(refusal) = unless_moderator(app, caller, &room).await {
        return refusal;
    }
    let (limit, after) = match page(query, "after") {
        Ok(page) => page,
        Err(message) => return bad_request(message),
    };
    let all = query_param(query, "all").is_some_and(|all| all == "true");
    let ask = Ask::Reports { room: Some(room.to_string()), all, after: after.unwrap_or(0), limit };
    answered(app, ask, |found| {
        let Found::Reports(list) = found else { return None };
        let next = (list.len() as i64 == limit).then(|| list.last().map(|r| r.pos)).flatten();
        let items: Vec<Value> = list.iter().map(report_json).collect();
        Some(json!({ "room": room, "items": items, "next_after": next }))
    })
    .await
}

pub(super) async fn resolve(
    app: &App,
    request: Request<Incoming>,
    caller: &Caller,
    room: Room,
    report: &str,
) -> Response<Body> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct ResolveBody {
        resolution: String,
    }
    let Ok(report) = report.parse::<i64>() else { return bad_request("a report id is a number") };
    match read_json::<ResolveBody>(app, request).await {
        Ok(body) => {
            let action = Action::Resolve { room, report, resolution: body.resolution };
            act(app, caller, action, StatusCode::NO_CONTENT).await
        }
        Err(response) => response,
    }
}

fn logged_json(pos: i64, line: &Logged) -> Value {
    json!({
        "id": pos,
        "actor": line.actor,
        "target": line.target,
        "action": line.action,
        "reason": line.reason,
        "until": time(line.until),
        "at": time(Some(line.at)),
    })
}

/// The room's moderation log, newest first, for its moderators.
pub(super) async fn log(
    app: &App,
    caller: &Caller,
    room: Room,
    query: Option<&str>,
) -> Response<Body> {
    if let Some(refusal) = unless_moderator(app, caller, &room).await {
        return refusal;
    }
    let (limit, before) = match page(query, "before") {
        Ok(page) => page,
        Err(message) => return bad_request(message),
    };
    let ask = Ask::Log { room: room.to_string(), before: before.unwrap_or(i64::MAX), limit };
    answered(app, ask, |found| {
        let Found::Log(lines) = found else { return None };
        let next = (lines.len() as i64 == limit).then(|| lines.last().map(|l| l.0)).flatten();
        let items: Vec<Value> = lines.iter().map(|(pos, line)| logged_json(*pos, line)).collect();
        Some(json!({ "room": room, "items": items, "next_before": next }))
    })
    .await
}
