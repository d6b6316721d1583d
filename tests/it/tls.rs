//! Native TLS: with `--tls-cert`/`--tls-key` the one port speaks wss:// and https://, and nothing
//! else. The certificate is self-signed, generated here with rcgen.

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Empty};
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::rustls::{ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::common::{start_server_with, TempDir, TestServer, WAIT};

/// A self-signed certificate for `localhost`, written to PEM files, and a client that trusts it.
struct Certificate {
    cert_file: PathBuf,
    key_file: PathBuf,
    connector: TlsConnector,
    /// Where the PEM files are; removed with the certificate.
    _dir: TempDir,
}

impl Certificate {
    fn generate(name: &str) -> Self {
        let generated = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let dir = TempDir::new(&format!("tls-{name}"));
        let (cert_file, key_file) = (dir.0.join("cert.pem"), dir.0.join("key.pem"));
        std::fs::write(&cert_file, generated.cert.pem()).unwrap();
        std::fs::write(&key_file, generated.signing_key.serialize_pem()).unwrap();
        let mut roots = RootCertStore::empty();
        roots.add(generated.cert.der().clone()).unwrap();
        let config = ClientConfig::builder().with_root_certificates(roots).with_no_client_auth();
        let connector = TlsConnector::from(Arc::new(config));
        Self { cert_file, key_file, connector, _dir: dir }
    }

    async fn connect(&self, server: &TestServer) -> TlsStream<TcpStream> {
        let tcp = TcpStream::connect(server.addr).await.unwrap();
        let name = ServerName::try_from("localhost").unwrap();
        tokio::time::timeout(WAIT, self.connector.connect(name, tcp))
            .await
            .expect("TLS handshake in time")
            .unwrap()
    }

    async fn websocket(
        &self,
        server: &TestServer,
        path: &str,
    ) -> WebSocketStream<TlsStream<TcpStream>> {
        let url = format!("wss://localhost:{}{path}", server.addr.port());
        let (ws, _) = tokio_tungstenite::client_async(url, self.connect(server).await)
            .await
            .expect("wss upgrade");
        ws
    }
}

async fn tls_server(certificate: &Certificate) -> TestServer {
    start_server_with(|c| {
        c.tls_cert = Some(certificate.cert_file.clone());
        c.tls_key = Some(certificate.key_file.clone());
    })
    .await
}

async fn next_json(ws: &mut WebSocketStream<TlsStream<TcpStream>>, kind: &str) -> Value {
    loop {
        let message =
            tokio::time::timeout(WAIT, ws.next()).await.expect("a frame in time").unwrap().unwrap();
        if let Message::Text(text) = message {
            let value: Value = serde_json::from_str(&text).unwrap();
            if value["type"] == kind {
                return value;
            }
        }
    }
}

#[tokio::test]
async fn wss_clients_chat_through_a_tls_listener() {
    let certificate = Certificate::generate("chat");
    let server = tls_server(&certificate).await;
    let mut alice = certificate.websocket(&server, "/ws?user=alice&room=lobby").await;
    let mut bob = certificate.websocket(&server, "/ws?user=bob&room=lobby").await;
    let chat = json!({"type": "chat", "room": "lobby", "data": {"content": "over tls"}});
    alice.send(Message::text(chat.to_string())).await.unwrap();
    let got = next_json(&mut bob, "chat").await;
    assert_eq!(
        (got["from"].as_str(), got["data"]["content"].as_str()),
        (Some("alice"), Some("over tls"))
    );
    assert_eq!(
        next_json(&mut alice, "chat").await["data"]["content"],
        "over tls",
        "the sender is a member too"
    );
}

#[tokio::test]
async fn https_serves_the_api_and_plain_http_is_refused() {
    let certificate = Certificate::generate("https");
    let server = tls_server(&certificate).await;
    let tls = certificate.connect(&server).await;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(tls)).await.unwrap();
    tokio::spawn(connection);
    let request =
        Request::get("/healthz").header("host", "localhost").body(Empty::<Bytes>::new()).unwrap();
    let response = tokio::time::timeout(WAIT, sender.send_request(request)).await.unwrap().unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(serde_json::from_slice::<Value>(&body).unwrap(), json!({"status": "ok"}));

    let plain = TcpStream::connect(server.addr).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(plain)).await.unwrap();
    tokio::spawn(connection);
    let request =
        Request::get("/healthz").header("host", "localhost").body(Empty::<Bytes>::new()).unwrap();
    let answered =
        tokio::time::timeout(WAIT, sender.send_request(request)).await.expect("refused in time");
    assert!(answered.is_err(), "a plain HTTP request on the TLS port gets no answer: {answered:?}");
}

#[tokio::test]
async fn an_unreadable_or_unpaired_certificate_is_a_configuration_error() {
    let certificate = Certificate::generate("config");
    let mut config = wsbroker::Config::with_listen("127.0.0.1:0".parse().unwrap());
    config.tls_cert = Some(certificate.cert_file.clone());
    let unpaired = wsbroker::Server::bind(config.clone()).await.expect_err("no key");
    assert!(unpaired.is_config(), "{unpaired}");
    config.tls_key = Some(certificate.cert_file.clone());
    let not_a_key = wsbroker::Server::bind(config).await.expect_err("a certificate is not a key");
    assert!(not_a_key.to_string().contains("--tls-key"), "{not_a_key}");
}
