//! Opening one connection: its TCP socket (from a chosen source address when the plan rotates
//! them) and its WebSocket handshake.
//!
//! Owns: nothing past the handshake; the socket goes to whoever drives it.

use std::net::SocketAddr;

use tokio::net::TcpSocket;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use super::Socket;
use crate::plan::Plan;

pub(crate) async fn connect(plan: &Plan, conn: usize) -> Result<Socket, String> {
    connect_to(plan.url_of(conn), plan.source_of(conn)).await
}

/// Opens a WebSocket to `url`, from the `source` address when given.
pub(super) async fn connect_to(
    url: String,
    source: Option<std::net::IpAddr>,
) -> Result<Socket, String> {
    let request = url.into_client_request().map_err(|e| e.to_string())?;
    let host =
        request.uri().host().ok_or("the URL has no host")?.trim_matches(['[', ']']).to_owned();
    let port = request.uri().port_u16().unwrap_or(80);
    let addr: SocketAddr = tokio::net::lookup_host((host.as_str(), port))
        .await
        .map_err(|e| format!("resolve {host}: {e}"))?
        .next()
        .ok_or_else(|| format!("{host} has no address"))?;
    let socket = if addr.is_ipv4() { TcpSocket::new_v4() } else { TcpSocket::new_v6() };
    let socket = socket.map_err(|e| format!("socket: {e}"))?;
    if let Some(source) = source {
        defer_port_choice(&socket);
        socket.bind(SocketAddr::new(source, 0)).map_err(|e| format!("bind {source}: {e}"))?;
    }
    let stream = socket.connect(addr).await.map_err(|e| format!("connect {addr}: {e}"))?;
    let _ = stream.set_nodelay(true);
    let config = WebSocketConfig::default().read_buffer_size(512).write_buffer_size(0);
    let (socket, _) = tokio_tungstenite::client_async_with_config(request, stream, Some(config))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    Ok(socket)
}

/// Sets `IP_BIND_ADDRESS_NO_PORT`, so binding a source address leaves the port to `connect`, which
/// picks it per destination. Without it every bind searches the one ephemeral range for a port no
/// other socket on that address holds, which gets slow with thousands of connections.
fn defer_port_choice(socket: &TcpSocket) {
    use std::os::fd::AsRawFd;
    let on: libc::c_int = 1;
    // SAFETY: a valid socket descriptor and a correctly sized int option value.
    let result = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if result != 0 {
        eprintln!("loadgen: IP_BIND_ADDRESS_NO_PORT: {}", std::io::Error::last_os_error());
    }
}
