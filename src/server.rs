//! The server: binds the port, starts the shards, accepts connections, and shuts down gracefully.
//!
//! Owns: the listener, the shard tasks' handles and the shutdown sequence. May touch: the hub (to start
//! and stop shards). Must not: handle requests itself; each accepted socket is served by hyper with
//! [`http::handle`].
//!
//! Shutdown: stop accepting, fail `/readyz`, tell every shard to close its connections with 1001 after
//! flushing their queues, then wait for the shards to empty, at most `--shutdown-timeout`.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

use crate::auth::Authenticator;
use crate::cluster::redis::{self, RedisBroker};
use crate::cluster::{Broker, Standalone};
use crate::config::Config;
use crate::http::{self, App};
use crate::hub::Hub;
use crate::metrics::RelayCounters;
use crate::shard::thread::{self, ShardThread};
use crate::transport::{self, MovableTcp, Stream};

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

impl Server {
    /// Binds `config.listen` and starts the shard threads. Accepting and HTTP run on the caller's
    /// runtime; each connection's session runs on its shard's thread.
    pub async fn bind(config: Config) -> io::Result<Self> {
        let invalid = |err| io::Error::new(io::ErrorKind::InvalidInput, err);
        let auth = Authenticator::from_config(&config).map_err(invalid)?;
        let tls = match (&config.tls_cert, &config.tls_key) {
            (Some(cert), Some(key)) => Some(transport::tls_acceptor(cert, key).map_err(invalid)?),
            (None, None) => None,
            _ => return Err(invalid("--tls-cert and --tls-key go together".into())),
        };
        let relay_counters = Arc::new(RelayCounters::default());
        let (broker, relay): (Box<dyn Broker>, _) = match &config.redis_url {
            Some(url) => {
                let (broker, relay) =
                    RedisBroker::new(&config, url, Arc::clone(&relay_counters)).map_err(invalid)?;
                (Box::new(broker), Some(relay))
            }
            None => (Box::new(Standalone), None),
        };
        let listener = TcpListener::bind(config.listen).await?;
        let (hub, inboxes) = Hub::with_broker(config, broker, relay_counters);
        if let Some(relay) = relay {
            redis::start_relay(relay, &hub)?;
        }
        let shards = thread::start_all(&hub, inboxes)?;
        let runtimes = shards.iter().map(|shard| shard.runtime.clone()).collect();
        Ok(Self { listener, tls, app: Arc::new(App::new(hub, auth, runtimes)), shards })
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
        app.hub.shutdown();
        let timeout = app.hub.settings().shutdown_timeout;
        let all_closed = tokio::time::timeout(timeout, async {
            for shard in shards {
                let _ = shard.stopped.await;
            }
        })
        .await
        .is_ok();
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
        None => Stream::Plain(tcp),
        Some(acceptor) => match tokio::time::timeout(handshake_timeout, acceptor.accept(tcp)).await
        {
            Ok(Ok(tls)) => Stream::Tls(Box::new(tls)),
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
