//! A session: the task that serves one WebSocket connection over TLS (or with `--fast-path false`),
//! reading and writing its socket. Plain-TCP connections have no task: their shard's reader
//! (`reader`) reads them and their lane is written by the shard.
//!
//! Owns: the socket, the receiving end of the connection's outbox, its heartbeat. It parses client
//! frames (refusing bad ones itself) and hands valid requests to its shard; it writes whatever the shard
//! queued, in batches with one flush each. What a message calls for and the heartbeat are
//! shared with the reader (`peer`).
//! May touch: its shard's command inbox, its own counters. Must not: touch the cache; when the
//! connection ends, for any reason, it tells the shard with `Unregister`. It names no HTTP type: the
//! upgrade code that runs it holds the connection's admission slot.

mod write;

use futures_util::{SinkExt, StreamExt};
use tokio::sync::oneshot;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

use crate::close::{self, CloseReason};
use crate::directory::ShardId;
use crate::hub::Hub;
use crate::mailbox::ConnId;
use crate::peer::heartbeat::{Beat, Heartbeat};
use crate::peer::{Due, Ended, Peer, PeerAuth, Reaction, ReadFailure};
use crate::protocol::{Frame, UserId};
use crate::transport::Transport;
use write::write_batch;

pub type Socket = WebSocketStream<Transport>;

/// Everything a session needs besides its socket.
#[derive(Debug)]
pub struct Session {
    pub conn: ConnId,
    pub user: UserId,
    /// The shard that owns the connection (its user's), computed once at the upgrade.
    pub shard: ShardId,
    pub hub: Hub,
    /// The frames its shard queued for it.
    pub outbox: flume::Receiver<Frame>,
    pub closer: oneshot::Receiver<CloseReason>,
    /// With authentication on. Boxed: an idle session without it carries only a null pointer.
    pub auth: Option<Box<PeerAuth>>,
}

impl Session {
    fn peer(&self) -> Peer<'_> {
        let (conn, user, shard, hub) = (self.conn, &self.user, self.shard, &self.hub);
        Peer { conn, user, shard, hub, auth: self.auth.as_deref() }
    }

    /// Serves the connection until it ends, then makes sure the cache no longer holds it. `held`
    /// (the upgrade's admission slot) is dropped last. This is the task spawned on the shard, so
    /// `held` is an argument here rather than a wrapper's: a wrapping future would keep its own
    /// copy of every argument (`footprint` pins the size).
    pub async fn run<H>(mut self, mut socket: Socket, held: H) {
        let ended = self.serve(&mut socket).await;
        tracing::debug!(conn = self.conn, user = %self.user, %ended, "connection ended");
        self.hub.metrics().shard(self.shard).labelled.ended(ended.cause());
        self.unregister().await;
        drop(held);
    }

    /// Removes the connection from the cache (its shard ignores a second request).
    pub async fn unregister(&self) {
        self.hub.router().unregister(self.shard, self.conn).await;
    }

    async fn serve(&mut self, socket: &mut Socket) -> Ended {
        let mut heartbeat = self.peer().heartbeat();
        let timer = tokio::time::sleep_until(heartbeat.deadline());
        tokio::pin!(timer);
        loop {
            let ended = tokio::select! {
                biased;
                reason = &mut self.closer => {
                    Some(self.close(socket, reason.unwrap_or(close::SHUTTING_DOWN)).await)
                }
                frame = self.outbox.recv_async() => match frame {
                    Ok(frame) => self.write_unless_closed(socket, frame).await,
                    Err(_) => Some(Ended::Gone("outbox closed".into())),
                },
                incoming = socket.next() => {
                    heartbeat.seen(Instant::now());
                    match incoming {
                        Some(Ok(message)) => {
                            self.on_message(socket, message, &mut heartbeat).await
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
            written = write_batch(socket, &self.outbox, first, counters) => {
                written.err().map(|err| Ended::Gone(err.to_string()))
            }
        }
    }

    /// Acts on what the heartbeat timer found due; `Some` when the session must end.
    async fn on_beat(&mut self, socket: &mut Socket, beat: Beat) -> Option<Ended> {
        match self.peer().due(beat) {
            Due::Close(reason) => Some(self.close(socket, reason).await),
            Due::Send(message) => {
                socket.send(message).await.err().map(|err| Ended::Gone(err.to_string()))
            }
            Due::Nothing => None,
        }
    }

    /// Handles one client message; `Some` when the session must end.
    async fn on_message(
        &mut self,
        socket: &mut Socket,
        message: Message,
        heartbeat: &mut Heartbeat,
    ) -> Option<Ended> {
        // Not async: the message (and its text) is gone before the session awaits anything, which
        // keeps every idle session's task small.
        let reaction = self.peer().react(message, heartbeat);
        match reaction {
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

    async fn on_read_error(&mut self, socket: &mut Socket, err: WsError) -> Ended {
        match ReadFailure::from(err) {
            ReadFailure::Close(reason) => self.close(socket, reason).await,
            ReadFailure::ClientClosed => Ended::ClientClosed,
            ReadFailure::Gone(why) => Ended::Gone(why),
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
        let grace = if reason.drain { self.hub.settings().shutdown_timeout } else { close::GRACE };
        let outbox = &self.outbox;
        let counters = self.hub.metrics().shard(self.shard);
        let closing = async {
            if reason.drain {
                while let Ok(frame) = outbox.try_recv() {
                    write_batch(socket, outbox, frame, counters).await?;
                }
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
        let stream = Transport::Plain(crate::transport::MovableTcp::new(client));
        let role = tokio_tungstenite::tungstenite::protocol::Role::Server;
        let socket = WebSocketStream::from_raw_socket(stream, role, None).await;
        let ((_sender, outbox), (_close, closer)) = (flume::bounded(1), oneshot::channel());
        let session =
            Session { conn: 1, user: "u".into(), shard: 0, hub, outbox, closer, auth: None };
        let admission_slot: Option<Box<u64>> = None;
        let task = session.run(socket, admission_slot);
        assert!(
            std::mem::size_of_val(&task) <= 1_664,
            "the session task grew to {} bytes",
            std::mem::size_of_val(&task)
        );
    }
}
