//! The WebSocket wire as the shard's reader parses it: frames split anyhow across reads, many in
//! one read, fragmented messages with a control frame inside, bytes right behind the upgrade
//! request, and the frames it must refuse. Raw bytes on a real socket, masked as a client's are.

use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::common::{start_server, start_server_with, Client, TestServer, WAIT};

/// A client data frame on the wire: masked, as RFC 6455 requires.
fn masked(opcode: OpCode, payload: &[u8], is_final: bool) -> Vec<u8> {
    masked_frame(Frame::message(payload.to_vec(), opcode, is_final))
}

fn masked_frame(mut frame: Frame) -> Vec<u8> {
    frame.header_mut().mask = Some([0x37, 0xfa, 0x21, 0x3d]);
    let mut wire = Vec::new();
    frame.format(&mut wire).unwrap();
    wire
}

fn text(payload: &str) -> Vec<u8> {
    masked(OpCode::Data(Data::Text), payload.as_bytes(), true)
}

fn chat(id: &str, content: &str) -> String {
    json!({"type": "chat", "room": "r", "id": id, "data": {"content": content}}).to_string()
}

/// The raw socket under a test client.
fn raw(client: &mut Client) -> &mut TcpStream {
    match client.ws.get_mut() {
        MaybeTlsStream::Plain(socket) => socket,
        _ => panic!("a plain-TCP test client"),
    }
}

async fn write_raw(client: &mut Client, bytes: &[u8]) {
    let socket = raw(client);
    socket.write_all(bytes).await.unwrap();
    socket.flush().await.unwrap();
}

/// The acks of `ids`, in order, with the chats between them skipped.
async fn acks(client: &mut Client, ids: &[&str]) {
    for id in ids {
        let ack =
            client.recv_where(|frame| frame["type"] == "ack" || frame["type"] == "error").await;
        assert_eq!(ack["type"], "ack", "{ack}");
        assert_eq!(ack["id"], *id, "in order");
    }
}

async fn member(server: &TestServer, user: &str) -> Client {
    server.member(user, "r").await
}

#[tokio::test]
async fn frames_split_anyhow_or_many_in_one_read_are_each_handled_once_in_order() {
    let server = start_server_with(|config| config.rate_limit = 0.0).await;
    let mut alice = member(&server, "alice").await;
    let many: Vec<u8> = (0..20).flat_map(|i| text(&chat(&format!("m{i}"), "x"))).collect();
    write_raw(&mut alice, &many).await;
    let ids: Vec<String> = (0..20).map(|i| format!("m{i}")).collect();
    acks(&mut alice, &ids.iter().map(String::as_str).collect::<Vec<_>>()).await;
    let split = text(&chat("split", "one byte at a time"));
    for byte in &split {
        write_raw(&mut alice, std::slice::from_ref(byte)).await;
    }
    acks(&mut alice, &["split"]).await;
}

#[tokio::test]
async fn a_fragmented_message_with_a_ping_inside_is_one_message_whatever_others_send_meanwhile() {
    // One shard: both connections are read by the same reader.
    let server = start_server_with(|config| config.shards = Some(1)).await;
    let mut alice = member(&server, "alice").await;
    let mut bob = member(&server, "bob").await;
    let message = chat("frag", "in three pieces");
    let (a, rest) = message.as_bytes().split_at(10);
    let (b, c) = rest.split_at(10);
    let mut wire = masked(OpCode::Data(Data::Text), a, false);
    wire.extend(masked_frame(Frame::ping(b"p".to_vec())));
    wire.extend(masked(OpCode::Data(Data::Continue), b, false));
    write_raw(&mut alice, &wire).await;
    // The rest arrives in a later read: the reader holds the message in the meantime.
    loop {
        let next = tokio::time::timeout(WAIT, alice.ws.next()).await.unwrap().unwrap().unwrap();
        match next {
            Message::Pong(payload) => break assert_eq!(&payload[..], b"p"),
            Message::Text(text) => assert!(!text.contains("\"chat\""), "not whole yet: {text}"),
            other => panic!("unexpected {other:?}"),
        }
    }
    // Another connection's whole messages in the meantime are its own.
    write_raw(&mut bob, &text(&chat("bob", "whole"))).await;
    acks(&mut bob, &["bob"]).await;
    write_raw(&mut alice, &masked(OpCode::Data(Data::Continue), c, true)).await;
    let echo = alice.recv_where(|frame| frame["type"] == "chat" && frame["id"] == "frag").await;
    assert_eq!(
        (echo["id"].clone(), echo["data"]["content"].clone()),
        (json!("frag"), json!("in three pieces"))
    );
    acks(&mut alice, &["frag"]).await;
    // And the connection goes on reading whole messages afterwards.
    write_raw(&mut alice, &text(&chat("after", "x"))).await;
    acks(&mut alice, &["after"]).await;
}

/// Closes with `code` after `wire`, and a member of the same room hears the user leave.
async fn refused_with(wire: Vec<u8>, code: u16) {
    let server = start_server().await;
    let mut watcher = member(&server, "watcher").await;
    let mut bad = member(&server, "bad").await;
    watcher.recv_presence_change("bad", "join").await;
    write_raw(&mut bad, &wire).await;
    let close = bad.closed().await.expect("a close frame");
    assert_eq!(close.code, CloseCode::from(code));
    watcher.recv_presence_change("bad", "leave").await;
    server.wait_metric("wsbroker_connections_open", 1).await;
}

#[tokio::test]
async fn a_frame_announced_over_the_limit_is_refused_1009_before_its_payload_arrives() {
    // Only the header of a 100 MB frame: the reader must not wait to buffer it.
    let header = masked(OpCode::Data(Data::Text), &[], true);
    let mut wire = vec![header[0], 0x80 | 127];
    wire.extend(100_000_000u64.to_be_bytes());
    wire.extend([1, 2, 3, 4]);
    refused_with(wire, 1009).await;
}

#[tokio::test]
async fn a_reserved_opcode_is_refused_1002_and_bad_utf8_1007() {
    refused_with(masked(OpCode::Data(Data::Reserved(3)), b"?", true), 1002).await;
    refused_with(masked(OpCode::Data(Data::Text), &[0xff, 0xfe, 0x41], true), 1007).await;
    refused_with(masked(OpCode::Data(Data::Continue), b"nothing to continue", true), 1002).await;
}

#[tokio::test]
async fn bytes_right_behind_the_upgrade_request_are_read() {
    let server = start_server().await;
    let mut socket = TcpStream::connect(server.addr).await.unwrap();
    let request = format!(
        "GET /ws?user=eager&room=r HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        server.addr
    );
    let mut wire = request.into_bytes();
    wire.extend(text(&chat("eager", "sent with the request")));
    socket.write_all(&wire).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0];
        tokio::time::timeout(WAIT, socket.read_exact(&mut byte)).await.unwrap().unwrap();
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101"), "{}", String::from_utf8_lossy(&head));
    let ws =
        WebSocketStream::from_raw_socket(MaybeTlsStream::Plain(socket), Role::Client, None).await;
    let mut client = Client { ws };
    let ack: Value = client.recv_type("ack").await;
    assert_eq!(ack["id"], "eager");
}
