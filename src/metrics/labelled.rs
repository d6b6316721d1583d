//! The labelled series: chats accepted and refused (by reason), messages refused `unavailable` (by
//! cause), error frames (by code), connection ends (by close code and reason), and whether the
//! instance is ready.
//!
//! Owns: their rendering, and the per-shard arrays behind the chat and end counts. Must not: read
//! anything but counters; the error counts are the protocol's own ([`crate::protocol::errors_made`]).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use super::{Metrics, ShardCounters};
use crate::close;
use crate::protocol::{errors_made, ErrorCode};

/// Connection ends counted beyond the server's close reasons: by the client, and lost.
const ENDS: usize = close::ALL.len() + 2;

/// How a connection ended, as the metrics count it.
#[derive(Debug, Clone, Copy)]
pub enum EndCause {
    /// The server closed it with this reason.
    Server(close::CloseReason),
    /// The client closed it.
    Client,
    /// The socket failed or the shard stopped.
    Lost,
}

/// Why a message (a chat, an HTTP publish) was refused `unavailable`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnavailableCause {
    /// The broker is shutting down (a chat on a draining connection).
    ShuttingDown,
    /// The store is down: a commit failed and has not succeeded since.
    StoreDown,
    /// The store writer's queue was full (or its writer gone).
    StoreFull,
    /// The room's stream could not be read from the store (its newest seq, before the first
    /// message a room gets after a start).
    StreamUnread,
    /// The cluster could not number it: the relay's queue was full or Redis did not answer.
    Unnumbered,
}

impl UnavailableCause {
    pub const ALL: [Self; 5] = [
        Self::ShuttingDown,
        Self::StoreDown,
        Self::StoreFull,
        Self::StreamUnread,
        Self::Unnumbered,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::ShuttingDown => "shutting_down",
            Self::StoreDown => "store_down",
            Self::StoreFull => "store_full",
            Self::StreamUnread => "stream_unread",
            Self::Unnumbered => "unnumbered",
        }
    }
}

/// A shard's labelled counts.
#[derive(Debug)]
pub struct Labelled {
    chats_accepted: AtomicU64,
    chats_refused: [AtomicU64; ErrorCode::ALL.len()],
    unavailable: [AtomicU64; UnavailableCause::ALL.len()],
    ends: [AtomicU64; ENDS],
}

impl Default for Labelled {
    fn default() -> Self {
        Self {
            chats_accepted: AtomicU64::new(0),
            chats_refused: [const { AtomicU64::new(0) }; ErrorCode::ALL.len()],
            unavailable: [const { AtomicU64::new(0) }; UnavailableCause::ALL.len()],
            ends: [const { AtomicU64::new(0) }; ENDS],
        }
    }
}

impl Labelled {
    /// A chat passed every check and was handed on to be numbered or stored.
    pub fn chat_accepted(&self) {
        self.chats_accepted.fetch_add(1, Relaxed);
    }

    /// A chat was refused with `code`.
    pub fn chat_refused(&self, code: ErrorCode) {
        self.chats_refused[code as usize].fetch_add(1, Relaxed);
    }

    /// A message was refused `unavailable` because of `cause` (counted where the cause is known:
    /// the sender's shard, or the room's home).
    pub fn unavailable(&self, cause: UnavailableCause) {
        self.unavailable[cause as usize].fetch_add(1, Relaxed);
    }

    pub fn ended(&self, cause: EndCause) {
        let at = match cause {
            EndCause::Server(reason) => reason.index(),
            EndCause::Client => close::ALL.len(),
            EndCause::Lost => close::ALL.len() + 1,
        };
        self.ends[at].fetch_add(1, Relaxed);
    }
}

impl Metrics {
    fn labelled(&self, pick: impl Fn(&Labelled) -> &AtomicU64) -> u64 {
        self.sum(|shard: &ShardCounters| pick(&shard.labelled))
    }

    /// Every labelled series, each label value present (zero or not), so every query has series.
    pub(super) fn render_labelled(&self, out: &mut String, ready: bool) {
        let ready = u64::from(ready);
        let _ = writeln!(
            out,
            "# HELP wsbroker_ready 1 while /readyz answers 200 (Redis, the store, not draining).\n\
             # TYPE wsbroker_ready gauge\nwsbroker_ready {ready}"
        );
        let accepted = self.labelled(|l| &l.chats_accepted);
        let _ = writeln!(
            out,
            "# HELP wsbroker_chats_accepted_total Chats that passed every check and went on.\n\
             # TYPE wsbroker_chats_accepted_total counter\nwsbroker_chats_accepted_total {accepted}"
        );
        let name = "wsbroker_chats_refused_total";
        let _ = writeln!(
            out,
            "# HELP {name} Chats refused, by the error's code.\n# TYPE {name} counter"
        );
        for code in ErrorCode::ALL {
            let value = self.labelled(|l| &l.chats_refused[code as usize]);
            let _ = writeln!(out, "{name}{{reason=\"{}\"}} {value}", code.as_str());
        }
        let name = "wsbroker_unavailable_total";
        let help = "Messages (chats, HTTP publishes) refused `unavailable`, by cause.";
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        for cause in UnavailableCause::ALL {
            let value = self.labelled(|l| &l.unavailable[cause as usize]);
            let _ = writeln!(out, "{name}{{cause=\"{}\"}} {value}", cause.as_str());
        }
        let name = "wsbroker_errors_total";
        let _ = writeln!(
            out,
            "# HELP {name} Error frames sent to clients, by code.\n# TYPE {name} counter"
        );
        for code in ErrorCode::ALL {
            let _ = writeln!(out, "{name}{{code=\"{}\"}} {}", code.as_str(), errors_made(code));
        }
        self.render_ends(out);
    }

    fn render_ends(&self, out: &mut String) {
        let name = "wsbroker_connection_ends_total";
        let help =
            "Connections ended: closed by the server (code and reason), by the client, or lost.";
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        let server = close::ALL.iter().map(|reason| (reason.code.to_string(), reason.reason));
        let others = [("none".to_owned(), "client closed"), ("none".to_owned(), "lost")];
        for (at, (code, reason)) in server.chain(others).enumerate() {
            let value = self.labelled(|l| &l.ends[at]);
            let reason = reason.replace(' ', "_");
            let _ = writeln!(out, "{name}{{code=\"{code}\",reason=\"{reason}\"}} {value}");
        }
    }
}
