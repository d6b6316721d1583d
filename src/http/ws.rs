//! The WebSocket upgrade: validates the request, registers the connection, then hands the socket to
//! its shard's reader (plain TCP) or to a session (TLS).
//!
//! Owns: the handshake checks. Must not: read or write frames (the reader or the session does) or
//! touch the cache (the shard registers the connection).
//!
//! The connection is registered, with the rooms its URL names, *before* the `101` goes out, so a client
//! that holds a `101` is already a member that every publisher can reach. After the upgrade the socket
//! moves to its shard's thread: into the lane its reader polls, or into a session spawned as a task of
//! its own (the task is the session's future alone, see `session::footprint`).

use hyper::body::Incoming;
use hyper::header::{
    HeaderValue, CONNECTION, ORIGIN, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY,
    SEC_WEBSOCKET_VERSION, UPGRADE,
};
use hyper::upgrade::Upgraded;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::WebSocketStream;

use std::net::SocketAddr;
use std::sync::Arc;

use super::admission::{Refusal as AdmissionRefusal, Ticket};
use super::{error, unauthorized, App, Body};
use crate::auth::Permissions;
use crate::close::CloseReason;
use crate::config::Config;
use crate::lane::Lane;
use crate::mailbox::{Enrolment, Outbox, Registration};
use crate::messages;
use crate::peer::{websocket_config, PeerAuth};
use crate::protocol::{self, Frame, Room, Since, UserId};
use crate::reader::Adoption;
use crate::rooms::{self, Access};
use crate::session::Session;
use crate::transport::Transport;

/// An early answer instead of the `101` (boxed: it is rare, and large next to the happy path).
type Refusal = Box<Response<Body>>;

/// Who is connecting, once the request has passed every check.
struct Admitted {
    user: UserId,
    permissions: Permissions,
    rooms: Vec<Room>,
    since: Vec<(Room, Since)>,
    auth: Option<Box<PeerAuth>>,
    /// The connection's admission slot, held for as long as its session runs.
    ticket: Option<Box<Ticket>>,
}

pub async fn upgrade(
    app: &App,
    mut request: Request<Incoming>,
    path_room: Option<&str>,
    remote: SocketAddr,
) -> Response<Body> {
    let upgraded = async {
        let accept = check_handshake(app, &request, remote)?;
        let who = identify(app, &request, path_room, remote).await?;
        hand_over(app, &mut request, who, remote).await?;
        Ok::<_, Refusal>(switching_protocols(&accept))
    };
    upgraded.await.unwrap_or_else(|refusal| *refusal)
}

/// A JSON error answer as a [`Refusal`].
fn refuse(status: StatusCode, code: &str, message: &str) -> Refusal {
    Box::new(error(status, code, message))
}

/// The WebSocket handshake and origin checks; the `Sec-WebSocket-Accept` value when they pass.
fn check_handshake<B>(
    app: &App,
    request: &Request<B>,
    remote: SocketAddr,
) -> Result<String, Refusal> {
    if !asks_for_websocket(request) {
        let message = "this endpoint speaks WebSocket: send an Upgrade: websocket request";
        return Err(refuse(StatusCode::UPGRADE_REQUIRED, "upgrade_required", message));
    }
    let headers = request.headers();
    if headers.get(SEC_WEBSOCKET_VERSION).is_none_or(|v| v != "13") {
        let message = "Sec-WebSocket-Version must be 13";
        return Err(refuse(StatusCode::BAD_REQUEST, "bad_request", message));
    }
    let Some(key) = headers.get(SEC_WEBSOCKET_KEY) else {
        return Err(refuse(StatusCode::BAD_REQUEST, "bad_request", "missing Sec-WebSocket-Key"));
    };
    if let Some(origin) = foreign_origin(request, &app.hub.settings().allowed_origins) {
        tracing::warn!(target: "audit", event = "origin_refused", %remote, origin);
        let message = "this origin may not open a connection";
        return Err(refuse(StatusCode::FORBIDDEN, "forbidden", message));
    }
    Ok(derive_accept_key(key.as_bytes()))
}

/// Who the caller is, which rooms it asks for and may join, and its admission slot.
async fn identify<B>(
    app: &App,
    request: &Request<B>,
    path_room: Option<&str>,
    remote: SocketAddr,
) -> Result<Admitted, Refusal> {
    let ConnectParams { user: named_user, rooms, since } =
        connect_params(request.uri().query(), path_room)
            .map_err(|message| refuse(StatusCode::BAD_REQUEST, "bad_request", message))?;
    let identity = app.authenticate(request, remote).map_err(|_| Box::new(unauthorized()))?;
    let auth = app.session_auth(identity.as_ref());
    let (user, permissions) = match identity {
        Some(identity) => (identity.user, identity.permissions),
        None => {
            let user = named_user.unwrap_or_else(|| UserId::from(protocol::new_message_id()));
            (user, Permissions::unrestricted())
        }
    };
    let every_room = || rooms.iter().chain(since.iter().map(|(room, _)| room));
    if let Some(room) = every_room().find(|room| !permissions.may_join(room)) {
        tracing::warn!(target: "audit", event = "forbidden_join", %user, %remote, %room);
        let message = format!("not allowed to join room {room}");
        return Err(refuse(StatusCode::FORBIDDEN, "forbidden", &message));
    }
    let all: Vec<Room> = every_room().cloned().collect();
    check_room_types(app, &all, &user, permissions.admin, remote).await?;
    if app.is_draining() {
        return Err(Box::new(shutting_down()));
    }
    let ticket = app.admission.admit(remote.ip()).await.map_err(|refusal| {
        tracing::warn!(target: "audit", event = "connection_refused", %user, %remote, ?refusal);
        Box::new(refused(refusal))
    })?;
    Ok(Admitted { user, permissions, rooms, since, auth, ticket: ticket.map(Box::new) })
}

/// With a store, the rooms of the connect URL must admit the user (private and direct rooms only
/// their participants); a room nobody created is created by joining it.
async fn check_room_types(
    app: &App,
    rooms: &[Room],
    user: &UserId,
    admin: bool,
    remote: SocketAddr,
) -> Result<(), Refusal> {
    let Some(store) = app.hub.store() else { return Ok(()) };
    for room in rooms {
        let (access, added) = rooms::may_join(store, room, user, admin).await;
        match access {
            Access::Allowed => {
                if let Some(added) = added {
                    messages::tell_added(&app.hub, &added);
                }
            }
            Access::Forbidden(why) => {
                tracing::warn!(target: "audit", event = "forbidden_join", %user, %remote, %room);
                return Err(refuse(StatusCode::FORBIDDEN, "forbidden", &why));
            }
            Access::NotFound | Access::Unavailable => {
                let message = protocol::STORE_UNAVAILABLE;
                return Err(refuse(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message));
            }
        }
    }
    Ok(())
}

/// Registers the connection with its shard, then, once hyper upgrades it, hands the socket to the
/// shard's reader (plain TCP) or runs a session for it on the shard's thread (TLS).
async fn hand_over(
    app: &App,
    request: &mut Request<Incoming>,
    who: Admitted,
    remote: SocketAddr,
) -> Result<(), Refusal> {
    let Admitted { user, permissions, rooms, since, auth, ticket } = who;
    let (conn, shard) = (app.next_conn_id(), app.hub.router().shard_of_user(&user));
    let (outbox, closer, read_by) = outlet(app.hub.settings());
    let registration = Registration {
        conn,
        user: user.clone(),
        rooms,
        since,
        outbox,
        closer,
        remote,
        permissions,
    };
    match app.hub.register(shard, registration).await {
        Enrolment::Accepted => {}
        Enrolment::ShuttingDown => return Err(Box::new(shutting_down())),
        Enrolment::UserFull => {
            tracing::warn!(target: "audit", event = "connection_refused", %user, %remote, refusal = "UserFull");
            let message = "too many connections for this user";
            return Err(refuse(StatusCode::TOO_MANY_REQUESTS, "too_many_connections", message));
        }
        Enrolment::Banned(until) => {
            tracing::warn!(target: "audit", event = "connection_refused", %user, %remote, refusal = "Banned");
            let message = match until {
                Some(until) => {
                    format!("banned until {}", protocol::format_rfc3339(protocol::time_of(until)))
                }
                None => "banned".to_owned(),
            };
            return Err(refuse(StatusCode::FORBIDDEN, "banned", &message));
        }
    }
    let on_upgrade = hyper::upgrade::on(request);
    let access = app.shards[shard].clone();
    let hub = app.hub.clone();
    tokio::spawn(async move {
        let upgraded = on_upgrade.await.map_err(|err| err.to_string());
        let (stream, socket, read_ahead) = match upgraded.and_then(detach) {
            Ok(detached) => detached,
            Err(err) => {
                tracing::debug!(conn, %err, "upgrade failed");
                hub.router().unregister(shard, conn).await;
                return;
            }
        };
        match read_by {
            ReadBy::Reader(lane) => {
                let held = ticket.map(|ticket| ticket as Box<dyn Send>);
                let adoption = Adoption { conn, user, lane, socket, read_ahead, auth, held };
                if access.reader.adopt(adoption).is_err() {
                    hub.router().unregister(shard, conn).await;
                }
            }
            ReadBy::Session(outbox, closer) => {
                let session = Session { conn, user, shard, hub, outbox, closer, auth };
                let detached = (stream, socket, read_ahead);
                drop(access.runtime.spawn(start_on_shard(session, detached, ticket)));
            }
        }
    });
    Ok(())
}

/// Who reads a connection once it is upgraded.
enum ReadBy {
    /// Its shard's reader, on a lane its shard writes (plain TCP, the fast path): no task of its own.
    Reader(Arc<Lane>),
    /// A session task, from the queue its shard fills (TLS, whose bytes differ per connection, or
    /// `--fast-path false`), and told to close through its closer.
    Session(flume::Receiver<Frame>, oneshot::Receiver<CloseReason>),
}

fn outlet(settings: &Config) -> (Outbox, Option<oneshot::Sender<CloseReason>>, ReadBy) {
    let limit = settings.send_buffer as usize;
    if settings.fast_path && settings.tls_cert.is_none() {
        let lane = Arc::new(Lane::new(limit, settings.ws_write_buffer));
        (Outbox::Lane(Arc::clone(&lane)), None, ReadBy::Reader(lane))
    } else {
        let (queue, outbox) = flume::bounded(limit);
        let (closer, closer_rx) = oneshot::channel();
        (Outbox::Queue(queue), Some(closer), ReadBy::Session(outbox, closer_rx))
    }
}

fn shutting_down() -> Response<Body> {
    error(StatusCode::SERVICE_UNAVAILABLE, "shutting_down", "the server is shutting down")
}

/// The answer to a connection over a cap: 503 for the instance, 429 for one address.
fn refused(refusal: AdmissionRefusal) -> Response<Body> {
    match refusal {
        AdmissionRefusal::InstanceFull => {
            error(StatusCode::SERVICE_UNAVAILABLE, "too_many_connections", "this server is full")
        }
        AdmissionRefusal::AddressFull => error(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_connections",
            "too many connections from your address",
        ),
    }
}

/// A connection taken out of hyper: its stream, the TCP socket detached from the HTTP runtime's
/// reactor, and any bytes the client sent right after its request.
type Detached = (Transport, std::net::TcpStream, Vec<u8>);

fn detach(upgraded: Upgraded) -> Result<Detached, String> {
    let parts = upgraded
        .downcast::<TokioIo<Transport>>()
        .map_err(|_| "the upgraded connection is not ours")?;
    let mut stream = parts.io.into_inner();
    let socket = stream.detach().map_err(|err| err.to_string())?;
    Ok((stream, socket, parts.read_buf.to_vec()))
}

/// Runs on the shard's thread: registers the socket with that thread's reactor, then spawns the
/// session there as a task of its own, so the task that lives as long as the connection is the
/// session's future alone (`session::footprint`). The admission `ticket` goes with it.
async fn start_on_shard(session: Session, detached: Detached, ticket: Option<Box<Ticket>>) {
    let (mut stream, socket, read_ahead) = detached;
    match stream.attach(socket) {
        Ok(()) => {
            let config = Some(websocket_config(session.hub.settings()));
            let socket =
                WebSocketStream::from_partially_read(stream, read_ahead, Role::Server, config)
                    .await;
            drop(tokio::spawn(session.run(socket, ticket)));
        }
        Err(err) => {
            tracing::warn!(conn = session.conn, %err, "cannot register the socket with its shard");
            session.unregister().await;
        }
    }
}

/// The request's `Origin` when origins are restricted and it is not one of them (cross-site
/// WebSocket hijacking). No `Origin` header (not a browser) is let through.
fn foreign_origin<'a, B>(request: &'a Request<B>, allowed: &[String]) -> Option<&'a str> {
    let origin = request.headers().get(ORIGIN)?;
    let origin = origin.to_str().unwrap_or("<not text>");
    let known = allowed.is_empty()
        || allowed.iter().any(|a| a.trim_end_matches('/').eq_ignore_ascii_case(origin));
    (!known).then_some(origin)
}

fn asks_for_websocket<B>(request: &Request<B>) -> bool {
    let has_token = |name, token: &str| {
        request.headers().get_all(name).iter().any(|value| {
            value
                .to_str()
                .is_ok_and(|v| v.split(',').any(|part| part.trim().eq_ignore_ascii_case(token)))
        })
    };
    has_token(CONNECTION, "upgrade") && has_token(UPGRADE, "websocket")
}

/// What the connect URL asks for.
struct ConnectParams {
    /// `user=` (used only with authentication off).
    user: Option<UserId>,
    /// `room=` (repeatable) and the path's room.
    rooms: Vec<Room>,
    /// `since=room:seq:epoch` (repeatable): rooms to join and resume.
    since: Vec<(Room, Since)>,
}

fn connect_params(
    query: Option<&str>,
    path_room: Option<&str>,
) -> Result<ConnectParams, &'static str> {
    let mut user = None;
    let mut rooms: Vec<Room> =
        path_room.map(protocol::validate_room).transpose()?.into_iter().collect();
    let mut since: Vec<(Room, Since)> = Vec::new();
    for (name, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        match name.as_ref() {
            "user" => user = Some(protocol::validate_user(&value)?),
            "room" => {
                let room = protocol::validate_room(&value)?;
                if !rooms.contains(&room) {
                    rooms.push(room);
                }
            }
            "since" => {
                let (room, point) = resume_point(&value)?;
                since.retain(|(known, _)| *known != room);
                since.push((room, point));
            }
            _ => {}
        }
    }
    rooms.retain(|room| !since.iter().any(|(resumed, _)| resumed == room));
    Ok(ConnectParams { user, rooms, since })
}

/// `room:seq:epoch` (the room may hold `:`; seq and epoch do not).
fn resume_point(value: &str) -> Result<(Room, Since), &'static str> {
    let bad = "since must be room:seq:epoch";
    let mut parts = value.rsplitn(3, ':');
    let (epoch, seq, room) = (parts.next(), parts.next(), parts.next());
    let (Some(epoch), Some(seq), Some(room)) = (epoch, seq, room) else { return Err(bad) };
    let seq = seq.parse::<u64>().map_err(|_| bad)?;
    if epoch.is_empty() || epoch.len() > protocol::MAX_NAME_CHARS {
        return Err(bad);
    }
    Ok((protocol::validate_room(room)?, Since { seq, epoch: epoch.to_owned() }))
}

fn switching_protocols(accept: &str) -> Response<Body> {
    let mut response = Response::new(super::empty());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(
        SEC_WEBSOCKET_ACCEPT,
        HeaderValue::from_str(accept).expect("base64 is a valid header value"),
    );
    response
}
