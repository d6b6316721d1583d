//! A client connection as both of its readers see it (a shard's reader for plain TCP, a session for
//! TLS): what a client's WebSocket message calls for, the heartbeat, the token's enforcement.
//!
//! Owns: the mapping from a client message to a command for the shard, a reply, or nothing, and from a
//! read error to the close it deserves; the checks of a `refresh` token. Plain functions over a
//! [`Peer`]: no I/O, no await. Must not: write to the socket or send the command (the caller does both).

pub mod heartbeat;

use std::sync::Arc;
use std::time::SystemTime;

use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use crate::auth::{AuthError, Authenticator};
use crate::close::{self, CloseReason};
use crate::directory::ShardId;
use crate::hub::Hub;
use crate::mailbox::{Command, ConnId};
use crate::metrics::{self, ShardCounters};
use crate::protocol::{self, ClientFrame, ErrorCode, Frame, Limits, UserId};
use heartbeat::{Beat, Heartbeat, TokenClock};

/// Who sent a message: the connection, its user and shard, and its token's verifier.
#[derive(Clone, Copy)]
pub struct Peer<'a> {
    pub conn: ConnId,
    pub user: &'a UserId,
    pub shard: ShardId,
    pub hub: &'a Hub,
    pub auth: Option<&'a PeerAuth>,
}

/// What a client message calls for.
#[derive(Debug)]
pub enum Reaction {
    Command(Command),
    Reply(Frame),
    /// The client sent its close.
    Closed,
    Nothing,
}

/// How a connection ended, for the log line written when it does.
#[derive(Debug)]
pub enum Ended {
    ClientClosed,
    Closed(CloseReason),
    /// The socket failed or the shard stopped.
    Gone(String),
}

impl Ended {
    /// How the metrics count it.
    pub fn cause(&self) -> metrics::EndCause {
        match self {
            Self::ClientClosed => metrics::EndCause::Client,
            Self::Closed(reason) => metrics::EndCause::Server(*reason),
            Self::Gone(_) => metrics::EndCause::Lost,
        }
    }
}

impl std::fmt::Display for Ended {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::ClientClosed => f.write_str("closed by the client"),
            Self::Closed(reason) => {
                write!(f, "closed by the server: {} {}", reason.code, reason.reason)
            }
            Self::Gone(why) => write!(f, "lost: {why}"),
        }
    }
}

/// What the heartbeat's beat calls for.
#[derive(Debug)]
pub enum Due {
    /// Close the connection (idle, or its token expired).
    Close(CloseReason),
    /// Send this frame (a ping, the token's expiry notice).
    Send(Message),
    Nothing,
}

/// What a read error means for the connection.
#[derive(Debug)]
pub enum ReadFailure {
    /// The client broke the protocol or a limit: close with this reason.
    Close(CloseReason),
    /// The client closed (or already had).
    ClientClosed,
    /// The socket failed.
    Gone(String),
}

impl From<WsError> for ReadFailure {
    fn from(err: WsError) -> Self {
        match err {
            WsError::Capacity(_) => Self::Close(close::MESSAGE_TOO_BIG),
            WsError::Utf8(_) => Self::Close(close::INVALID_PAYLOAD),
            WsError::Protocol(_) => Self::Close(close::PROTOCOL_ERROR),
            WsError::ConnectionClosed | WsError::AlreadyClosed => Self::ClientClosed,
            other => Self::Gone(other.to_string()),
        }
    }
}

impl Peer<'_> {
    pub fn counters(&self) -> &ShardCounters {
        self.hub.metrics().shard(self.shard)
    }

    /// The limits a client frame is parsed with.
    pub fn limits(&self) -> Limits {
        Limits { max_content_chars: self.hub.settings().max_content }
    }

    /// What a beat of the heartbeat calls for; counts the idle eviction and audits the expiry.
    pub fn due(&self, beat: Beat) -> Due {
        match beat {
            Beat::Idle => {
                metrics::incr(&self.counters().idle_evictions);
                Due::Close(close::IDLE_TIMEOUT)
            }
            Beat::TokenExpired => {
                let (user, conn) = (self.user, self.conn);
                tracing::warn!(target: "audit", event = "token_expired", %user, conn);
                Due::Close(close::TOKEN_EXPIRED)
            }
            Beat::Ping => Due::Send(Message::Ping(Default::default())),
            Beat::TokenExpiring(expires_at) => {
                Due::Send(Message::Text(protocol::token_expiring_frame(expires_at)))
            }
            Beat::Wait => Due::Nothing,
        }
    }

    /// What a client message calls for. A `refresh` that passes moves the token's deadlines in
    /// `heartbeat`.
    pub fn react(&self, message: Message, heartbeat: &mut Heartbeat) -> Reaction {
        match message {
            Message::Text(text) => {
                metrics::incr(&self.counters().frames_in);
                match protocol::parse_client_frame(&text, self.user, self.limits()) {
                    Ok(ClientFrame::Request(request)) => {
                        Reaction::Command(Command::Request { conn: self.conn, request })
                    }
                    Ok(ClientFrame::Refresh { id, token }) => {
                        match self.refresh(id, &token, heartbeat) {
                            Ok(command) => Reaction::Command(command),
                            Err(refusal) => Reaction::Reply(refusal),
                        }
                    }
                    Err(rejection) => Reaction::Reply(rejection.to_frame()),
                }
            }
            Message::Binary(_) => {
                metrics::incr(&self.counters().frames_in);
                Reaction::Reply(protocol::error_frame(
                    None,
                    ErrorCode::BadRequest,
                    "binary frames are not supported; send JSON text",
                ))
            }
            Message::Close(_) => Reaction::Closed,
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => Reaction::Nothing,
        }
    }

    /// Checks a `refresh` token: the same user gets its new expiry here and its new permissions from
    /// the shard (which acks); anything else is answered with an error and changes nothing.
    fn refresh(
        &self,
        id: Option<String>,
        token: &str,
        heartbeat: &mut Heartbeat,
    ) -> Result<Command, Frame> {
        let reject = |code, message: &str| protocol::error_frame(id.as_deref(), code, message);
        let Some(PeerAuth { authenticator, .. }) = self.auth else {
            return Err(reject(
                ErrorCode::BadRequest,
                "authentication is off: there is no token to refresh",
            ));
        };
        let refusal = match authenticator.verify(token) {
            Ok(identity) if identity.user == *self.user => {
                heartbeat.token = Some(Box::new(self.token_clock(identity.expires_at)));
                return Ok(Command::Reauthorize {
                    conn: self.conn,
                    id,
                    permissions: identity.permissions,
                });
            }
            Ok(identity) => {
                (ErrorCode::Forbidden, format!("the token is for another user ({})", identity.user))
            }
            Err(AuthError::Missing) => (ErrorCode::Unauthorized, "no token".to_owned()),
            Err(AuthError::Invalid(why)) => (ErrorCode::Unauthorized, why),
        };
        tracing::warn!(target: "audit", event = "refresh_refused", user = %self.user, conn = self.conn, reason = %refusal.1);
        Err(reject(refusal.0, "the token was refused; the old one stays in force"))
    }

    /// The notice and close deadlines of a token expiring at `expires_at`.
    pub fn token_clock(&self, expires_at: SystemTime) -> TokenClock {
        let remaining = expires_at.duration_since(SystemTime::now()).unwrap_or_default();
        let settings = self.hub.settings();
        TokenClock::new(
            Instant::now(),
            expires_at,
            remaining,
            settings.token_expiry_notice,
            settings.jwt_leeway,
        )
    }

    /// A new connection's heartbeat, with its token's clock when authentication is on.
    pub fn heartbeat(&self) -> Heartbeat {
        let settings = self.hub.settings();
        let mut heartbeat =
            Heartbeat::new(Instant::now(), settings.ping_interval, settings.idle_timeout);
        if let Some(auth) = self.auth {
            heartbeat.token = Some(Box::new(self.token_clock(auth.expires_at)));
        }
        heartbeat
    }
}

/// What a connection (read by a shard's reader or a session) needs to enforce its token: the
/// verifier for `refresh`, and the connect token's expiry.
#[derive(Debug)]
pub struct PeerAuth {
    pub authenticator: Arc<Authenticator>,
    pub expires_at: SystemTime,
}

/// Every connection's WebSocket settings (buffers and limits), from the flags.
pub fn websocket_config(settings: &crate::Config) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(settings.ws_read_buffer)
        .write_buffer_size(settings.ws_write_buffer)
        .max_write_buffer_size(settings.ws_write_buffer + 2 * settings.max_frame + 128 * 1024)
        .max_message_size(Some(settings.max_frame))
        .max_frame_size(Some(settings.max_frame))
}
