//! Black-box integration tests: a real broker on port 0, real WebSocket and HTTP clients.
//! One test binary, so the shared helpers in `common` are built and linked once.

mod abuse;
mod auth;
mod away;
mod chaos;
mod chat;
mod client_rust;
mod cluster;
mod cluster_dedup;
mod cluster_direct;
mod cluster_streams;
mod common;
mod concurrency;
mod edits;
mod eviction;
mod fast_path;
mod handover;
mod http_api;
mod ordering;
mod persistence;
mod persistence_pg;
mod postgres_server;
mod presence_storm;
mod reactions;
mod redis_server;
mod refresh;
mod replies;
mod resume;
mod room_added;
mod seams;
mod shutdown;
mod store;
mod streams;
mod tls;
mod typing;
mod wire;
