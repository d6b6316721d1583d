//! wsbroker-client: the client library's semantics (clients/js) for Rust services and load tools.
//! One task owns the connection: it reconnects with jittered backoff, resumes every joined room
//! after the last message it delivered (`since`), finds a broker that stopped answering, and keeps
//! every chat in an outbox until its ack, resending it with its id after a reconnect, which the
//! broker's dedup turns into one delivery. A chat fails only for a final error.
//!
//! ```no_run
//! # async fn demo() {
//! use wsbroker_client::{Client, Event, Options};
//! let mut client = Client::connect(Options::new("ws://127.0.0.1:8080/ws", "bot"));
//! client.join("lobby");
//! client.send("lobby", serde_json::json!({"content": "hi"}));
//! while let Some(event) = client.next_event().await {
//!     if let Event::Message(frame) = event { println!("{frame}"); }
//! }
//! # }
//! ```

mod session;

use std::time::Duration;

use serde_json::Value;
use tokio::sync::mpsc;

/// Errors that end a chat: retrying cannot help. Any other code is retried.
pub const FINAL_CODES: &[&str] = &[
    "bad_request",
    "unknown_type",
    "content_too_long",
    "not_member",
    "forbidden",
    "unauthorized",
    "not_found",
    "conflict",
    "muted",
    "banned",
];

/// Where to connect and how patiently.
#[derive(Debug, Clone)]
pub struct Options {
    /// The broker's WebSocket endpoint, such as `ws://127.0.0.1:8080/ws`.
    pub url: String,
    /// The user to connect as (authentication off), or the token's `sub` with `token`.
    pub user: String,
    pub token: Option<String>,
    /// First reconnect delay, doubled each attempt (with jitter) up to `max_backoff`.
    pub backoff: Duration,
    pub max_backoff: Duration,
    /// How long the broker may stay silent while something is owed before the connection is
    /// presumed dead and replaced.
    pub answer_timeout: Duration,
}

impl Options {
    pub fn new(url: impl Into<String>, user: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            user: user.into(),
            token: None,
            backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            answer_timeout: Duration::from_secs(10),
        }
    }
}

/// What the client tells its owner, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// Connected, every room joined again: chats flow.
    Live,
    /// The connection is gone; the next attempt comes after the backoff.
    Reconnecting { attempt: u32 },
    /// A room the owner asked to join is joined: every message published in it from now on comes.
    Joined { room: String },
    /// A room may not (or no longer) be joined.
    Refused { room: String, code: String },
    /// A room or global message, or a room event (`message_edited`, `message_deleted`: its `type`
    /// says), each once.
    Message(Value),
    /// A chat is stored and delivered.
    Acked { id: String, room: String, seq: Option<u64> },
    /// A chat the broker will not take, for a final reason.
    Failed { id: String, room: String, code: String, message: String },
    /// A room's stream could not be resumed: reload its history (seq, epoch: where it stands).
    Reset { room: String, reason: String, seq: u64, epoch: String },
}

enum Command {
    Join(String),
    Send { id: String, room: String, data: Value },
}

/// A handle to the client's task; dropping it closes the connection.
pub struct Client {
    commands: mpsc::UnboundedSender<Command>,
    events: mpsc::UnboundedReceiver<Event>,
}

impl Client {
    /// Starts the client's task (on the current tokio runtime) and connects.
    pub fn connect(options: Options) -> Self {
        let (commands, commands_rx) = mpsc::unbounded_channel();
        let (events_tx, events) = mpsc::unbounded_channel();
        tokio::spawn(session::run(options, commands_rx, events_tx));
        Self { commands, events }
    }

    /// Joins `room` now (`Joined` says when), and again (resuming) after every reconnect.
    pub fn join(&self, room: &str) {
        let _ = self.commands.send(Command::Join(room.to_owned()));
    }

    /// Sends a chat; returns its id. It is `Acked` once, or `Failed` for a final reason.
    pub fn send(&self, room: &str, data: Value) -> String {
        let id = uuid::Uuid::new_v4().to_string();
        let _ = self.commands.send(Command::Send { id: id.clone(), room: room.to_owned(), data });
        id
    }

    /// The next event; `None` once the task has ended.
    pub async fn next_event(&mut self) -> Option<Event> {
        self.events.recv().await
    }
}
