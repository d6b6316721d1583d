//! The REST endpoints of a room's stored messages (`/api/v1/chat/rooms/{room}/messages...`):
//! history, deleting, editing, and an edited message's earlier versions.
//!
//! Owns: their request and response bodies and status codes. The rules come from
//! [`crate::messages`] (who may read) and [`crate::events`] (who may change a message), the same
//! ones the WebSocket requests use. Must not: touch the cache.

use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Value};

use super::caller::{page, page_limit, query_param, refused, Caller, UNNAMED};
use super::{bad_request, error, json, read_json, refusal, App, Body};
use crate::events::{self, Deletion, Edit, Refused};
use crate::messages::{self, History};
use crate::protocol::{self, Frame, Next, Page, Room, UserId};
use crate::rooms::{self, Access};

/// Routes `/api/v1/chat/rooms/{room}/messages{path}`.
pub async fn route(
    app: &App,
    request: Request<Incoming>,
    room: &str,
    path: &[&str],
    caller: &Caller,
) -> Response<Body> {
    let query = request.uri().query().map(str::to_owned);
    let query = query.as_deref();
    if room == protocol::GLOBAL_ROOM && request.method() == Method::GET && path.is_empty() {
        return global_history(app, caller, query).await;
    }
    let Ok(room) = protocol::validate_room(room) else {
        return bad_request("not a valid room name");
    };
    match (request.method(), path) {
        (&Method::GET, []) => history(app, room, caller, query).await,
        (&Method::DELETE, [id]) => delete(app, room, id, caller, query).await,
        (&Method::PATCH, [id]) => {
            let id = id.to_string();
            edit(app, room, id, caller, request).await
        }
        (&Method::GET, [id, "versions"]) => versions(app, room, id, caller, query).await,
        (&Method::GET, [id, "thread"]) => thread(app, room, id, caller, query).await,
        _ => error(StatusCode::NOT_FOUND, "not_found", "no such endpoint"),
    }
}

/// The answer to a change that was refused.
fn not_changed(why: Refused) -> Response<Body> {
    refusal(why.code(), why.message())
}

/// `GET /rooms/_global/messages?limit=&before=`: the stored chats to everyone, which every caller
/// may read, paged like a room's history (`after=` has no seq to start from: refused).
async fn global_history(app: &App, caller: &Caller, query: Option<&str>) -> Response<Body> {
    let global = history_cursor(query)
        .and_then(|page| Ok((protocol::history_of(protocol::GLOBAL_ROOM, &page)?, page)));
    match global {
        Ok((room, page)) => history_page(app, room, page, caller, query).await,
        Err(message) => bad_request(message),
    }
}

/// `GET /rooms/{room}/messages?limit=&before=` (the newest `limit` before the cursor) or
/// `?after=<seq>` (the oldest `limit` after the seq), oldest first either way.
async fn history(app: &App, room: Room, caller: &Caller, query: Option<&str>) -> Response<Body> {
    match history_cursor(query) {
        Ok(page) => history_page(app, room, page, caller, query).await,
        Err(message) => bad_request(message),
    }
}

async fn history_page(
    app: &App,
    room: Room,
    page: Page,
    caller: &Caller,
    query: Option<&str>,
) -> Response<Body> {
    let limit = match page_limit(query) {
        Ok(limit) => limit,
        Err(message) => return bad_request(message),
    };
    let user = caller.user.clone().unwrap_or_else(|| UserId::from(""));
    let request = History { id: None, room: room.clone(), user, admin: caller.admin, limit, page };
    match messages::read_history(&app.hub, &request).await {
        Ok((frames, next)) => {
            let messages: Vec<&RawValue> = frames.iter().filter_map(raw).collect();
            let mut answer = json!({ "room": room, "messages": messages });
            match next {
                Next::Before(pos) => answer["next_before"] = json!(pos.map(|pos| pos.to_string())),
                Next::After(seq) => answer["next_after"] = json!(seq),
            }
            json(StatusCode::OK, &answer)
        }
        Err(access) => refused(&room, access),
    }
}

/// `before=<cursor>` or `after=<seq>` (not both).
fn history_cursor(query: Option<&str>) -> Result<Page, &'static str> {
    let before = query_param(query, "before").as_deref().map(protocol::parse_cursor).transpose()?;
    let after = query_param(query, "after")
        .map(|after| after.parse::<i64>().ok().filter(|seq| *seq >= 0).ok_or("after must be a seq"))
        .transpose()?;
    match (before, after) {
        (Some(_), Some(_)) => Err("give before or after, not both"),
        (_, Some(after)) => Ok(Page::After(after)),
        (before, None) => Ok(Page::Before(before)),
    }
}

/// A frame as a JSON value to put in an answer, as it was encoded.
pub(super) fn raw(frame: &Frame) -> Option<&RawValue> {
    serde_json::from_str(frame.as_str()).ok()
}

/// `GET /rooms/{room}/messages/{id}/thread?limit=&after=`: the replies to a message, oldest first;
/// `next_after` is the cursor of the next page (`null` on the last).
async fn thread(
    app: &App,
    room: Room,
    id: &str,
    caller: &Caller,
    query: Option<&str>,
) -> Response<Body> {
    let (limit, after) = match page(query, "after") {
        Ok(page) => page,
        Err(message) => return bad_request(message),
    };
    let user = caller.user.clone().unwrap_or_else(|| UserId::from(""));
    let request = History {
        id: None,
        room: room.clone(),
        user,
        admin: caller.admin,
        limit,
        page: Page::Before(None),
    };
    match messages::read_thread(&app.hub, &request, id, after).await {
        Ok((frames, next)) => {
            let replies: Vec<&RawValue> = frames.iter().filter_map(raw).collect();
            let next_after = next.map(|pos| pos.to_string());
            json(
                StatusCode::OK,
                &json!({ "room": room, "id": id, "messages": replies, "next_after": next_after }),
            )
        }
        Err(access) => refused(&room, access),
    }
}

/// `DELETE /rooms/{room}/messages/{id}?from=`: soft-deletes (a `message_deleted` event).
async fn delete(
    app: &App,
    room: Room,
    id: &str,
    caller: &Caller,
    query: Option<&str>,
) -> Response<Body> {
    let Some(user) = caller.user.clone() else {
        return bad_request(UNNAMED);
    };
    let from = query_param(query, "from");
    let request =
        Deletion { id: None, room, message: id.to_owned(), from, user, admin: caller.admin };
    match events::delete_message(&app.hub, &request).await {
        Ok(seq) => json(StatusCode::OK, &json!({ "id": id, "deleted": true, "seq": seq })),
        Err(why) => not_changed(why),
    }
}

#[derive(Deserialize)]
struct NewContent {
    content: String,
}

/// `PATCH /rooms/{room}/messages/{id}` `{"content": "..."}`: the author edits its message (a
/// `message_edited` event).
async fn edit(
    app: &App,
    room: Room,
    id: String,
    caller: &Caller,
    request: Request<Incoming>,
) -> Response<Body> {
    let Some(user) = caller.user.clone() else {
        return bad_request(UNNAMED);
    };
    let body: NewContent = match read_json(app, request).await {
        Ok(body) => body,
        Err(answer) => return answer,
    };
    if body.content.chars().count() > app.hub.settings().max_content {
        let code = protocol::ErrorCode::ContentTooLong;
        return refusal(code, "content is longer than the content limit");
    }
    let request = Edit { id: None, room, message: id.clone(), content: body.content, user };
    match events::edit_message(&app.hub, &request).await {
        Ok(seq) => json(StatusCode::OK, &json!({ "id": id, "edited": true, "seq": seq })),
        Err(why) => not_changed(why),
    }
}

/// `GET /rooms/{room}/messages/{id}/versions?from=<author>`: the contents an edit replaced, oldest
/// first; for the room's owners and moderators, and admins.
async fn versions(
    app: &App,
    room: Room,
    id: &str,
    caller: &Caller,
    query: Option<&str>,
) -> Response<Body> {
    let Some(store) = app.hub.store() else {
        return not_changed(Refused::NotFound);
    };
    let Some(from) = query_param(query, "from") else {
        return bad_request("name the message's author with from=");
    };
    match rooms::may_moderate(store, &room, caller.user.as_deref(), caller.admin).await {
        Access::Allowed => {}
        access => return refused(&room, access),
    }
    match events::versions(&app.hub, &room, id, &from).await {
        Ok(found) => {
            let versions: Vec<Value> = found
                .iter()
                .map(|(data, at)| {
                    let data = serde_json::from_str::<Value>(data).unwrap_or(Value::Null);
                    json!({ "data": data, "replaced_at": protocol::format_rfc3339(*at) })
                })
                .collect();
            json(StatusCode::OK, &json!({ "id": id, "from": from, "versions": versions }))
        }
        Err(why) => not_changed(why),
    }
}
