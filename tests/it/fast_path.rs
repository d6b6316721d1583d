//! The fast path: the shard writes frames straight into plain-TCP sockets, and only what the kernel
//! does not take waits for the connection's session. A reader with a tiny receive window, and a
//! small send buffer on the broker's side, make the kernel take writes in part; nothing may be
//! lost, reordered or torn, in either mode.

use serde_json::{json, Value};

use crate::common::{start_server_with, Client, TestServer};

/// Messages the publisher sends while the slow reader reads nothing (below its send buffer of 256).
const MESSAGES: usize = 200;

fn content(i: usize) -> String {
    format!("{i:04}:{}", "x".repeat(3000))
}

/// A reader with a 4 KiB window in room `r`, and a publisher there that has sent `count` messages
/// (each echoed back to it, so the broker has handled them all) before the reader reads one.
async fn reader_behind(server: &TestServer, count: usize, content: fn(usize) -> String) -> Client {
    let slow = server.connect_with_small_window("/ws?user=slow&room=r", 4096).await;
    let mut publisher = server.member("publisher", "r").await;
    for i in 0..count {
        publisher.send(json!({"type": "chat", "room": "r", "data": {"content": content(i)}})).await;
        let echo = publisher.recv_type("chat").await;
        assert_eq!(echo["data"]["content"], content(i));
    }
    slow
}

async fn slow_reader_behind(server: &TestServer) -> Client {
    reader_behind(server, MESSAGES, content).await
}

async fn assert_in_order(slow: &mut Client, count: usize, content: fn(usize) -> String) {
    for i in 0..count {
        let frame: Value = slow.recv_type("chat").await;
        assert_eq!(frame["data"]["content"], content(i), "message {i}, whole and in order");
    }
}

async fn assert_every_message_in_order(slow: &mut Client) {
    assert_in_order(slow, MESSAGES, content).await;
}

#[tokio::test]
async fn a_reader_the_kernel_cannot_keep_up_with_gets_every_frame_whole_and_in_order() {
    for fast_path in [true, false] {
        let server = start_server_with(|c| {
            (c.rate_limit, c.fast_path, c.socket_send_buffer) = (0.0, fast_path, Some(4096));
        })
        .await;
        let mut slow = slow_reader_behind(&server).await;
        let partial = server.metric("wsbroker_partial_writes_total").await;
        assert_eq!(partial > 0, fast_path, "600 KB into a 4 KiB window left writes in part");
        assert_every_message_in_order(&mut slow).await;
        let pong = slow.request(json!({"type": "ping", "id": "after"})).await;
        assert_eq!(pong["type"], "pong", "the session's own frames go behind the backlog");
    }
}

#[tokio::test]
async fn a_shutdown_writes_a_lanes_backlog_before_the_1001() {
    let mut server =
        start_server_with(|c| (c.rate_limit, c.socket_send_buffer) = (0.0, Some(4096))).await;
    let mut slow = slow_reader_behind(&server).await;
    assert!(server.metric("wsbroker_partial_writes_total").await > 0);
    let stopping = tokio::spawn(async move { server.shutdown().await });
    assert_every_message_in_order(&mut slow).await;
    let close = slow.closed().await.expect("a close frame after the backlog");
    assert_eq!(u16::from(close.code), 1001);
    assert!(stopping.await.unwrap(), "the backlog went out within the shutdown timeout");
}
