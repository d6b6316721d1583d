//! The WebSocket upgrade: validates the request, registers the connection, then hands the socket to a
//! session.
//!
//! Owns: the handshake checks and the per-connection WebSocket configuration. Must not: read or write
//! frames (the session does) or touch the cache (the shard registers the connection).
//!
//! The connection is registered, with the rooms its URL names, *before* the `101` goes out, so a client
//! that holds a `101` is already a member that every publisher can reach. After the upgrade the socket
//! moves to its shard's thread, where its session runs.

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
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::WebSocketStream;

use std::net::SocketAddr;

use super::admission::Refusal;
use super::{error, unauthorized, App, Body};
use crate::auth::Permissions;
use crate::config::Config;
use crate::protocol::{self, Room, UserId};
use crate::session::Session;
use crate::shard::Registration;
use crate::transport::Stream;

pub async fn upgrade(
    app: &App,
    mut request: Request<Incoming>,
    path_room: Option<&str>,
    remote: SocketAddr,
) -> Response<Body> {
    if !asks_for_websocket(&request) {
        let message = "this endpoint speaks WebSocket: send an Upgrade: websocket request";
        return error(StatusCode::UPGRADE_REQUIRED, "upgrade_required", message);
    }
    let headers = request.headers();
    if headers.get(SEC_WEBSOCKET_VERSION).is_none_or(|v| v != "13") {
        return error(StatusCode::BAD_REQUEST, "bad_request", "Sec-WebSocket-Version must be 13");
    }
    let Some(key) = headers.get(SEC_WEBSOCKET_KEY) else {
        return error(StatusCode::BAD_REQUEST, "bad_request", "missing Sec-WebSocket-Key");
    };
    let accept = derive_accept_key(key.as_bytes());
    if let Some(origin) = foreign_origin(&request, &app.hub.settings().allowed_origins) {
        tracing::warn!(target: "audit", event = "origin_refused", %remote, origin);
        return error(StatusCode::FORBIDDEN, "forbidden", "this origin may not open a connection");
    }
    let (named_user, rooms) = match connect_params(request.uri().query(), path_room) {
        Ok(params) => params,
        Err(message) => return error(StatusCode::BAD_REQUEST, "bad_request", message),
    };
    let identity = match app.authenticate(&request, remote) {
        Ok(identity) => identity,
        Err(_) => return unauthorized(),
    };
    let auth = app.session_auth(identity.as_ref());
    let (user, permissions) = match identity {
        Some(identity) => (identity.user, identity.permissions),
        None => (
            named_user.unwrap_or_else(|| UserId::from(protocol::new_message_id())),
            Permissions::unrestricted(),
        ),
    };
    if let Some(room) = rooms.iter().find(|room| !permissions.may_join(room)) {
        tracing::warn!(target: "audit", event = "forbidden_join", %user, %remote, %room);
        return error(
            StatusCode::FORBIDDEN,
            "forbidden",
            &format!("not allowed to join room {room}"),
        );
    }
    if app.is_draining() {
        return shutting_down();
    }
    let ticket = match app.admission.admit(remote.ip()).await {
        Ok(ticket) => ticket.map(Box::new),
        Err(refusal) => {
            tracing::warn!(target: "audit", event = "connection_refused", %user, %remote, ?refusal);
            return refused(refusal);
        }
    };
    let conn = app.next_conn_id();
    let (outbox, outbox_rx) = flume::bounded(app.hub.settings().send_buffer as usize);
    let (closer, closer_rx) = oneshot::channel();
    let registration =
        Registration { conn, user: user.clone(), rooms, outbox, closer, remote, permissions };
    if !app.hub.register(registration).await {
        return shutting_down();
    }
    let on_upgrade = hyper::upgrade::on(&mut request);
    let runtime = app.shard_runtime(&user).clone();
    let session = Session {
        conn,
        user,
        hub: app.hub.clone(),
        outbox: outbox_rx,
        closer: closer_rx,
        ticket,
        auth,
    };
    let config = socket_config(app.hub.settings());
    tokio::spawn(async move {
        let detached = match on_upgrade.await {
            Ok(upgraded) => detach(upgraded),
            Err(err) => Err(err.to_string()),
        };
        match detached {
            Ok(detached) => drop(runtime.spawn(serve_on_shard(session, detached, config))),
            Err(err) => {
                tracing::debug!(conn, %err, "upgrade failed");
                session.unregister().await;
            }
        }
    });
    switching_protocols(&accept)
}

fn shutting_down() -> Response<Body> {
    error(StatusCode::SERVICE_UNAVAILABLE, "shutting_down", "the server is shutting down")
}

/// The answer to a connection over a cap: 503 for the instance, 429 for one address.
fn refused(refusal: Refusal) -> Response<Body> {
    match refusal {
        Refusal::InstanceFull => {
            error(StatusCode::SERVICE_UNAVAILABLE, "too_many_connections", "this server is full")
        }
        Refusal::AddressFull => error(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_connections",
            "too many connections from your address",
        ),
    }
}

/// A connection taken out of hyper: its stream, the TCP socket detached from the HTTP runtime's
/// reactor, and any bytes the client sent right after its request.
type Detached = (Stream, std::net::TcpStream, Vec<u8>);

fn detach(upgraded: Upgraded) -> Result<Detached, String> {
    let parts = upgraded
        .downcast::<TokioIo<Stream>>()
        .map_err(|_| "the upgraded connection is not ours")?;
    let mut stream = parts.io.into_inner();
    let socket = stream.detach().map_err(|err| err.to_string())?;
    Ok((stream, socket, parts.read_buf.to_vec()))
}

/// Runs on the shard's thread: registers the socket with that thread's reactor and serves it there.
async fn serve_on_shard(session: Session, detached: Detached, config: WebSocketConfig) {
    let (mut stream, socket, read_ahead) = detached;
    match stream.attach(socket) {
        Ok(()) => {
            let socket = WebSocketStream::from_partially_read(
                stream,
                read_ahead,
                Role::Server,
                Some(config),
            )
            .await;
            session.run(socket).await;
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

/// The user named by `user=` (used only with authentication off) and the rooms (`room=`,
/// repeatable, and the path's room).
fn connect_params(
    query: Option<&str>,
    path_room: Option<&str>,
) -> Result<(Option<UserId>, Vec<Room>), &'static str> {
    let mut user = None;
    let mut rooms: Vec<Room> =
        path_room.map(protocol::validate_room).transpose()?.into_iter().collect();
    for (name, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        match name.as_ref() {
            "user" => user = Some(protocol::validate_user(&value)?),
            "room" => {
                let room = protocol::validate_room(&value)?;
                if !rooms.contains(&room) {
                    rooms.push(room);
                }
            }
            _ => {}
        }
    }
    Ok((user, rooms))
}

fn socket_config(settings: &Config) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(settings.ws_read_buffer)
        .write_buffer_size(settings.ws_write_buffer)
        .max_write_buffer_size(settings.ws_write_buffer + 2 * settings.max_frame + 128 * 1024)
        .max_message_size(Some(settings.max_frame))
        .max_frame_size(Some(settings.max_frame))
}

fn switching_protocols(accept: &str) -> Response<Body> {
    let mut response = Response::new(Body::default());
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
