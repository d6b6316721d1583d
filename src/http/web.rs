//! The web chat page: plain HTML, CSS and JavaScript modules embedded in the binary, served from
//! the broker's own port at `/` and `/chat`, with no build step and nothing fetched from elsewhere.
//!
//! Owns: the page's files and the headers that keep it safe: a Content-Security-Policy that allows
//! only this origin (no inline script, no other host), `nosniff`, and no referrer. Must not: know
//! the chat; the page is a client of the same WebSocket and REST API as any other.

use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE, HOST};
use hyper::{Request, Response, StatusCode};

use super::{error, json, App, Body};

/// Every file of the page: its name under `/web/`, its type and its text.
const FILES: &[(&str, &str, &str)] = &[
    ("index.html", "text/html; charset=utf-8", include_str!("../../web/index.html")),
    ("style.css", "text/css; charset=utf-8", include_str!("../../web/style.css")),
    ("app.js", "text/javascript; charset=utf-8", include_str!("../../web/app.js")),
    ("api.js", "text/javascript; charset=utf-8", include_str!("../../web/api.js")),
    ("notices.js", "text/javascript; charset=utf-8", include_str!("../../web/notices.js")),
    // The client library (clients/js), which the page is built on.
    ("client.js", "text/javascript; charset=utf-8", include_str!("../../clients/js/index.js")),
    ("emitter.js", "text/javascript; charset=utf-8", include_str!("../../clients/js/emitter.js")),
    ("members.js", "text/javascript; charset=utf-8", include_str!("../../clients/js/members.js")),
    ("outbox.js", "text/javascript; charset=utf-8", include_str!("../../clients/js/outbox.js")),
    ("typing.js", "text/javascript; charset=utf-8", include_str!("../../clients/js/typing.js")),
    ("rules.js", "text/javascript; charset=utf-8", include_str!("../../clients/js/rules.js")),
    ("signin.js", "text/javascript; charset=utf-8", include_str!("../../web/signin.js")),
    ("replies.js", "text/javascript; charset=utf-8", include_str!("../../web/replies.js")),
    ("receipts.js", "text/javascript; charset=utf-8", include_str!("../../web/receipts.js")),
    ("messages.js", "text/javascript; charset=utf-8", include_str!("../../web/messages.js")),
    ("rooms.js", "text/javascript; charset=utf-8", include_str!("../../web/rooms.js")),
    ("search.js", "text/javascript; charset=utf-8", include_str!("../../web/search.js")),
    ("composing.js", "text/javascript; charset=utf-8", include_str!("../../web/composing.js")),
    ("moderation.js", "text/javascript; charset=utf-8", include_str!("../../web/moderation.js")),
    ("files.js", "text/javascript; charset=utf-8", include_str!("../../web/files.js")),
    ("stream.js", "text/javascript; charset=utf-8", include_str!("../../clients/js/stream.js")),
    ("view.js", "text/javascript; charset=utf-8", include_str!("../../web/view.js")),
];

/// `GET /`, `/chat` and `/web/{file}` (404 for any other file name).
pub fn serve<B>(app: &App, request: &Request<B>, file: &str) -> Response<Body> {
    if file == "config.json" {
        let settings = app.hub.settings();
        let (auth, room) = (settings.auth_enabled, &settings.default_room);
        let stored = app.hub.store().is_some() && !room.is_empty();
        let config = serde_json::json!({ "auth": auth, "default_room": stored.then_some(room) });
        return with_headers(json(StatusCode::OK, &config), request);
    }
    match FILES.iter().find(|(name, _, _)| *name == file) {
        Some((_, content_type, text)) => {
            let mut response = Response::new(super::full(*text));
            response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
            with_headers(response, request)
        }
        None => error(StatusCode::NOT_FOUND, "not_found", "no such file"),
    }
}

/// `GET /favicon.ico`: the page has no icon (`204`, so browsers stop asking and log no error).
pub fn no_icon() -> Response<Body> {
    let mut response = Response::new(super::empty());
    *response.status_mut() = StatusCode::NO_CONTENT;
    response
}

/// The page's security headers. WebSockets go to this same host (`connect-src` names it for the
/// browsers whose `'self'` does not cover `ws:`); nothing else may be loaded from anywhere else.
fn with_headers<B>(mut response: Response<Body>, request: &Request<B>) -> Response<Body> {
    let host = request.headers().get(HOST).and_then(|h| h.to_str().ok()).filter(|host| {
        host.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | ':' | '-' | '[' | ']'))
    });
    let connect = host.map_or_else(String::new, |host| format!(" ws://{host} wss://{host}"));
    let policy = format!(
        "default-src 'self'; connect-src 'self'{connect}; script-src 'self'; style-src 'self'; \
         img-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
    );
    let headers = response.headers_mut();
    if let Ok(policy) = HeaderValue::from_str(&policy) {
        headers.insert("content-security-policy", policy);
    }
    headers.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    headers.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}
