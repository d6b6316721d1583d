//! The REST endpoints of rooms, participants and stored messages (`/api/v1/chat/rooms...`).
//!
//! Owns: their request and response bodies and status codes. The rules come from [`crate::rooms`]
//! (who may read, join, manage) and from the store's operations (who may delete), the same ones the
//! WebSocket requests use. Must not: touch the cache, except to tell a removed participant's shard.

use std::time::SystemTime;

use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Value};

use super::{bad_request, error, json, read_json, refusal, store_unavailable, App, Body};
use crate::auth::Identity;
use crate::mailbox::Delivery;
use crate::messages::{self, Deletion, History, NotDeleted};
use crate::protocol::{
    self, millis, time_of, Frame, Next, Page, Room, UserId, HISTORY_DEFAULT, HISTORY_MAX,
};
use crate::rooms::{self, Access, Added};
use crate::store::ops::{Answer, Outcome, Read, Write};
use crate::store::{Role, RoomInfo, RoomType, Store};

/// Who is calling: the token's `sub` with authentication on, `?user=` with it off.
#[derive(Debug)]
pub struct Caller {
    pub user: Option<UserId>,
    pub admin: bool,
}

impl Caller {
    pub fn of(identity: Option<Identity>, query: Option<&str>) -> Result<Self, &'static str> {
        if let Some(identity) = identity {
            return Ok(Self { user: Some(identity.user), admin: identity.permissions.admin });
        }
        let user =
            query_param(query, "user").map(|user| protocol::validate_user(&user)).transpose()?;
        Ok(Self { user, admin: false })
    }

    fn name(&self) -> &str {
        self.user.as_deref().unwrap_or_default()
    }
}

fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
}

/// The answer to a refusal of the room rules.
fn refused(room: &str, access: Access) -> Response<Body> {
    let (code, message) = access.refusal(room).expect("only refusals are answered with an error");
    refusal(code, &message)
}

/// Routes `/api/v1/chat/rooms/{path}`.
pub async fn route(
    app: &App,
    request: Request<Incoming>,
    method: &Method,
    path: &[&str],
    caller: &Caller,
) -> Response<Body> {
    let Some(store) = app.hub.store() else {
        let message = "this server stores no rooms (it runs with --database-url none)";
        return error(StatusCode::NOT_FOUND, "not_found", message);
    };
    let query = request.uri().query().map(str::to_owned);
    let query = query.as_deref();
    match (method, path) {
        (&Method::GET, []) => list(store, caller, query).await,
        (&Method::POST, []) => create(app, store, caller, request).await,
        (&Method::GET, [room, "participants"]) => participants(store, room, caller).await,
        (&Method::POST, [room, "participants", user]) => {
            add_participant(app, store, room, user, caller, request).await
        }
        (&Method::DELETE, [room, "participants", user]) => {
            remove_participant(app, store, room, user, caller).await
        }
        (&Method::GET, [room, "messages"]) => history(app, room, caller, query).await,
        (&Method::DELETE, [room, "messages", id]) => delete(app, room, id, caller, query).await,
        _ => error(StatusCode::NOT_FOUND, "not_found", "no such endpoint"),
    }
}

fn room_json(room: &RoomInfo) -> Value {
    json!({
        "id": room.id,
        "type": room.kind.as_str(),
        "created_at": protocol::format_rfc3339(time_of(room.created_at)),
        "created_by": room.created_by,
    })
}

/// `GET /rooms?limit=&after=`: public rooms and the caller's, by name.
async fn list(store: &Store, caller: &Caller, query: Option<&str>) -> Response<Body> {
    let limit = match page_limit(query) {
        Ok(limit) => limit,
        Err(message) => return bad_request(message),
    };
    let after = query_param(query, "after");
    let read = Read::Rooms { user: caller.name().to_owned(), after, limit };
    let Ok(Answer::Rooms(found)) = store.read(read).await else { return store_unavailable() };
    let next_after =
        found.last().filter(|_| found.len() as i64 == limit).map(|room| room.id.clone());
    let rooms: Vec<Value> = found.iter().map(room_json).collect();
    json(StatusCode::OK, &json!({ "rooms": rooms, "next_after": next_after }))
}

/// `limit=` of a page: 1 to 100, 50 when absent.
fn page_limit(query: Option<&str>) -> Result<i64, &'static str> {
    match query_param(query, "limit") {
        None => Ok(HISTORY_DEFAULT),
        Some(limit) => limit
            .parse::<i64>()
            .ok()
            .filter(|limit| (1..=HISTORY_MAX).contains(limit))
            .ok_or("limit must be 1 to 100"),
    }
}

#[derive(Deserialize)]
struct NewRoom {
    name: Option<String>,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    members: Vec<String>,
}

/// `POST /rooms` `{name, type, members?}`: 201, the creator owns it; 409 when the name is taken.
async fn create(
    app: &App,
    store: &Store,
    caller: &Caller,
    request: Request<Incoming>,
) -> Response<Body> {
    let Some(creator) = caller.user.clone() else {
        return bad_request("name yourself: a token, or ?user= with authentication off");
    };
    let body: NewRoom = match read_json(app, request).await {
        Ok(body) => body,
        Err(refusal) => return refusal,
    };
    let (name, members) = match new_room_name(&creator, &body) {
        Ok(named) => named,
        Err(message) => return bad_request(&message),
    };
    let kind = RoomType::parse(&body.kind).expect("checked by new_room_name");
    let created_at = millis(SystemTime::now());
    let room = RoomInfo {
        id: name.to_string(),
        kind,
        created_at,
        created_by: creator.to_string(),
        metadata: None,
    };
    let write = Write::CreateRoom { room: room.clone(), members: members.clone() };
    match store.write_and_wait(write).await {
        Ok(Outcome::Done) => {
            let users = members.into_iter().filter(|member| **member != *creator).collect();
            let added = Added { room: name.clone(), kind, by: creator.to_string(), users };
            messages::tell_added(&app.hub, &added);
            json(StatusCode::CREATED, &json!({ "room": room_json(&room) }))
        }
        Ok(Outcome::Exists) => {
            error(StatusCode::CONFLICT, "conflict", &format!("the room name {name} is taken"))
        }
        _ => store_unavailable(),
    }
}

/// The name and the members of a room to create, checked against its type.
fn new_room_name(creator: &str, body: &NewRoom) -> Result<(Room, Vec<String>), String> {
    let kind = RoomType::parse(&body.kind).ok_or("type must be public, private or direct")?;
    let members: Vec<String> = body
        .members
        .iter()
        .map(|m| protocol::validate_user(m).map(|m| m.to_string()))
        .collect::<Result<_, _>>()?;
    if kind != RoomType::Direct {
        let name = body.name.as_deref().ok_or("missing name")?;
        if name.starts_with("dm:") {
            return Err("names starting with dm: are direct rooms".into());
        }
        return Ok((protocol::validate_room(name)?, members));
    }
    let others: Vec<&String> = members.iter().filter(|m| m.as_str() != creator).collect();
    let [other] = others.as_slice() else {
        return Err("a direct room has exactly two participants: name the other in members".into());
    };
    let name = rooms::direct_room(creator, other)
        .ok_or("these two users cannot share a direct room (ids with ':' or the same user)")?;
    if body.name.as_deref().is_some_and(|given| given != &*name) {
        return Err(format!("a direct room of these two is named {name}"));
    }
    Ok((name, vec![creator.to_owned(), other.to_string()]))
}

/// `GET /rooms/{room}/participants`.
async fn participants(store: &Store, room: &str, caller: &Caller) -> Response<Body> {
    match rooms::may_read(store, room, caller.user.as_deref(), caller.admin).await {
        Access::Allowed => {}
        access => return refused(room, access),
    }
    let Ok(Answer::Participants(found)) =
        store.read(Read::Participants { room: room.into() }).await
    else {
        return store_unavailable();
    };
    let participants: Vec<Value> = found
        .iter()
        .map(|p| {
            let joined_at = protocol::format_rfc3339(time_of(p.joined_at));
            json!({ "user": p.user, "role": p.role.as_str(), "joined_at": joined_at })
        })
        .collect();
    json(StatusCode::OK, &json!({ "room": room, "participants": participants }))
}

#[derive(Deserialize, Default)]
struct NewParticipant {
    role: Option<String>,
}

/// `POST /rooms/{room}/participants/{user}` (optional body `{"role":"member|moderator"}`): for
/// the room's owner or an admin.
async fn add_participant(
    app: &App,
    store: &Store,
    room: &str,
    user: &str,
    caller: &Caller,
    request: Request<Incoming>,
) -> Response<Body> {
    let Ok(user) = protocol::validate_user(user) else { return bad_request("not a valid user id") };
    let info = match rooms::may_manage(store, room, caller.user.as_deref(), caller.admin).await {
        Ok(info) => info,
        Err(access) => return refused(room, access),
    };
    if rooms::direct_pair(room).is_some() {
        return bad_request("a direct room has exactly its two participants");
    }
    let has_body = request.headers().get(hyper::header::CONTENT_LENGTH).is_some_and(|l| l != "0");
    let body: NewParticipant = if has_body {
        match read_json(app, request).await {
            Ok(body) => body,
            Err(refusal) => return refusal,
        }
    } else {
        NewParticipant::default()
    };
    let role = match body.role.as_deref().map(Role::parse) {
        None => Role::Member,
        Some(Some(role @ (Role::Member | Role::Moderator))) => role,
        Some(_) => return bad_request("role must be member or moderator"),
    };
    let at = millis(SystemTime::now());
    let write = Write::AddParticipant { room: room.into(), user: user.to_string(), role, at };
    match store.write_and_wait(write).await {
        Ok(Outcome::Done) => {
            if let (Some(by), Ok(name)) = (&caller.user, protocol::validate_room(room)) {
                let (kind, users) = (info.kind, vec![user.to_string()]);
                let added = Added { room: name, kind, by: by.to_string(), users };
                messages::tell_added(&app.hub, &added);
            }
            json(StatusCode::CREATED, &json!({ "room": room, "user": user, "role": role.as_str() }))
        }
        Ok(_) => refused(room, Access::NotFound),
        Err(_) => store_unavailable(),
    }
}

/// `DELETE /rooms/{room}/participants/{user}`: for the room's owner, an admin, or the user itself
/// (leaving). Its connections leave the room at once.
async fn remove_participant(
    app: &App,
    store: &Store,
    room: &str,
    user: &str,
    caller: &Caller,
) -> Response<Body> {
    let (Ok(user), Ok(room_name)) = (protocol::validate_user(user), protocol::validate_room(room))
    else {
        return bad_request("not a valid user id or room name");
    };
    if caller.user.as_deref() != Some(&*user) {
        let manages = rooms::may_manage(store, room, caller.user.as_deref(), caller.admin).await;
        if let Err(access) = manages {
            return refused(room, access);
        }
    }
    match store
        .write_and_wait(Write::RemoveParticipant { room: room.into(), user: user.to_string() })
        .await
    {
        Ok(Outcome::Done) => {
            let shard = app.hub.router().shard_of_user(&user);
            app.hub.router().deliver(shard, Delivery::Kick { user, room: room_name });
            Response::builder()
                .status(StatusCode::NO_CONTENT)
                .body(Body::default())
                .expect("a valid response")
        }
        Ok(_) => error(StatusCode::NOT_FOUND, "not_found", "not a participant of this room"),
        Err(_) => store_unavailable(),
    }
}

/// `GET /rooms/{room}/messages?limit=&before=` (the newest `limit` before the cursor) or
/// `?after=<seq>` (the oldest `limit` after the seq), oldest first either way.
async fn history(app: &App, room: &str, caller: &Caller, query: Option<&str>) -> Response<Body> {
    let Ok(room) = protocol::validate_room(room) else {
        return bad_request("not a valid room name");
    };
    let limit = match page_limit(query) {
        Ok(limit) => limit,
        Err(message) => return bad_request(message),
    };
    let page = match history_cursor(query) {
        Ok(page) => page,
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

fn raw(frame: &Frame) -> Option<&RawValue> {
    serde_json::from_str(frame.as_str()).ok()
}

/// `DELETE /rooms/{room}/messages/{id}?from=`: soft-deletes and tells the room.
async fn delete(
    app: &App,
    room: &str,
    id: &str,
    caller: &Caller,
    query: Option<&str>,
) -> Response<Body> {
    let Ok(room) = protocol::validate_room(room) else {
        return bad_request("not a valid room name");
    };
    let Some(user) = caller.user.clone() else {
        return bad_request("name yourself: a token, or ?user= with authentication off");
    };
    let from = query_param(query, "from");
    let request =
        Deletion { id: None, room, message: id.to_owned(), from, user, admin: caller.admin };
    match messages::delete_message(&app.hub, &request).await {
        Ok(()) => json(StatusCode::OK, &json!({ "id": id, "deleted": true })),
        Err(why) => {
            let status = match why {
                NotDeleted::Forbidden => StatusCode::FORBIDDEN,
                NotDeleted::Ambiguous => StatusCode::CONFLICT,
                NotDeleted::NotFound => StatusCode::NOT_FOUND,
                NotDeleted::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            };
            error(status, why.code().as_str(), why.message())
        }
    }
}
