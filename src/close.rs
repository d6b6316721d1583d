//! WebSocket close codes the broker sends, in documented ranges (docs/protocol.md).
//!
//! Owns: the table of close reasons. Must not: decide when to close; sessions and shards do that.
//!
//! Ranges: 1000-1015 are RFC 6455 codes used with their standard meaning; 4000-4099 are the broker's
//! own (the connection misbehaved or its credentials ran out). Later codes are added to those ranges.

/// How long a close (other than shutdown's, bounded by `--shutdown-timeout`) may take to reach a
/// client before the socket is dropped.
pub const GRACE: std::time::Duration = std::time::Duration::from_secs(3);

/// Why the server closes a connection, and whether queued frames go out first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CloseReason {
    pub code: u16,
    pub reason: &'static str,
    /// Write what is already queued before the close frame (graceful shutdown), or drop it.
    pub drain: bool,
}

/// 1001: the server is shutting down. Queued frames are flushed first.
pub const SHUTTING_DOWN: CloseReason =
    CloseReason { code: 1001, reason: "server shutting down", drain: true };
/// 1002: the client broke the WebSocket protocol.
pub const PROTOCOL_ERROR: CloseReason =
    CloseReason { code: 1002, reason: "protocol error", drain: false };
/// 1008: the client's outbound queue was full; it was evicted so it cannot slow the others.
pub const SLOW_CONSUMER: CloseReason =
    CloseReason { code: 1008, reason: "slow consumer", drain: false };
/// 1008: the client kept sending over its rate limit.
pub const FLOODING: CloseReason =
    CloseReason { code: 1008, reason: "rate limit exceeded", drain: false };
/// 1009: a message over the frame limit (`--max-frame`).
pub const MESSAGE_TOO_BIG: CloseReason =
    CloseReason { code: 1009, reason: "message too big", drain: false };
/// 4000: no pong or other traffic within `--idle-timeout`.
pub const IDLE_TIMEOUT: CloseReason =
    CloseReason { code: 4000, reason: "idle timeout", drain: false };
/// 1007: a text frame that is not valid UTF-8.
pub const INVALID_PAYLOAD: CloseReason =
    CloseReason { code: 1007, reason: "invalid UTF-8", drain: false };
/// 4003: an admin banned the user from the instance; a new connection is refused while the ban
/// holds. The reason frame goes out first.
pub const BANNED: CloseReason = CloseReason { code: 4003, reason: "banned", drain: true };
/// 4001: the connection's token expired (plus `--jwt-leeway`) without a `refresh`.
pub const TOKEN_EXPIRED: CloseReason =
    CloseReason { code: 4001, reason: "token expired", drain: false };

/// Every reason the broker closes with, in one list (the metrics count closes by it).
pub const ALL: [CloseReason; 9] = [
    SHUTTING_DOWN,
    PROTOCOL_ERROR,
    SLOW_CONSUMER,
    FLOODING,
    MESSAGE_TOO_BIG,
    IDLE_TIMEOUT,
    INVALID_PAYLOAD,
    BANNED,
    TOKEN_EXPIRED,
];

impl CloseReason {
    /// Its place in [`ALL`].
    pub fn index(&self) -> usize {
        ALL.iter().position(|known| known == self).expect("every close reason is in ALL")
    }
}
