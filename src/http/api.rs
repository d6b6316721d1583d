//! The REST endpoints: publishing from back-end services and online queries, answered from the
//! cache through the hub; the rooms, participants and history endpoints are in [`super::rooms`].
//!
//! Owns: the request and response bodies of `/api/v1/chat/...` publishes and presence. Must not:
//! encode a frame more than once per publish, or read the cache other than through the hub's
//! queries. Every publish goes through the hub: into a room, to the room's home shard, which
//! encodes it (`Hub::publish_in_room`); to users or everyone, encoded here (`Hub::publish`). With a
//! store, it is answered 202 only after it is committed.

use std::net::SocketAddr;
use std::time::SystemTime;

use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::json;
use serde_json::value::RawValue;

use super::caller::Caller;
use super::{
    bad_request, error, json, read_json, refusal, store_unavailable, unauthorized, App, Body,
};
use super::{blocks, files, messages, moderation, rooms};
use crate::broker::Coverage;
use crate::mailbox::{Target, ToSequence, UserStatus};
use crate::protocol::{
    self, millis, time_of, ErrorCode, Frame, Limits, MessageType, Room, UserId, GLOBAL_ROOM,
};
use crate::store::ops::{Answer, Read, Write};
use crate::store::{NewMessage, RoomInfo, RoomType};

/// Routes `/api/v1/chat/{path}`. With authentication on, every call needs a valid token and the
/// publish endpoints an admin one; admin publishes are audited.
pub async fn route(
    app: &App,
    request: Request<Incoming>,
    method: &Method,
    path: &[&str],
    remote: SocketAddr,
) -> Response<Body> {
    let caller = match app.authenticate(&request, remote) {
        Ok(caller) => caller,
        Err(_) => return unauthorized(),
    };
    let publishing = matches!(
        (method, path),
        (&Method::POST, ["rooms", _, "messages"] | ["users", _, "messages"] | ["messages"])
    );
    if let (true, Some(caller)) = (publishing, &caller) {
        if !caller.permissions.admin {
            tracing::warn!(target: "audit", event = "forbidden_publish", user = %caller.user, %remote, ?path);
            return error(StatusCode::FORBIDDEN, "forbidden", "publishing needs an admin token");
        }
    }
    let response = match (method, path) {
        (&Method::POST, ["rooms", room, "messages"]) => publish_room(app, room, request).await,
        (&Method::POST, ["users", user, "messages"]) => publish_user(app, user, request).await,
        (&Method::POST, ["messages"]) => publish_users(app, request).await,
        (&Method::GET, ["online"]) => online(app).await,
        (&Method::GET, ["rooms", room, "online"]) => room_online(app, room).await,
        (&Method::GET, ["users", user, "online"]) => user_online(app, user).await,
        (&Method::GET, ["users", user, "connections"]) => user_connections(app, user).await,
        (&Method::GET, ["search"]) => match Caller::of(caller.clone(), request.uri().query()) {
            Ok(caller) => super::search::search(app, &caller, request.uri().query()).await,
            Err(message) => error(StatusCode::BAD_REQUEST, "bad_request", message),
        },
        (&Method::POST, ["rooms", room, "attachments"]) => {
            match Caller::of(caller.clone(), request.uri().query()) {
                Ok(caller) => files::upload(app, request, room, &caller).await,
                Err(message) => error(StatusCode::BAD_REQUEST, "bad_request", message),
            }
        }
        (&Method::GET, ["attachments", id, rest @ ..])
            if rest.is_empty() || rest == ["thumbnail"] =>
        {
            match Caller::of(caller.clone(), request.uri().query()) {
                Ok(caller) => files::download(app, &request, id, !rest.is_empty(), &caller).await,
                Err(message) => error(StatusCode::BAD_REQUEST, "bad_request", message),
            }
        }
        (method, ["rooms", rest @ ..]) => {
            let caller = match Caller::of(caller.clone(), request.uri().query()) {
                Ok(caller) => caller,
                Err(message) => return error(StatusCode::BAD_REQUEST, "bad_request", message),
            };
            match rest {
                [room, "messages", more @ ..] => {
                    messages::route(app, request, room, more, &caller).await
                }
                [room] if method == Method::DELETE => {
                    let path = [*room, "archive"];
                    let archive = (*room, &path[1..]);
                    moderation::route_room(app, request, &Method::POST, archive, &caller).await
                }
                [room, more @ ..] if moderation::is_room_endpoint(more) => {
                    moderation::route_room(app, request, method, (room, more), &caller).await
                }
                rest => rooms::route(app, request, method, rest, &caller).await,
            }
        }
        (method, ["users", user, "blocks", rest @ ..]) => {
            match Caller::of(caller.clone(), request.uri().query()) {
                Ok(caller) => {
                    blocks::route_blocks(app, request, method, (user, rest), &caller).await
                }
                Err(message) => error(StatusCode::BAD_REQUEST, "bad_request", message),
            }
        }
        (method, ["bans", rest @ ..]) => match Caller::of(caller.clone(), request.uri().query()) {
            Ok(caller) => blocks::route_bans(app, request, method, rest, &caller).await,
            Err(message) => error(StatusCode::BAD_REQUEST, "bad_request", message),
        },
        _ => error(StatusCode::NOT_FOUND, "not_found", "no such endpoint"),
    };
    if let (true, Some(caller)) = (publishing && response.status() == StatusCode::ACCEPTED, &caller)
    {
        tracing::info!(target: "audit", event = "admin_publish", user = %caller.user, %remote, ?path);
    }
    response
}

/// The body of every publish endpoint.
#[derive(Deserialize)]
struct PublishBody {
    from: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    data: Option<Box<RawValue>>,
    /// Only for `POST /api/v1/chat/messages`: the recipients.
    users: Option<Vec<String>>,
}

/// A refused publish: the JSON error to answer with (boxed: it is large beside a publish).
type Refusal = Box<Response<Body>>;

fn bad(message: impl AsRef<str>) -> Refusal {
    Box::new(bad_request(message.as_ref()))
}

async fn publish_room(app: &App, room: &str, request: Request<Incoming>) -> Response<Body> {
    let target = if room == GLOBAL_ROOM {
        Ok(Target::All)
    } else {
        protocol::validate_room(room).map(Target::Room).map_err(bad)
    };
    publish(app, request, |_| target).await
}

async fn publish_user(app: &App, user: &str, request: Request<Incoming>) -> Response<Body> {
    let target = protocol::validate_user(user).map(Target::User).map_err(bad);
    publish(app, request, |_| target).await
}

async fn publish_users(app: &App, request: Request<Incoming>) -> Response<Body> {
    publish(app, request, |body| {
        let names = body.users.as_deref().ok_or_else(|| bad("missing users"))?;
        let users: Result<Vec<UserId>, _> =
            names.iter().map(|u| protocol::validate_user(u)).collect();
        users.map(Target::Users).map_err(bad)
    })
    .await
}

async fn publish(
    app: &App,
    request: Request<Incoming>,
    target: impl FnOnce(&PublishBody) -> Result<Target, Refusal>,
) -> Response<Body> {
    let outcome = async {
        let body = read_json(app, request).await?;
        let target = target(&body)?;
        let publish = Publish::parse(app, body)?;
        let id = publish.id.clone();
        if let Target::Room(room) = target {
            let seq = publish_in_room(app, room, publish).await?;
            return Ok::<_, Refusal>(json!({ "id": id, "seq": seq }));
        }
        let (frame, message) = publish.encode(&target);
        let Some(store) = app.hub.store() else {
            app.hub.publish(target, frame);
            return Ok(json!({ "id": id }));
        };
        // Out only once committed, so nobody sees a message that history lacks; in a task of its
        // own, so a caller that hangs up before the commit does not take the fan-out with it.
        let committed =
            store.write_awaitable(Write::Message(message)).map_err(|_| store_unavailable())?;
        let hub = app.hub.clone();
        let fanned_out = tokio::spawn(async move {
            committed.await.ok()?;
            hub.publish(target, frame);
            Some(())
        });
        fanned_out.await.ok().flatten().ok_or_else(store_unavailable)?;
        Ok(json!({ "id": id }))
    };
    match outcome.await {
        Ok(answer) => json(StatusCode::ACCEPTED, &answer),
        Err(refused) => *refused,
    }
}

/// A publish into a room goes to the room's home shard through the hub; the home numbers, encodes
/// (once), stores and publishes it, and the answer (its seq) comes once it is in.
async fn publish_in_room(app: &App, room: Room, publish: Publish) -> Result<u64, Refusal> {
    let Publish { id, kind, from, data, at } = publish;
    if let Some(store) = app.hub.store() {
        let created_by = from.to_string();
        let info = RoomInfo {
            id: room.to_string(),
            kind: RoomType::Public,
            created_at: millis(at),
            created_by,
            metadata: None,
        };
        store.write_unawaited(Write::EnsureRoom { room: info, members: Vec::new() });
    }
    let item = |origin| ToSequence { room, id, sender: from, kind, data, at: millis(at), origin };
    app.hub.publish_in_room(item).await.ok_or_else(|| Box::new(store_unavailable()))
}

/// A publish's checked message, not encoded yet.
struct Publish {
    id: String,
    kind: MessageType,
    from: UserId,
    data: Box<RawValue>,
    at: SystemTime,
}

impl Publish {
    fn parse(app: &App, body: PublishBody) -> Result<Self, Refusal> {
        let name = body.kind.as_deref().unwrap_or("notification");
        let kind = MessageType::parse_published(name).ok_or_else(|| {
            Box::new(refusal(ErrorCode::UnknownType, &format!("cannot publish type {name}")))
        })?;
        let from = body.from.as_deref().unwrap_or("system");
        protocol::validate_user(from).map_err(bad)?;
        let limits = Limits { max_content_chars: app.hub.settings().max_content };
        let data = protocol::chat_data(body.data.as_deref(), limits)
            .map_err(|(code, message)| refusal(code, message))?;
        let (data, from) = (data.data.to_owned(), UserId::from(from));
        Ok(Self { id: protocol::new_message_id(), kind, from, data, at: SystemTime::now() })
    }

    /// The frame of a publish to users or everyone, encoded once, and the message to store.
    fn encode(self, target: &Target) -> (Frame, NewMessage) {
        let (room, metadata) = match target {
            Target::Room(room) => (Some(room.clone()), None),
            Target::All => (Some(Room::from(GLOBAL_ROOM)), None),
            Target::User(user) => (None, Some(serde_json::json!({ "to": [user] }).to_string())),
            Target::Users(users) => (None, Some(serde_json::json!({ "to": users }).to_string())),
        };
        let Self { id, kind, from, data, at } = self;
        let frame_room = room.as_deref().filter(|room| *room != GLOBAL_ROOM);
        let frame = protocol::message_frame_at(kind, &id, frame_room, &from, &data, at);
        let data = data.get().into();
        let created_at = millis(at);
        let kind = kind.as_str();
        let message = NewMessage {
            id,
            room,
            sender: from,
            kind,
            data,
            created_at,
            metadata,
            stream: None,
            target: None,
        };
        (frame, message)
    }
}

async fn online(app: &App) -> Response<Body> {
    let (users, coverage) = app.hub.online_users().await;
    json(StatusCode::OK, &with_coverage(serde_json::json!({ "users": users }), coverage))
}

async fn room_online(app: &App, room: &str) -> Response<Body> {
    let room = match protocol::validate_room(room) {
        Ok(room) => room,
        Err(message) => return error(StatusCode::BAD_REQUEST, "bad_request", message),
    };
    let (users, coverage) = app.hub.room_users(&room).await;
    let users: Vec<UserId> = users.into_iter().map(|(user, _)| user).collect();
    json(
        StatusCode::OK,
        &with_coverage(serde_json::json!({ "room": room, "users": users }), coverage),
    )
}

async fn user_online(app: &App, user: &str) -> Response<Body> {
    let user = match protocol::validate_user(user) {
        Ok(user) => user,
        Err(message) => return error(StatusCode::BAD_REQUEST, "bad_request", message),
    };
    let (status, coverage) = app.hub.user_status(&user).await;
    let online = status != UserStatus::Offline;
    let mut answer =
        serde_json::json!({ "user": user, "online": online, "status": status.as_str() });
    if let (false, Some(store)) = (online, app.hub.store()) {
        let read = Read::LastSeen { user: user.to_string() };
        if let Ok(Answer::LastSeen(Some(at))) = store.read(read).await {
            answer["last_seen"] = protocol::format_rfc3339(time_of(at)).into();
        }
    }
    json(StatusCode::OK, &with_coverage(answer, coverage))
}

/// Adds `"partial"` in cluster mode: `true` when Redis did not answer and only this instance counted.
fn with_coverage(mut answer: serde_json::Value, coverage: Coverage) -> serde_json::Value {
    if let (Some(partial), Some(fields)) = (coverage.partial(), answer.as_object_mut()) {
        fields.insert("partial".into(), partial.into());
    }
    answer
}

#[derive(Serialize)]
struct ConnectionView {
    id: u64,
    connected_at: String,
    idle_ms: u128,
    rooms: Vec<protocol::Room>,
}

async fn user_connections(app: &App, user: &str) -> Response<Body> {
    let user = match protocol::validate_user(user) {
        Ok(user) => user,
        Err(message) => return error(StatusCode::BAD_REQUEST, "bad_request", message),
    };
    let connections: Vec<ConnectionView> = (app.hub.user_connections(&user).await.into_iter())
        .map(|info| ConnectionView {
            id: info.conn,
            connected_at: protocol::format_rfc3339(info.connected_at),
            idle_ms: info.idle_for.as_millis(),
            rooms: info.rooms,
        })
        .collect();
    json(StatusCode::OK, &serde_json::json!({ "user": user, "connections": connections }))
}
