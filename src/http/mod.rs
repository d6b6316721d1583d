//! The HTTP side of the one port: routing, JSON responses, and the state the handlers share.
//!
//! Owns: the route table (docs/protocol.md) and the readiness flag. May touch: the hub (to register
//! connections, publish and query). Must not: keep connection state; hyper parses HTTP, tungstenite
//! speaks WebSocket, and the shards own the cache.

mod acting;
mod admission;
mod api;
mod blocks;
mod caller;
mod files;
mod messages;
mod moderation;
mod reports;
mod rooms;
mod search;
mod web;
mod ws;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use percent_encoding::percent_decode_str;
use tokio::runtime::Handle;

use crate::auth::{self, AuthError, Authenticator, Identity};
use crate::hub::Hub;
use crate::peer::PeerAuth;
use crate::protocol::{self, ErrorCode};
use crate::reader::Adopter;

/// A response body: whole (most answers) or streamed (an attachment's bytes, read from the store
/// a chunk at a time). An error ends a streamed body early (the client sees a cut response).
pub type Body = UnsyncBoxBody<Bytes, std::io::Error>;

/// A whole response body.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).map_err(|never| match never {}).boxed_unsync()
}

/// An empty response body.
pub fn empty() -> Body {
    full(Bytes::new())
}

/// Where an upgraded connection of a shard goes: its reader (plain TCP), or a session task on its
/// runtime (TLS).
#[derive(Debug, Clone)]
pub struct ShardAccess {
    pub runtime: Handle,
    pub reader: Adopter,
}

/// What every request handler shares.
#[derive(Debug)]
pub struct App {
    pub hub: Hub,
    /// Connection caps; counts in a task of its own.
    admission: admission::Admission,
    /// `None` with authentication off.
    auth: Option<Arc<Authenticator>>,
    /// Each shard's runtime and reader, where its connections are read.
    shards: Box<[ShardAccess]>,
    /// Set once shutdown starts: `/readyz` fails and no connection is accepted.
    draining: AtomicBool,
    next_conn: AtomicU64,
}

impl App {
    /// Must run inside the HTTP runtime: it starts the admission task there.
    pub fn new(hub: Hub, auth: Option<Authenticator>, shards: Box<[ShardAccess]>) -> Self {
        let auth = auth.map(Arc::new);
        let settings = hub.settings();
        let admission =
            admission::Admission::start(settings.max_connections, settings.max_conns_per_ip);
        let (draining, next_conn) = (AtomicBool::new(false), AtomicU64::new(1));
        Self { hub, admission, auth, shards, draining, next_conn }
    }

    /// With authentication on, who the request's token says the caller is (`None` when it is off).
    /// A refusal is written to the audit log here; answer it with [`unauthorized`].
    fn authenticate<B>(
        &self,
        request: &Request<B>,
        remote: SocketAddr,
    ) -> Result<Option<Identity>, AuthError> {
        let Some(authenticator) = &self.auth else {
            return Ok(None);
        };
        let header =
            request.headers().get(hyper::header::AUTHORIZATION).and_then(|v| v.to_str().ok());
        let token = auth::request_token(header, request.uri().query()).ok_or(AuthError::Missing);
        let verified = token.and_then(|token| authenticator.verify(&token));
        if let Err(err) = &verified {
            let path = request.uri().path();
            tracing::warn!(target: "audit", event = "auth_failed", %remote, path, reason = %err);
        }
        verified.map(Some)
    }

    /// The verifier and expiry a session needs for `refresh` and its token deadline.
    fn session_auth(&self, identity: Option<&Identity>) -> Option<Box<PeerAuth>> {
        let authenticator = Arc::clone(self.auth.as_ref()?);
        Some(Box::new(PeerAuth { authenticator, expires_at: identity?.expires_at }))
    }

    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }

    fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// Why `/readyz` answers 503 (draining, Redis or the store away), or `None`: ready.
    fn unready(&self) -> Option<&'static str> {
        if self.is_draining() {
            Some("draining")
        } else if !self.hub.broker().is_ready() {
            Some("redis_unavailable")
        } else if self.hub.store().is_some_and(|store| !store.is_up()) {
            Some("database_unavailable")
        } else {
            None
        }
    }

    fn next_conn_id(&self) -> u64 {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }
}

/// Serves one request from `remote`. Never fails: every problem is an HTTP answer with a JSON error
/// body. With authentication on, everything but health, readiness and metrics needs a token.
pub async fn handle(
    app: &App,
    request: Request<Incoming>,
    remote: SocketAddr,
) -> Result<Response<Body>, Infallible> {
    let Some(segments) = decoded_segments(request.uri().path()) else {
        return Ok(error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "path is not valid percent-encoded UTF-8",
        ));
    };
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    let remote = client_of(app, &request, remote);
    let method = request.method().clone();
    let started = std::time::Instant::now();
    let response = route(app, request, &method, &segments, remote).await;
    let status = response.status().as_u16();
    app.hub.metrics().http.record(method.as_str(), &segments, status, started.elapsed());
    Ok(response)
}

/// Who sent `request`: the peer, or behind a trusted proxy the client it names (port 0: the
/// client's own port is not known).
fn client_of<B>(app: &App, request: &Request<B>, peer: SocketAddr) -> SocketAddr {
    let trusted = &app.hub.settings().trusted_proxies;
    if trusted.is_empty() {
        return peer;
    }
    let named = request.headers().get_all("x-forwarded-for").iter();
    let client = crate::proxies::client_address(
        peer.ip(),
        named.filter_map(|value| value.to_str().ok()),
        trusted,
    );
    if client == peer.ip() {
        peer
    } else {
        SocketAddr::new(client, 0)
    }
}

/// The answer to one request, by its method and path.
async fn route(
    app: &App,
    request: Request<Incoming>,
    method: &Method,
    segments: &[&str],
    remote: SocketAddr,
) -> Response<Body> {
    match (method.clone(), segments) {
        (Method::GET, ["api", "chat-api", "ws"] | ["ws"] | ["ws", "chat"]) => {
            ws::upgrade(app, request, None, remote).await
        }
        (Method::GET, ["api", "chat-api", "ws", room]) => {
            ws::upgrade(app, request, Some(room), remote).await
        }
        (method, ["api", "v1", "chat", path @ ..]) => {
            api::route(app, request, &method, path, remote).await
        }
        (Method::GET, [] | ["chat"]) => web::serve(app, &request, "index.html"),
        (Method::GET, ["web", file]) => web::serve(app, &request, file),
        (Method::GET, ["favicon.ico"]) => web::no_icon(),
        (Method::GET, ["healthz"]) => json(StatusCode::OK, &serde_json::json!({"status": "ok"})),
        (Method::GET, ["readyz"]) => match app.unready() {
            Some(why) => json(StatusCode::SERVICE_UNAVAILABLE, &serde_json::json!({"status": why})),
            None => json(StatusCode::OK, &serde_json::json!({"status": "ready"})),
        },
        (Method::GET, ["metrics"]) => metrics(app).await,
        _ => error(StatusCode::NOT_FOUND, "not_found", "no such endpoint"),
    }
}

fn decoded_segments(path: &str) -> Option<Vec<String>> {
    let decode =
        |segment: &str| percent_decode_str(segment).decode_utf8().ok().map(|s| s.into_owned());
    path.split('/').filter(|s| !s.is_empty()).map(decode).collect()
}

/// How long a scrape waits for the shards' queue depths (a stuck shard must not hang it).
const SHARDS_ANSWER_WITHIN: std::time::Duration = std::time::Duration::from_secs(1);

async fn metrics(app: &App) -> Response<Body> {
    let queued = tokio::time::timeout(SHARDS_ANSWER_WITHIN, app.hub.queued_frames()).await.ok();
    if queued.is_none() {
        tracing::warn!("a shard did not answer within {SHARDS_ANSWER_WITHIN:?}: /metrics leaves out wsbroker_queued_frames");
    }
    let mut response = Response::new(full(app.hub.metrics().render(crate::metrics::Scrape {
        rooms: app.hub.directory().room_count(),
        queued,
        ready: app.unready().is_none(),
        redis: app.hub.settings().redis_url.is_some(),
        store: app.hub.store().is_some(),
    })));
    let content_type = HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8");
    response.headers_mut().insert(CONTENT_TYPE, content_type);
    response
}

pub fn json(status: StatusCode, body: &impl serde::Serialize) -> Response<Body> {
    let bytes = serde_json::to_vec(body).expect("response bodies are plain data");
    let mut response = Response::new(full(bytes));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// The answer to a missing or invalid token.
pub fn unauthorized() -> Response<Body> {
    error(StatusCode::UNAUTHORIZED, "unauthorized", "a valid token is required")
}

/// The HTTP status of an error code.
pub fn status_of(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::Forbidden | ErrorCode::NotMember | ErrorCode::Muted => StatusCode::FORBIDDEN,
        ErrorCode::SlowMode | ErrorCode::QuotaExceeded => StatusCode::TOO_MANY_REQUESTS,
        ErrorCode::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::NotFound => StatusCode::NOT_FOUND,
        ErrorCode::Conflict => StatusCode::CONFLICT,
        ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
        ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::BadRequest | ErrorCode::UnknownType | ErrorCode::ContentTooLong => {
            StatusCode::BAD_REQUEST
        }
    }
}

/// The error answer of `code`, with the status it maps to.
pub fn refusal(code: ErrorCode, message: &str) -> Response<Body> {
    error(status_of(code), code.as_str(), message)
}

/// The answer while the message store cannot take or answer a request.
pub fn store_unavailable() -> Response<Body> {
    refusal(ErrorCode::Unavailable, protocol::STORE_UNAVAILABLE)
}

pub fn bad_request(message: &str) -> Response<Body> {
    refusal(ErrorCode::BadRequest, message)
}

/// A request's JSON body, at most `--max-frame` bytes.
pub async fn read_json<T: serde::de::DeserializeOwned>(
    app: &App,
    request: Request<Incoming>,
) -> Result<T, Response<Body>> {
    let limit = app.hub.settings().max_frame;
    let collected = Limited::new(request.into_body(), limit).collect().await.map_err(|_| {
        let message = format!("the body is over {limit} bytes");
        error(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", &message)
    })?;
    serde_json::from_slice(&collected.to_bytes())
        .map_err(|err| bad_request(&format!("invalid JSON body: {err}")))
}

/// `{"error":{"code":...,"message":...}}` with `status`.
pub fn error(status: StatusCode, code: &str, message: &str) -> Response<Body> {
    json(status, &serde_json::json!({"error": {"code": code, "message": message}}))
}
