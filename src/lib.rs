//! wsbroker: a sharded WebSocket chat broker whose connection state is owned by shard threads,
//! not shared behind locks (ARCHITECTURE.md says exactly what is lock-free and what is not).
//!
//! The map, top to bottom; a module imports only those below it (`../shared/tools/import-cycles`
//! checks the files, this order is the modules'; ARCHITECTURE.md draws it):
//! - [`server`]: binds the port, starts the shards and the broker, accepts, shuts down gracefully.
//! - [`http`]: routes each request: the WebSocket upgrade, the REST API, health and metrics.
//! - [`reader`]: each shard's reader of its plain-TCP connections, one task for all of them.
//! - [`session`]: one task per TLS connection; reads client frames, writes queued frames.
//! - [`peer`]: a client connection as the reader and a session both see it: what a client frame
//!   calls for, the heartbeat, the token's enforcement.
//! - [`shard`]: N threads, each the single owner of its slice of the connection cache.
//! - [`attachments`]: the attachment service: uploads (limits, type from the bytes, thumbnails),
//!   downloads and the files a chat carries.
//! - [`events`]: room events, the changes to a stored message (edits, deletions) with their rules,
//!   numbered in the room's stream like messages.
//! - [`messages`]: the message service: history with its rules (REST and WebSocket).
//! - [`moderation`]: the moderation service: mutes, kicks, bans, room settings, reports, blocks,
//!   with their rules (REST and WebSocket); the shards enforce what it puts in force.
//! - [`hub`]: the handle a shard, session or handler holds: router, seams, store, metrics, settings.
//! - [`cluster`]: the Redis implementation of the seams between instances, and its relay thread.
//! - [`broker`]: the seams between instances (`Broker` for fan-out, `PresenceManager`, `Sequencer`),
//!   each with its standalone implementation.
//! - [`rules`]: a room's rules (mutes, slow mode, archived) and the notices that carry moderation
//!   to the shards of every instance.
//! - [`rooms`]: the room rules (public, private, direct): who may join, read, manage.
//! - [`store`]: messages, rooms and participants on disk (SQLite or PostgreSQL), writer and read pool;
//!   hands a commit's outcome back through the router.
//! - [`router`]: the way into every shard's inboxes, and which shards a target reaches.
//! - [`mailbox`]: the messages sessions, shards, the hub, the store and the relay exchange.
//! - [`auth`]: JWT verification and the room permissions a token grants.
//! - [`config`]: the flags (the shard count is bounded by the directory's width).
//! - [`proxies`]: who a request comes from behind a trusted load balancer (`X-Forwarded-For`).
//! - [`directory`]: the copy-on-write `room -> shards` snapshot that publishers read without locks.
//! - [`lane`]: a plain-TCP connection's socket as its shard writes it, frames encoded once.
//! - [`transport`]: plain TCP or TLS under HTTP and WebSocket, movable between runtimes.
//! - [`close`]: the close codes; [`metrics`]: counters; [`process`]: the process's own metrics.
//! - [`protocol`]: the wire contract; every server frame is encoded there, once.

pub(crate) mod attachments;
pub(crate) mod auth;
pub mod broker;
pub(crate) mod close;
pub mod cluster;
pub mod config;
pub mod config_file;
pub mod directory;
pub(crate) mod events;
pub(crate) mod http;
pub mod hub;
pub mod lane;
pub mod mailbox;
pub(crate) mod messages;
pub mod metrics;
pub(crate) mod moderation;
pub(crate) mod peer;
pub(crate) mod process;
pub mod protocol;
pub mod proxies;
pub(crate) mod reader;
pub(crate) mod rooms;
pub mod router;
pub mod rules;
pub mod server;
pub(crate) mod session;
pub mod shard;
pub mod store;
pub(crate) mod transport;

pub use config::Config;
pub use server::{Server, StartError};
