//! A session: the task that serves one WebSocket connection, reading and writing its socket.
//!
//! Owns: the socket, the receiving end of the connection's outbox, its heartbeat. It parses client
//! frames (refusing bad ones itself) and hands valid requests to its shard; it writes whatever the shard
//! queued, in batches with one flush each. On a lane (the fast path) the shard writes the socket and
//! the session writes only what the kernel left queued, and its own frames.
//! May touch: its shard's command inbox, its own counters. Must not: touch the cache; when the
//! connection ends, for any reason, it tells the shard with `Unregister`. It names no HTTP type: the
//! upgrade code that runs it holds the connection's admission slot.

mod heartbeat;
mod write;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures_util::{SinkExt, StreamExt};
use tokio::sync::oneshot;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

use crate::auth::{AuthError, Authenticator};
use crate::close::{self, CloseReason};
use crate::directory::ShardId;
use crate::hub::Hub;
use crate::mailbox::{Command, ConnId};
use crate::metrics::{self, ShardCounters};
use crate::protocol::{self, ClientFrame, ErrorCode, Frame, Limits, UserId};
use crate::transport::Stream;
use heartbeat::{Beat, Heartbeat, TokenClock};
use write::write_batch;
pub use write::Inflow;

pub type Socket = WebSocketStream<Stream>;

/// How long a close (other than shutdown's) may take to reach a client before the socket is dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(3);

/// Everything a session needs besides its socket.
#[derive(Debug)]
pub struct Session {
    pub conn: ConnId,
    pub user: UserId,
    /// The shard that owns the connection (its user's), computed once at the upgrade.
    pub shard: ShardId,
    pub hub: Hub,
    pub inflow: Inflow,
    pub closer: oneshot::Receiver<CloseReason>,
    /// With authentication on. Boxed: an idle session without it carries only a null pointer.
    pub auth: Option<Box<SessionAuth>>,
}

/// What a session needs to enforce its token: the verifier for `refresh`, and the connect token's expiry.
#[derive(Debug)]
pub struct SessionAuth {
    pub authenticator: Arc<Authenticator>,
    pub expires_at: SystemTime,
}

/// What a client message calls for.
enum Reaction {
    Command(Command),
    Reply(Frame),
    /// The client sent its close.
    Closed,
    Nothing,
}

/// How a session ended, for the log line written when it does.
#[derive(Debug)]
enum Ended {
    ClientClosed,
    Closed(CloseReason),
    /// The socket failed or the shard stopped.
    Gone(String),
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

impl Session {
    fn counters(&self) -> &ShardCounters {
        self.hub.metrics().shard(self.shard)
    }

    /// Serves the connection until it ends, then makes sure the cache no longer holds it. `held`
    /// (the upgrade's admission slot) is dropped last. This is the task spawned on the shard, so
    /// `held` is an argument here rather than a wrapper's: a wrapping future would keep its own
    /// copy of every argument (`footprint` pins the size).
    pub async fn run<H>(mut self, mut socket: Socket, held: H) {
        let ended = self.serve(&mut socket).await;
        if let Inflow::Lane(lane) = &self.inflow {
            lane.detach();
        }
        tracing::debug!(conn = self.conn, user = %self.user, %ended, "connection ended");
        self.unregister().await;
        drop(held);
    }

    /// Removes the connection from the cache (its shard ignores a second request).
    pub async fn unregister(&self) {
        self.hub.router().command(self.shard, Command::Unregister { conn: self.conn }).await;
    }

    async fn serve(&mut self, socket: &mut Socket) -> Ended {
        let settings = self.hub.settings();
        let limits = Limits { max_content_chars: settings.max_content };
        let mut heartbeat =
            Heartbeat::new(Instant::now(), settings.ping_interval, settings.idle_timeout);
        if let Some(auth) = &self.auth {
            heartbeat.token = Some(Box::new(self.token_clock(auth.expires_at)));
        }
        let timer = tokio::time::sleep_until(heartbeat.deadline());
        tokio::pin!(timer);
        loop {
            let ended = tokio::select! {
                biased;
                reason = &mut self.closer => {
                    Some(self.close(socket, reason.unwrap_or(close::SHUTTING_DOWN)).await)
                }
                frame = self.inflow.next() => match frame {
                    Ok(frame) => self.write_unless_closed(socket, frame).await,
                    Err(why) => Some(Ended::Gone(why)),
                },
                incoming = socket.next() => {
                    heartbeat.seen(Instant::now());
                    match incoming {
                        Some(Ok(message)) => {
                            self.on_message(socket, message, limits, &mut heartbeat).await
                        }
                        Some(Err(err)) => Some(self.on_read_error(socket, err).await),
                        None => Some(Ended::ClientClosed),
                    }
                }
                () = &mut timer => {
                    let ended = self.on_beat(socket, heartbeat.due(Instant::now())).await;
                    timer.as_mut().reset(heartbeat.deadline());
                    ended
                }
            };
            if let Some(ended) = ended {
                return ended;
            }
        }
    }

    /// Writes `first` and what else is queued, unless a close comes first.
    async fn write_unless_closed(&mut self, socket: &mut Socket, first: Frame) -> Option<Ended> {
        let counters = self.hub.metrics().shard(self.shard);
        tokio::select! {
            biased;
            reason = &mut self.closer => {
                Some(self.close(socket, reason.unwrap_or(close::SHUTTING_DOWN)).await)
            }
            written = write_batch(socket, &self.inflow, first, counters) => {
                written.err().map(|err| Ended::Gone(err.to_string()))
            }
        }
    }

    /// Acts on what the heartbeat timer found due; `Some` when the session must end.
    async fn on_beat(&mut self, socket: &mut Socket, beat: Beat) -> Option<Ended> {
        let message = match beat {
            Beat::Idle => {
                metrics::incr(&self.counters().idle_evictions);
                return Some(self.close(socket, close::IDLE_TIMEOUT).await);
            }
            Beat::TokenExpired => {
                let (user, conn) = (&self.user, self.conn);
                tracing::warn!(target: "audit", event = "token_expired", %user, conn);
                return Some(self.close(socket, close::TOKEN_EXPIRED).await);
            }
            Beat::Ping => Message::Ping(Default::default()),
            Beat::TokenExpiring(expires_at) => {
                Message::Text(protocol::token_expiring_frame(expires_at))
            }
            Beat::Wait => return None,
        };
        socket.send(message).await.err().map(|err| Ended::Gone(err.to_string()))
    }

    /// Handles one client message; `Some` when the session must end.
    async fn on_message(
        &mut self,
        socket: &mut Socket,
        message: Message,
        limits: Limits,
        heartbeat: &mut Heartbeat,
    ) -> Option<Ended> {
        match self.react(message, limits, heartbeat) {
            Reaction::Command(command) => {
                let delivered = self.hub.router().command(self.shard, command).await;
                (!delivered).then(|| Ended::Gone("shard stopped".into()))
            }
            Reaction::Reply(frame) => socket
                .send(Message::Text(frame))
                .await
                .err()
                .map(|err| Ended::Gone(err.to_string())),
            Reaction::Closed => {
                let _ = socket.flush().await;
                Some(Ended::ClientClosed)
            }
            Reaction::Nothing => None,
        }
    }

    /// What a client message calls for. Not async: the message (and its text) is gone before the
    /// session awaits anything, which keeps every idle session's task small.
    fn react(&mut self, message: Message, limits: Limits, heartbeat: &mut Heartbeat) -> Reaction {
        match message {
            Message::Text(text) => {
                metrics::incr(&self.counters().frames_in);
                match protocol::parse_client_frame(&text, &self.user, limits) {
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
        let Some(SessionAuth { authenticator, .. }) = self.auth.as_deref() else {
            return Err(reject(
                ErrorCode::BadRequest,
                "authentication is off: there is no token to refresh",
            ));
        };
        let refusal = match authenticator.verify(token) {
            Ok(identity) if identity.user == self.user => {
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
    fn token_clock(&self, expires_at: SystemTime) -> TokenClock {
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

    async fn on_read_error(&mut self, socket: &mut Socket, err: WsError) -> Ended {
        match err {
            WsError::Capacity(_) => self.close(socket, close::MESSAGE_TOO_BIG).await,
            WsError::Utf8(_) => self.close(socket, close::INVALID_PAYLOAD).await,
            WsError::Protocol(_) => self.close(socket, close::PROTOCOL_ERROR).await,
            WsError::ConnectionClosed | WsError::AlreadyClosed => Ended::ClientClosed,
            other => Ended::Gone(other.to_string()),
        }
    }

    /// Sends a close frame and waits, for a bounded time, for the client to answer it.
    ///
    /// An eviction leaves the cache first, so the room hears `leave` at once, not after the handshake.
    /// A draining close (shutdown) writes the queued frames first and leaves the cache last, so the
    /// shards wait for it to finish.
    async fn close(&mut self, socket: &mut Socket, reason: CloseReason) -> Ended {
        // Boxed: the closing state is large and rare, and inline it would enlarge every idle session.
        Box::pin(self.close_inline(socket, reason)).await
    }

    async fn close_inline(&mut self, socket: &mut Socket, reason: CloseReason) -> Ended {
        if !reason.drain {
            self.unregister().await;
        }
        let grace = if reason.drain { self.hub.settings().shutdown_timeout } else { CLOSE_GRACE };
        let inflow = &self.inflow;
        let counters = self.hub.metrics().shard(self.shard);
        let closing = async {
            if reason.drain {
                while let Some(frame) = inflow.try_recv() {
                    write_batch(socket, inflow, frame, counters).await?;
                }
            }
            if let Inflow::Lane(lane) = inflow {
                if reason.drain {
                    std::future::poll_fn(|cx| lane.poll_drained(cx)).await?;
                }
                lane.close(!reason.drain);
            }
            let frame =
                CloseFrame { code: CloseCode::from(reason.code), reason: reason.reason.into() };
            socket.send(Message::Close(Some(frame))).await?;
            while let Some(Ok(_)) = socket.next().await {}
            Ok::<(), WsError>(())
        };
        let _ = tokio::time::timeout(grace, closing).await;
        Ended::Closed(reason)
    }
}

#[cfg(test)]
mod footprint {
    use super::*;

    /// Every idle connection is one of these tasks (as spawned: with the admission slot it holds).
    /// At 1,664 bytes and below, tokio's task cell fits
    /// mimalloc's 1,792-byte size class; a few bytes more and every connection pays for 2,048
    /// (measured: idle-19k went from ~5.0 to ~5.6 KB per connection, docs/benchmarks.md).
    #[tokio::test]
    async fn an_idle_session_task_stays_within_its_allocation_class() {
        let (hub, _inboxes) = Hub::new(crate::Config::with_listen("127.0.0.1:0".parse().unwrap()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = tokio::net::TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let stream = Stream::Plain(crate::transport::MovableTcp::new(client));
        let role = tokio_tungstenite::tungstenite::protocol::Role::Server;
        let socket = WebSocketStream::from_raw_socket(stream, role, None).await;
        let ((_sender, outbox), (_close, closer)) = (flume::bounded(1), oneshot::channel());
        let inflow = Inflow::Queue(outbox);
        let session =
            Session { conn: 1, user: "u".into(), shard: 0, hub, inflow, closer, auth: None };
        let admission_slot: Option<Box<u64>> = None;
        let task = session.run(socket, admission_slot);
        assert!(
            std::mem::size_of_val(&task) <= 1_664,
            "the session task grew to {} bytes",
            std::mem::size_of_val(&task)
        );
    }
}
