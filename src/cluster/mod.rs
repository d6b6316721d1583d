//! The cluster: the Redis implementation of the seams in [`crate::broker`] (`--redis-url`: one
//! Redis, or the master Redis Sentinel names).
//!
//! Owns: the Redis broker ([`redis::RedisBroker`]), the relay thread behind it, the presence scripts
//! and the wire names. May touch: the shards only through the [`crate::router::Router`] it is given,
//! which feeds incoming messages into the same fan-out path as local ones, and the relay counters.
//! Must not: know the hub, block or await a caller.

mod endpoint;
mod mirror;
mod presence;
pub mod redis;
mod relay;
mod streams;
mod wire;
