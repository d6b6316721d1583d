//! The REST endpoints of rooms and participants (`/api/v1/chat/rooms...`; a room's messages are
//! [`super::messages`]).
//!
//! Owns: their request and response bodies and status codes. The rules come from [`crate::rooms`]
//! (who may read, join, manage), the same ones the WebSocket requests use. Must not: touch the
//! cache, except to tell a removed participant's shard.

use std::collections::HashMap;
use std::time::SystemTime;

use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};

use super::caller::{page_limit, query_param, refused, Caller, UNNAMED};
use super::{bad_request, error, json, read_json, store_unavailable, App, Body};
use crate::mailbox::Delivery;
use crate::messages;
use crate::protocol::{self, millis, time_of, Room};
use crate::rooms::{self, Access, Added};
use crate::store::ops::{Answer, Outcome, Read, Write};
use crate::store::reads::{Bar, Head};
use crate::store::{Role, RoomInfo, RoomType, Store};

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
        (&Method::POST, [room, "read"]) => mark_read(app, room, caller, request).await,
        (&Method::GET, [room, "receipts"]) => receipts(app, store, room, caller).await,
        _ => error(StatusCode::NOT_FOUND, "not_found", "no such endpoint"),
    }
}

/// A room's entry with where it stands for the caller: `last_seq`, `unread` (the stream items after
/// what the caller marked read; `null` for a room it takes no part in) and `last_message`.
fn with_head(mut entry: Value, head: Option<Head>) -> Value {
    let Some(head) = head else { return entry };
    let unread = head.last_read.map(|read| (head.last_seq - read).max(0));
    let last = head.last_message.as_ref().and_then(messages::stored_frame);
    let last = last.and_then(|frame| serde_json::from_str::<Value>(frame.as_str()).ok());
    entry["last_seq"] = json!(head.last_seq);
    entry["unread"] = json!(unread);
    entry["last_message"] = last.unwrap_or(Value::Null);
    entry
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
    let ids = found.iter().map(|room| room.id.clone()).collect();
    let read = Read::Heads { user: caller.name().to_owned(), rooms: ids };
    let Ok(Answer::Heads(heads)) = store.read(read).await else { return store_unavailable() };
    let mut heads: HashMap<String, Head> =
        heads.into_iter().map(|head| (head.room.clone(), head)).collect();
    let rooms: Vec<Value> =
        found.iter().map(|room| with_head(room_json(room), heads.remove(&room.id))).collect();
    json(StatusCode::OK, &json!({ "rooms": rooms, "next_after": next_after }))
}

#[derive(Deserialize)]
struct ReadUpTo {
    seq: u64,
}

/// `POST /rooms/{room}/read` `{"seq": N}`: the caller read the room up to `seq`.
async fn mark_read(
    app: &App,
    room: &str,
    caller: &Caller,
    request: Request<Incoming>,
) -> Response<Body> {
    let Ok(room) = protocol::validate_room(room) else {
        return bad_request("not a valid room name");
    };
    let Some(user) = caller.user.clone() else {
        return bad_request(UNNAMED);
    };
    let body: ReadUpTo = match read_json(app, request).await {
        Ok(body) => body,
        Err(refusal) => return refusal,
    };
    match messages::mark_read(&app.hub, &room, &user, body.seq).await {
        Ok(()) => json(StatusCode::OK, &json!({ "room": room, "read": body.seq })),
        Err((code, message)) => super::refusal(code, &message),
    }
}

/// `GET /rooms/{room}/receipts`: how far each participant read the room, for those who may read
/// it; `"receipts": null` in rooms above `--receipts-max-members`.
async fn receipts(app: &App, store: &Store, room: &str, caller: &Caller) -> Response<Body> {
    match rooms::may_read(store, room, caller.user.as_deref(), caller.admin).await {
        Access::Allowed => {}
        access => return refused(room, access),
    }
    let max = app.hub.settings().receipts_max_members;
    let read = Read::Readers { room: room.into(), max };
    let Ok(Answer::Readers { readers, .. }) = store.read(read).await else {
        return store_unavailable();
    };
    let receipts = readers.filter(|_| max > 0).map(|readers| {
        let entries = readers.into_iter().map(|(user, seq)| json!({ "user": user, "seq": seq }));
        entries.collect::<Vec<Value>>()
    });
    json(StatusCode::OK, &json!({ "room": room, "receipts": receipts }))
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
        return bad_request(UNNAMED);
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
            let mut users = members;
            if !users.iter().any(|member| **member == *creator) {
                users.push(creator.to_string());
            }
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
    match rooms::standing(store, room, &user).await {
        Ok((_, _, Some(bar @ Bar::Banned(_)))) => {
            let message = format!(
                "{user} may not be added: {}",
                rooms::barred(room, &bar).refusal(room).map(|(_, m)| m).unwrap_or_default()
            );
            return error(StatusCode::FORBIDDEN, "forbidden", &message);
        }
        Ok(_) => {}
        Err(_) => return store_unavailable(),
    }
    let at = millis(SystemTime::now());
    let write = Write::AddParticipant { room: room.into(), user: user.to_string(), role, at };
    match store.write_and_wait(write).await {
        Ok(Outcome::Done) => {
            tracing::info!(target: "audit", event = "participant_added", actor = caller.name(), room, target = %user, role = role.as_str());
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
            tracing::info!(target: "audit", event = "participant_removed", actor = caller.name(), room, target = %user);
            messages::tell_removed(&app.hub, &room_name, &user, caller.name());
            let shard = app.hub.router().shard_of_user(&user);
            app.hub.router().deliver(shard, Delivery::Kick { user, room: room_name });
            Response::builder()
                .status(StatusCode::NO_CONTENT)
                .body(super::empty())
                .expect("a valid response")
        }
        Ok(_) => error(StatusCode::NOT_FOUND, "not_found", "not a participant of this room"),
        Err(_) => store_unavailable(),
    }
}
