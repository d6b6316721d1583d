//! HTTP requests by route, method and status, with their latency.
//!
//! Owns: a fixed table of routes, filled as they are first seen, and each one's counts. A route is
//! the path with every segment the router does not name (a room, a user, an id) as `:id`, so its
//! label values stay few. May be touched by: every HTTP handler (relaxed atomics; a route's slot
//! is claimed once, with no lock). Must not: grow: past [`ROUTES`] routes, the rest count as
//! `other`.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::OnceLock;
use std::time::Duration;

use super::{histogram_lines, LatencyHistogram};

/// The most distinct routes counted apart; the last slot is `other`.
const ROUTES: usize = 64;

/// The path segments the router matches on; any other segment is a value (`:id`).
const WORDS: [&str; 38] = [
    "api",
    "v1",
    "chat",
    "chat-api",
    "ws",
    "rooms",
    "messages",
    "users",
    "online",
    "connections",
    "search",
    "attachments",
    "thumbnail",
    "blocks",
    "bans",
    "web",
    "healthz",
    "readyz",
    "metrics",
    "favicon.ico",
    "archive",
    "kick",
    "moderation-log",
    "mutes",
    "participants",
    "read",
    "receipts",
    "reports",
    "resolve",
    "roles",
    "settings",
    "thread",
    "transfer",
    "type",
    "unread",
    "versions",
    "reactions",
    "history",
];

/// Paths deeper than this are `other`.
const MAX_DEPTH: usize = 8;

/// The statuses counted apart; others are counted as `other`.
const STATUSES: [u16; 18] =
    [101, 200, 201, 202, 204, 206, 304, 400, 401, 403, 404, 405, 409, 413, 416, 429, 500, 503];

#[derive(Debug)]
struct Route {
    /// `METHOD /path/:id`, set once.
    name: OnceLock<Box<str>>,
    statuses: [AtomicU64; STATUSES.len() + 1],
    latency: LatencyHistogram,
}

impl Default for Route {
    fn default() -> Self {
        let statuses = [const { AtomicU64::new(0) }; STATUSES.len() + 1];
        Self { name: OnceLock::new(), statuses, latency: LatencyHistogram::default() }
    }
}

#[derive(Debug)]
pub struct HttpCounters {
    routes: Box<[Route]>,
}

impl Default for HttpCounters {
    fn default() -> Self {
        Self { routes: (0..ROUTES).map(|_| Route::default()).collect() }
    }
}

/// `/rooms/:id/messages` for `["rooms", "general", "messages"]`; `None` when too deep.
fn route_of(segments: &[&str]) -> Option<String> {
    if segments.len() > MAX_DEPTH {
        return None;
    }
    let mut route = String::with_capacity(64);
    for segment in segments {
        route.push('/');
        route.push_str(if WORDS.contains(segment) { segment } else { ":id" });
    }
    Some(if route.is_empty() { "/".to_owned() } else { route })
}

impl HttpCounters {
    /// Counts one request to `segments` (the decoded path) answered `status` after `took`.
    pub fn record(&self, method: &str, segments: &[&str], status: u16, took: Duration) {
        let route = self.slot(method, segments);
        let at = STATUSES.iter().position(|known| *known == status).unwrap_or(STATUSES.len());
        route.statuses[at].fetch_add(1, Relaxed);
        route.latency.record(took);
    }

    /// The route's slot: the one already named so, or the first free one (claimed now).
    fn slot(&self, method: &str, segments: &[&str]) -> &Route {
        let other = &self.routes[ROUTES - 1];
        let Some(path) = route_of(segments) else { return other };
        let name = format!("{method} {path}");
        for route in &self.routes[..ROUTES - 1] {
            if **route.name.get_or_init(|| name.as_str().into()) == *name {
                return route;
            }
        }
        other
    }

    pub(super) fn render(&self, out: &mut String) {
        let name = "wsbroker_http_requests_total";
        let _ = writeln!(out, "# HELP {name} HTTP requests answered, by route, method and status.");
        let _ = writeln!(out, "# TYPE {name} counter");
        for (route, label) in self.named() {
            for (at, count) in route.statuses.iter().enumerate() {
                let count = count.load(Relaxed);
                if count > 0 {
                    let status = STATUSES.get(at).map_or("other".to_owned(), u16::to_string);
                    let _ = writeln!(out, "{name}{{{label},status=\"{status}\"}} {count}");
                }
            }
        }
        let name = "wsbroker_http_request_seconds";
        let help = "Time from a request's arrival to its response's head (a 101 for WebSockets).";
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (route, labels) in self.named() {
            histogram_lines(out, name, &labels, |field| field(&route.latency).load(Relaxed));
        }
    }

    /// The routes seen so far with their labels (`method="GET",route="/x"`); `other` last.
    fn named(&self) -> impl Iterator<Item = (&Route, String)> {
        let named = self.routes[..ROUTES - 1].iter().filter_map(|route| {
            let (method, path) = route.name.get()?.split_once(' ')?;
            Some((route, format!("method=\"{method}\",route=\"{path}\"")))
        });
        let other = &self.routes[ROUTES - 1];
        let counted = other.statuses.iter().any(|count| count.load(Relaxed) > 0);
        named.chain(counted.then(|| (other, "method=\"\",route=\"other\"".to_owned())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_route_names_only_the_words_the_router_matches_and_values_become_ids() {
        let rooms = ["api", "v1", "chat", "rooms", "general", "messages"];
        assert_eq!(route_of(&rooms).unwrap(), "/api/v1/chat/rooms/:id/messages");
        assert_eq!(route_of(&[]).unwrap(), "/");
        assert_eq!(route_of(&["a"; 9]), None, "too deep");
        let counters = HttpCounters::default();
        counters.record("GET", &rooms, 200, Duration::from_millis(2));
        counters.record(
            "GET",
            &["api", "v1", "chat", "rooms", "other", "messages"],
            404,
            Duration::ZERO,
        );
        for n in 0..100 {
            counters.record("GET", &[&format!("{n}"), "x", &format!("{n}")], 404, Duration::ZERO);
        }
        let mut text = String::new();
        counters.render(&mut text);
        let route = "method=\"GET\",route=\"/api/v1/chat/rooms/:id/messages\"";
        assert!(
            text.contains(&format!("wsbroker_http_requests_total{{{route},status=\"200\"}} 1\n")),
            "{text}"
        );
        assert!(
            text.contains(&format!("wsbroker_http_requests_total{{{route},status=\"404\"}} 1\n"))
        );
        assert!(text.contains("route=\"/:id/:id/:id\",status=\"404\"} 100\n"), "one route for all");
        assert!(
            text.contains(&format!("wsbroker_http_request_seconds_count{{{route}}} 2\n")),
            "{text}"
        );
    }

    #[test]
    fn past_the_table_routes_are_other() {
        let counters = HttpCounters::default();
        for n in 0..ROUTES + 5 {
            counters.record(&format!("M{n}"), &["rooms"], 200, Duration::ZERO);
        }
        let mut text = String::new();
        counters.render(&mut text);
        assert!(text.contains("method=\"\",route=\"other\",status=\"200\"} 6\n"), "{text}");
    }
}
