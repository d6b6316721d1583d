//! A shard's reader: the read half of every plain-TCP connection of the shard, in one task, with no
//! task per connection.
//!
//! Owns: each such connection's read state (a partial frame, tungstenite's state while a fragmented
//! message or a close is under way), its heartbeat and token clock, its close handshake, and its
//! admission slot; one read buffer shared by all of them. The connection's socket lives in its lane,
//! which the shard writes; the reader reads it when it is readable, and writes only the
//! connection's own frames (replies, pings, pongs, the close) and what the kernel left queued.
//! May touch: the lanes of its connections, its shard's command inbox. Must not: touch the cache
//! (requests go to the shard as `Command`s, and a connection that ends is unregistered).
//!
//! Readiness comes from an edge-triggered poll (mio) of its own, itself registered with the shard's
//! runtime, so a socket costs no registration state in userspace and no waker. It runs on its
//! shard's thread, so the lane's mutex is never contended. Timers are one tick for all connections
//! ([`tick_period`]), not one per connection. TLS connections keep a session task each (`session`): their bytes differ per
//! connection, and rustls needs its own state anyway.

mod conn;
mod wire;

use std::collections::HashMap;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use mio::{Events, Poll, Registry, Token};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::runtime::Handle;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig, WebSocketContext};

use crate::directory::ShardId;
use crate::hub::Hub;
use crate::lane::{Lane, ReadyQueue};
use crate::mailbox::{Command, ConnId};
use crate::peer::Ended;
use crate::peer::PeerAuth;
use crate::protocol::UserId;
use conn::Conn;

/// The shared read buffer's size: one read takes at most this much from a socket.
const READ_BUFFER: usize = 64 * 1024;
/// Most socket events taken from the poll at once.
const EVENTS: usize = 1024;

/// An upgraded plain-TCP connection handed to its shard's reader.
pub struct Adoption {
    pub conn: ConnId,
    pub user: UserId,
    /// The lane its shard writes; the socket goes into it here, on the shard's thread.
    pub lane: Arc<Lane>,
    /// The TCP socket, detached from the HTTP runtime.
    pub socket: std::net::TcpStream,
    /// Bytes the client sent right after its upgrade request.
    pub read_ahead: Vec<u8>,
    pub auth: Option<Box<PeerAuth>>,
    /// The connection's admission slot, dropped when the connection ends.
    pub held: Option<Box<dyn Send>>,
}

/// Where connections are handed to one shard's reader.
#[derive(Debug, Clone)]
pub struct Adopter(tokio::sync::mpsc::UnboundedSender<Adoption>);

impl Adopter {
    /// Hands the connection over; it comes back when the reader has stopped.
    pub fn adopt(&self, adoption: Adoption) -> Result<(), Box<Adoption>> {
        self.0.send(adoption).map_err(|refused| Box::new(refused.0))
    }
}

/// Starts shard `shard`'s reader on its runtime.
pub fn start(
    shard: ShardId,
    hub: Hub,
    runtime: &Handle,
    config: WebSocketConfig,
) -> io::Result<Adopter> {
    let (adopter, adoptions) = tokio::sync::mpsc::unbounded_channel();
    let (reader, poll) = Reader::new(shard, hub, config)?;
    drop(runtime.spawn(reader.run(poll, adoptions)));
    Ok(Adopter(adopter))
}

/// How often the heartbeats and close deadlines are checked: an eighth of the shortest of them,
/// between 5 ms and 250 ms (a check is one comparison per connection with nothing due).
fn tick_period(ping_interval: Duration, idle_timeout: Duration) -> Duration {
    (ping_interval.min(idle_timeout) / 8)
        .clamp(Duration::from_millis(5), Duration::from_millis(250))
}

struct Reader {
    conns: HashMap<ConnId, Box<Conn>>,
    /// Where the sockets are registered (the poll itself is in `run`).
    registry: Registry,
    /// The connections to poll this turn.
    woken: Vec<ConnId>,
    shared: Shared,
}

impl Reader {
    fn new(shard: ShardId, hub: Hub, config: WebSocketConfig) -> io::Result<(Self, Poll)> {
        let poll = Poll::new()?;
        let registry = poll.registry().try_clone()?;
        let shared = Shared {
            hub,
            shard,
            buffer: vec![0; READ_BUFFER].into_boxed_slice(),
            scratch: WebSocketContext::new(Role::Server, Some(config)),
            config,
            commands: Vec::new(),
            ready: Arc::default(),
            conn: 0,
            now: Instant::now(),
        };
        let reader = Self { conns: HashMap::new(), registry, woken: Vec::new(), shared };
        Ok((reader, poll))
    }

    async fn run(mut self, poll: Poll, mut adoptions: UnboundedReceiver<Adoption>) {
        // SAFETY: the fd is the poll's own epoll fd, which `mio::Poll` owns and keeps open, the same
        // one, for as long as it lives; the `AsyncFd` owns the poll, so it outlives its registration.
        let registered = unsafe { AsyncFd::register_with_interest(poll, Interest::READABLE) };
        let mut poll = match registered {
            Ok(poll) => poll,
            Err(err) => return tracing::error!(%err, "the shard's reader cannot poll its sockets"),
        };
        let mut events = Events::with_capacity(EVENTS);
        let settings = self.shared.hub.settings();
        let period = tick_period(settings.ping_interval, settings.idle_timeout);
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let ready = Arc::clone(&self.shared.ready);
        let mut adopting = true;
        loop {
            tokio::select! {
                biased;
                polled = poll.readable_mut() => {
                    let Ok(mut guard) = polled else { return };
                    let polled = guard.get_inner_mut().poll(&mut events, Some(Duration::ZERO));
                    if polled.is_err() || events.is_empty() {
                        guard.clear_ready();
                    }
                    self.woken.extend(events.iter().map(|event| event.token().0 as ConnId));
                    self.poll_woken().await;
                }
                () = ready.notify.notified() => {
                    ready.swap(&mut self.woken);
                    self.poll_woken().await;
                }
                adoption = adoptions.recv(), if adopting => match adoption {
                    Some(adoption) => self.adopt(adoption).await,
                    None => adopting = false,
                },
                _ = tick.tick() => self.on_tick().await,
            }
        }
    }

    async fn adopt(&mut self, adoption: Adoption) {
        let Adoption { conn, user, lane, socket, read_ahead, auth, held } = adoption;
        let shared = &mut self.shared;
        let mut socket = mio::net::TcpStream::from_std(socket);
        let interest = mio::Interest::READABLE | mio::Interest::WRITABLE;
        if let Err(err) = self.registry.register(&mut socket, Token(conn as usize), interest) {
            tracing::warn!(conn, %err, "cannot register the socket with its shard");
            shared.hub.router().unregister(shared.shard, conn).await;
            return;
        }
        lane.attach(socket, Arc::clone(&shared.ready), conn);
        (shared.conn, shared.now) = (conn, Instant::now());
        let mut connection = Box::new(Conn::new(user, lane, auth, held, shared));
        let ended = connection.take_in(&read_ahead, shared);
        self.conns.insert(conn, connection);
        match ended {
            Some(ended) => self.finish(conn, ended).await,
            None => self.poll_conn(conn).await,
        }
    }

    async fn poll_woken(&mut self) {
        let mut woken = std::mem::take(&mut self.woken);
        self.shared.now = Instant::now();
        for conn in woken.drain(..) {
            self.poll_conn(conn).await;
        }
        self.woken = woken;
    }

    /// Lets one connection do what it can now: drain, read, react; then sends what it asked of
    /// the shard.
    async fn poll_conn(&mut self, id: ConnId) {
        let Some(conn) = self.conns.get_mut(&id) else { return };
        self.shared.conn = id;
        let ended = conn.poll(&mut self.shared);
        let shard_gone = !self.shared.send_commands().await;
        let ended = ended.or_else(|| shard_gone.then(|| Ended::Gone("shard stopped".into())));
        if let Some(ended) = ended {
            self.finish(id, ended).await;
        }
    }

    /// The heartbeats and close deadlines that are due.
    async fn on_tick(&mut self) {
        self.shared.now = Instant::now();
        let mut ended = Vec::new();
        for (id, conn) in &mut self.conns {
            self.shared.conn = *id;
            if let Some(why) = conn.beat(&mut self.shared) {
                ended.push((*id, why));
            }
        }
        self.shared.send_commands().await;
        for (id, why) in ended {
            self.finish(id, why).await;
        }
    }

    /// The connection has ended: its socket is closed now and the shard forgets it.
    async fn finish(&mut self, id: ConnId, ended: Ended) {
        let Some(conn) = self.conns.remove(&id) else { return };
        conn.lane.detach();
        tracing::debug!(conn = id, user = %conn.user, %ended, "connection ended");
        let (hub, shard) = (&self.shared.hub, self.shared.shard);
        hub.metrics().shard(shard).labelled.ended(ended.cause());
        hub.router().unregister(shard, id).await;
        drop(conn);
    }
}

/// What every connection's turn uses: the shard's handle, the read buffer, tungstenite's scratch
/// state, and the commands gathered for the shard.
struct Shared {
    hub: Hub,
    shard: ShardId,
    buffer: Box<[u8]>,
    /// tungstenite's state for whole frames of connections that have none of their own.
    scratch: WebSocketContext,
    config: WebSocketConfig,
    /// Commands for the shard, gathered while connections are polled, sent after.
    commands: Vec<Command>,
    /// Connections to poll besides those their sockets' events name: a close the shard asked for
    /// (through the lane), a turn cut short.
    ready: Arc<ReadyQueue>,
    /// The connection whose turn it is.
    conn: ConnId,
    /// The time of this turn.
    now: Instant,
}

impl Shared {
    /// Sends the gathered commands to the shard, in order; `false` once it has stopped.
    async fn send_commands(&mut self) -> bool {
        let mut delivered = true;
        for command in self.commands.drain(..) {
            delivered &= self.hub.router().command(self.shard, command).await;
        }
        delivered
    }
}

#[cfg(test)]
mod tests;
