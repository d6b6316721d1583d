//! Protection against abusive clients: foreign origins, slow handshakes.

use std::time::Duration;

use hyper::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::{start_server_with, WAIT};

#[tokio::test]
async fn an_upgrade_from_a_foreign_origin_is_refused() {
    let server = start_server_with(|c| c.allowed_origins = vec!["https://chat.example.com".into()]).await;
    let origin = |o: &str| [("origin", o.to_string())];
    let refused = server.try_connect_with("/ws?user=victim&room=r", &origin("https://evil.example")).await;
    assert_eq!(refused.err(), Some(StatusCode::FORBIDDEN));
    assert_eq!(server.metric("wsbroker_connections_opened_total").await, 0, "nothing reached the cache");
    assert!(server.try_connect_with("/ws?user=a", &origin("https://chat.example.com")).await.is_ok());
    assert!(server.try_connect_with("/ws?user=b", &[]).await.is_ok(), "no Origin: not a browser");
    assert_eq!(server.metric("wsbroker_connections_opened_total").await, 2);
}

#[tokio::test]
async fn a_client_that_never_finishes_its_headers_is_disconnected() {
    let timeout = Duration::from_millis(300);
    let server = start_server_with(|c| c.handshake_timeout = timeout).await;
    let mut slowloris = TcpStream::connect(server.addr).await.unwrap();
    slowloris.write_all(b"GET /ws HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    let started = tokio::time::Instant::now();
    let mut rest = Vec::new();
    // Ends (cleanly or by reset) only when the server hangs up.
    let _ = tokio::time::timeout(WAIT, slowloris.read_to_end(&mut rest)).await.expect("the server hung up");
    assert!(started.elapsed() >= timeout - Duration::from_millis(50), "not before the timeout");
    assert!(server.try_connect("/ws?user=after", None).await.is_ok(), "others still get in");
}
