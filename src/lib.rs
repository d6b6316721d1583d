//! wsbroker: a sharded, lock-free WebSocket chat broker.
//!
//! The map (ARCHITECTURE.md draws the message flow):
//! - [`server`]: binds the port, starts the shards, accepts, shuts down gracefully.
//! - [`http`]: routes each request: the WebSocket upgrade, the REST API, health and metrics.
//! - [`session`]: one task per WebSocket connection; reads client frames, writes queued frames.
//! - [`shard`]: N tasks, each the single owner of its slice of the connection cache.
//! - [`directory`]: the copy-on-write `room -> shards` snapshot that publishers read without locks.
//! - [`hub`]: the handle that reaches every shard; routing and scatter-gather queries.
//! - [`cluster`]: the `Broker` between instances: standalone, or the Redis relay thread.
//! - [`protocol`]: the wire contract; every server frame is encoded there, once.
//! - [`transport`]: plain TCP or TLS under HTTP and WebSocket, movable between runtimes.
//! - [`auth`]: JWT verification and the room permissions a token grants.
//! - [`close`]: the close codes; [`metrics`]: counters; [`config`]: flags.

pub mod auth;
pub mod close;
pub mod cluster;
pub mod config;
pub mod directory;
pub mod http;
pub mod hub;
pub mod metrics;
pub mod protocol;
pub mod server;
pub mod session;
pub mod shard;
pub mod transport;

pub use config::Config;
pub use server::Server;
