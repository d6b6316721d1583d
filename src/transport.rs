//! The byte stream under HTTP and WebSocket: plain TCP, or TLS over TCP (`--tls-cert`/`--tls-key`).
//!
//! Owns: the TLS configuration and the stream type that hyper, the upgrade and the sessions share.
//! Must not: know HTTP or WebSocket; rustls does the TLS, this module only loads its keys and moves
//! sockets between runtimes.
//!
//! A connection is accepted (and its TLS handshake done) on the HTTP runtime, then its WebSocket
//! session runs on its shard's thread. A socket is registered with one runtime's reactor, so moving
//! it means taking the TCP socket out ([`Transport::detach`]) and registering it on the new thread
//! ([`Transport::attach`]); the TLS session around it stays as it is.

use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// The server's TLS acceptor for a certificate chain and key in PEM files.
pub fn tls_acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, String> {
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|err| format!("--tls-cert {}: {err}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!("--tls-cert {}: no certificate in the file", cert.display()));
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|err| format!("--tls-key {}: {err}", key.display()))?;
    let mut config = ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|err| format!("--tls-cert/--tls-key: {err}"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// A TCP socket that can leave one runtime's reactor and join another's.
#[derive(Debug)]
pub struct MovableTcp(Option<TcpStream>);

impl MovableTcp {
    pub fn new(stream: TcpStream) -> Self {
        Self(Some(stream))
    }

    fn socket(&mut self) -> io::Result<&mut TcpStream> {
        self.0.as_mut().ok_or_else(|| {
            io::Error::new(io::ErrorKind::NotConnected, "the socket is moving between threads")
        })
    }

    fn detach(&mut self) -> io::Result<std::net::TcpStream> {
        self.0
            .take()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotConnected, "already detached"))?
            .into_std()
    }

    /// Must run on the runtime that will drive the socket.
    fn attach(&mut self, socket: std::net::TcpStream) -> io::Result<()> {
        self.0 = Some(TcpStream::from_std(socket)?);
        Ok(())
    }
}

/// What HTTP and WebSocket run over: plain TCP or TLS. (After the upgrade a plain-TCP socket on
/// the fast path leaves it for the lane its shard writes.)
#[derive(Debug)]
pub enum Transport {
    Plain(MovableTcp),
    Tls(Box<TlsStream<MovableTcp>>),
}

impl Transport {
    fn tcp(&mut self) -> &mut MovableTcp {
        match self {
            Self::Plain(tcp) => tcp,
            Self::Tls(tls) => tls.get_mut().0,
        }
    }

    /// Takes the TCP socket out of the current runtime's reactor, leaving the stream unusable until
    /// [`Transport::attach`].
    pub fn detach(&mut self) -> io::Result<std::net::TcpStream> {
        self.tcp().detach()
    }

    /// Puts a detached socket back, registered with the runtime this runs on.
    pub fn attach(&mut self, socket: std::net::TcpStream) -> io::Result<()> {
        self.tcp().attach(socket)
    }
}

impl AsyncRead for MovableTcp {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(self.socket()?).poll_read(cx, buf)
    }
}

impl AsyncWrite for MovableTcp {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(self.socket()?).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(self.socket()?).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(self.socket()?).poll_shutdown(cx)
    }
}

impl AsyncRead for Transport {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(tcp) => Pin::new(tcp).poll_read(cx, buf),
            Self::Tls(tls) => Pin::new(tls.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Transport {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(tcp) => Pin::new(tcp).poll_write(cx, buf),
            Self::Tls(tls) => Pin::new(tls.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(tcp) => Pin::new(tcp).poll_flush(cx),
            Self::Tls(tls) => Pin::new(tls.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(tcp) => Pin::new(tcp).poll_shutdown(cx),
            Self::Tls(tls) => Pin::new(tls.as_mut()).poll_shutdown(cx),
        }
    }
}
