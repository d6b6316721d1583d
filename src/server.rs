//! The server: binds the port, starts the shards, accepts connections, and shuts down gracefully.
//!
//! Owns: the listener, the shard tasks' handles and the shutdown sequence. May touch: the hub (to start
//! and stop shards). Must not: handle requests itself; each accepted socket is served by hyper with
//! [`http::handle`].
//!
//! Shutdown: stop accepting, fail `/readyz`, tell every shard to take no new chat and wait until each
//! has acked every chat it took (`Delivery::Quiesce`), then tell every shard to close its connections
//! with 1001 after flushing their queues, and wait for the shards to empty, each wait at most
//! `--shutdown-timeout`.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio_rustls::TlsAcceptor;

use crate::auth::Authenticator;
use crate::broker::Seams;
use crate::cluster::redis::RedisBroker;
use crate::config::Config;
use crate::http::{self, App, ShardAccess};
use crate::hub::{Hub, Parts};
use crate::metrics::Metrics;
use crate::peer;
use crate::protocol;
use crate::reader;
use crate::router::Router;
use crate::shard::thread::{self, ShardThread};
use crate::store::ops::Write;
use crate::store::{DatabaseUrl, RoomInfo, RoomType, Store};
use crate::transport::{self, MovableTcp, Transport};

/// Why the broker could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A flag (or a combination of flags) that cannot work; exit code 2.
    #[error("bad configuration: {0}")]
    Config(String),
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: SocketAddr, source: io::Error },
    /// The database could not be opened, or its schema brought up to date.
    #[error("cannot open the database {database}: {reason}")]
    Database { database: String, reason: String },
    /// The operating system refused a thread or a runtime.
    #[error("cannot start {what}: {source}")]
    Threads { what: &'static str, source: io::Error },
}

impl StartError {
    /// Whether the flags are at fault (rather than the machine).
    pub fn is_config(&self) -> bool {
        matches!(self, Self::Config(_))
    }
}

/// The store `config` asks for, started (`None` with `--database-url none`).
fn open_store(
    config: &Config,
    router: &Router,
    metrics: &Metrics,
) -> Result<Option<Store>, StartError> {
    if config.redis_url.is_some() && matches!(config.database_url, DatabaseUrl::Sqlite(_)) {
        let why = "--redis-url needs a shared database: a SQLite file cannot be shared between \
                   instances; use --database-url postgres://... (or none)";
        return Err(StartError::Config(why.into()));
    }
    if config.database_url == DatabaseUrl::None {
        return Ok(None);
    }
    let settings = config.store_settings();
    let counters = Arc::clone(&metrics.store);
    // On a thread of its own: the PostgreSQL client runs a runtime of its own, which cannot start
    // on a thread that already drives one.
    let started = std::thread::scope(|scope| {
        let start = || Store::start(&config.database_url, &settings, router.clone(), counters);
        scope.spawn(start).join().expect("opening the store does not panic")
    });
    let store = started.map_err(|err| StartError::Database {
        database: config.database_url.describe(),
        reason: err.to_string(),
    })?;
    ensure_default_room(config, &store)?;
    Ok(Some(store))
}

/// Creates `--default-room` (public, by `system`) when it is missing; an existing room is left as
/// it is.
fn ensure_default_room(config: &Config, store: &Store) -> Result<(), StartError> {
    if config.default_room.is_empty() {
        return Ok(());
    }
    let name = protocol::validate_room(&config.default_room)
        .map_err(|why| StartError::Config(format!("--default-room: {why}")))?;
    let room = RoomInfo {
        id: name.to_string(),
        kind: RoomType::Public,
        created_at: protocol::millis(std::time::SystemTime::now()),
        created_by: "system".into(),
        metadata: None,
    };
    store.write_unawaited(Write::EnsureRoom { room, members: Vec::new() });
    Ok(())
}

/// A bound, running broker.
pub struct Server {
    listener: TcpListener,
    /// `None`: plain TCP (TLS ends at a load balancer in front).
    tls: Option<TlsAcceptor>,
    app: Arc<App>,
    shards: Vec<ShardThread>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("listener", &self.listener)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

/// The listening socket; accepted connections inherit its `send_buffer` (SO_SNDBUF) when given.
fn listen(addr: SocketAddr, send_buffer: Option<u32>) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    if let Some(bytes) = send_buffer {
        socket.set_send_buffer_size(bytes)?;
    }
    socket.bind(addr)?;
    socket.listen(1024)
}

impl Server {
    /// Binds `config.listen` and starts the shard threads. Accepting and HTTP run on the caller's
    /// runtime; each connection's session runs on its shard's thread.
    pub async fn bind(config: Config) -> Result<Self, StartError> {
        let auth = Authenticator::from_config(&config).map_err(StartError::Config)?;
        if !config.auth_enabled && !config.listen.ip().is_loopback() {
            tracing::warn!(listen = %config.listen, "authentication is off and the broker listens beyond loopback: anyone can claim any user name (?user=), so room permissions and moderation protect nothing; turn on --auth-enabled");
        }
        let tls = match (&config.tls_cert, &config.tls_key) {
            (Some(cert), Some(key)) => {
                Some(transport::tls_acceptor(cert, key).map_err(StartError::Config)?)
            }
            (None, None) => None,
            _ => return Err(StartError::Config("--tls-cert and --tls-key go together".into())),
        };
        let (router, inboxes) = Router::new(config.shard_count());
        let metrics = Metrics::new(router.shard_count());
        let store = open_store(&config, &router, &metrics)?;
        let seams = match &config.redis_url {
            Some(url) => {
                let counters = Arc::clone(&metrics.relay);
                let broker = RedisBroker::start(&config, url, router.clone(), counters);
                Seams::all_in_one(Arc::new(broker.map_err(StartError::Config)?))
            }
            None => Seams::standalone(),
        };
        let addr = config.listen;
        let listener = listen(addr, config.socket_send_buffer)
            .map_err(|source| StartError::Listen { addr, source })?;
        let hub = Hub::from_parts(Parts { settings: config, router, seams, store, metrics });
        let shards = thread::start_all(&hub, inboxes)
            .map_err(|source| StartError::Threads { what: "the shard threads", source })?;
        crate::moderation::sweep::load(&hub).await.map_err(|_| StartError::Database {
            database: hub.settings().database_url.describe(),
            reason: "could not read the moderation in force".into(),
        })?;
        if hub.store().is_some() {
            tokio::spawn(crate::moderation::sweep::run(hub.clone()));
            tokio::spawn(crate::attachments::sweep(hub.clone()));
        }
        let config = peer::websocket_config(hub.settings());
        let access = shards.iter().enumerate().map(|(id, shard)| {
            let reader = reader::start(id, hub.clone(), &shard.runtime, config)?;
            Ok(ShardAccess { runtime: shard.runtime.clone(), reader })
        });
        let access = access
            .collect::<io::Result<_>>()
            .map_err(|source| StartError::Threads { what: "the shard readers", source })?;
        let app = Arc::new(App::new(hub, auth, access));
        Ok(Self { listener, tls, app, shards })
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    pub fn hub(&self) -> &Hub {
        &self.app.hub
    }

    /// Accepts until `shutdown` completes, then closes every connection and waits for the shards.
    /// Returns `true` when every connection closed within the shutdown timeout.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> bool {
        let Self { listener, tls, app, shards } = self;
        tokio::pin!(shutdown);
        let mut backoff = Duration::from_millis(1);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, remote)) => {
                        backoff = Duration::from_millis(1);
                        tokio::spawn(serve_http(Arc::clone(&app), tls.clone(), stream, remote));
                    }
                    Err(err) => {
                        // Out of file descriptors or similar: back off instead of spinning.
                        tracing::warn!(%err, "accept failed");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(1));
                    }
                },
            }
        }
        drop(listener);
        app.start_draining();
        let open = app.hub.metrics().connections_open();
        tracing::info!(open, "shutting down: closing connections");
        let timeout = app.hub.settings().shutdown_timeout;
        // Every chat taken is acked before the connections close, so no client resends one that
        // is already stored and delivered.
        let settled = tokio::time::timeout(timeout, app.hub.quiesce()).await.is_ok();
        tracing::info!(settled, "chats in flight acked");
        app.hub.presence().begin_handover();
        app.hub.shutdown();
        let all_closed = tokio::time::timeout(timeout, async {
            for shard in shards {
                let _ = shard.stopped.await;
            }
        })
        .await
        .is_ok();
        let grace = app.hub.settings().handover;
        let handed = app.hub.presence().finish_handover(grace);
        let handed = tokio::time::timeout(grace + Duration::from_secs(5), handed).await;
        tracing::info!(handed_over = matches!(handed, Ok(Ok(()))), "presence handed over");
        if let Some(store) = app.hub.store() {
            // Chats accepted before the close are committed before the process goes.
            let flushed = store.flush(timeout).await;
            tracing::info!(flushed, "store flushed");
        }
        tracing::info!(all_closed, "shut down");
        all_closed
    }
}

/// Serves one accepted connection: its TLS handshake (when on), then HTTP, upgrades included.
async fn serve_http(
    app: Arc<App>,
    tls: Option<TlsAcceptor>,
    stream: TcpStream,
    remote: SocketAddr,
) {
    let _ = stream.set_nodelay(true);
    let handshake_timeout = app.hub.settings().handshake_timeout;
    let tcp = MovableTcp::new(stream);
    let stream = match tls {
        None => Transport::Plain(tcp),
        Some(acceptor) => match tokio::time::timeout(handshake_timeout, acceptor.accept(tcp)).await
        {
            Ok(Ok(tls)) => Transport::Tls(Box::new(tls)),
            Ok(Err(err)) => return tracing::debug!(%remote, %err, "TLS handshake failed"),
            Err(_) => return tracing::debug!(%remote, "TLS handshake timed out"),
        },
    };
    let service = service_fn(move |request| {
        let app = Arc::clone(&app);
        async move { http::handle(&app, request, remote).await }
    });
    // Headers must arrive within the handshake timeout: a slowloris client cannot hold a slot.
    let served = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(handshake_timeout)
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades()
        .await;
    if let Err(err) = served {
        tracing::debug!(%err, "http connection ended with an error");
    }
}
