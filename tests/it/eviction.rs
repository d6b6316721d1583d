//! Connections that cannot keep up, or went silent, are evicted without slowing anyone else.

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

use crate::common::start_server_with;

/// The most messages the fast client sends while waiting for the slow one to be evicted.
const MAX_MESSAGES: usize = 20_000;

#[tokio::test]
async fn a_client_that_stops_reading_is_closed_1008_and_the_others_go_on() {
    let server = start_server_with(|c| c.rate_limit = 0.0).await;
    let mut slow = server.connect("/ws?user=slow&room=r").await;
    let mut fast = server.member("fast", "r").await;
    let content = "x".repeat(4000);
    let mut evicted_after = None;
    for sent in 1..=MAX_MESSAGES {
        fast.send(json!({"type": "chat", "room": "r", "data": {"content": content}})).await;
        let frame =
            fast.recv_where(|f| f["type"] == "chat" || f["data"]["status"] == "leave").await;
        if frame["type"] == "presence" {
            assert_eq!(frame["data"]["user"], "slow");
            evicted_after = Some(sent);
            break;
        }
    }
    let sent = evicted_after.expect("the slow consumer was never evicted");
    assert!(sent > 256, "evicted only once its queue of 256 was full (after {sent})");
    assert_eq!(server.metric("wsbroker_slow_consumer_evictions_total").await, 1);
    let pong = fast.request(json!({"type": "ping", "id": "still-here"})).await;
    assert_eq!(pong["type"], "pong", "the fast client kept its connection");
    let close = slow.closed().await.expect("the slow client gets a close frame");
    assert_eq!((u16::from(close.code), close.reason.as_str()), (1008, "slow consumer"));
    let (_, online) = server.get("/api/v1/chat/users/slow/online").await;
    assert_eq!(online["online"], false, "evicted from the cache");
}

#[tokio::test]
async fn a_silent_connection_is_closed_4000_after_the_idle_timeout() {
    let server = start_server_with(|c| {
        // Real time: the observer must answer pings within the timeout even on a busy machine.
        c.ping_interval = Duration::from_millis(250);
        c.idle_timeout = Duration::from_secs(2);
    })
    .await;
    let mut observer = server.member("observer", "r").await;
    // The sleeper never reads, so it never answers the server's pings.
    let mut sleeper = server.connect("/ws?user=sleeper&room=r").await;
    let left = observer.recv_where(|f| f["data"]["status"] == "leave").await;
    assert_eq!(
        (left["data"]["user"].as_str(), left["room"].as_str()),
        (Some("sleeper"), Some("r"))
    );
    assert_eq!(
        server.metric("wsbroker_idle_evictions_total").await,
        1,
        "the observer answered its pings"
    );
    let close = sleeper.closed().await.expect("a close frame");
    assert_eq!(u16::from(close.code), 4000);
    let pong = observer.request(json!({"type": "ping", "id": "p"})).await;
    assert_eq!(pong["type"], "pong");
}

#[tokio::test]
async fn an_evicted_client_resumes_like_anyone_else_and_misses_nothing() {
    let dir = crate::common::TempDir::new("evicted-resume");
    let url = dir.sqlite();
    let server = start_server_with(move |c| {
        c.rate_limit = 0.0;
        c.database_url = url;
    })
    .await;
    let mut slow = server.connect("/ws?user=slow&room=r").await;
    let mut fast = server.member("fast", "r").await;
    let content = "x".repeat(4000);
    let mut last_sent = 0;
    for _ in 1..=MAX_MESSAGES {
        fast.send(json!({"type": "chat", "room": "r", "data": {"content": content}})).await;
        let frame = fast
            .recv_where(|f| {
                f["type"] == "chat"
                    || crate::common::presence_changes(f).contains(&("slow".into(), "leave".into()))
            })
            .await;
        if frame["type"] != "chat" {
            break;
        }
        last_sent = frame["seq"].as_u64().unwrap();
    }
    // What the slow client got before the close: up to some seq, then the 1008.
    let (mut got, mut epoch) = (0, String::new());
    loop {
        let message = tokio::time::timeout(crate::common::WAIT, slow.ws.next()).await.unwrap();
        match message {
            Some(Ok(Message::Text(text))) => {
                let frame: serde_json::Value = serde_json::from_str(&text).unwrap();
                if frame["type"] == "chat" {
                    (got, epoch) = (frame["seq"].as_u64().unwrap(), frame["epoch"].to_string());
                }
            }
            Some(Ok(Message::Close(close))) => {
                assert_eq!(u16::from(close.unwrap().code), 1008);
                break;
            }
            Some(Ok(_)) => {}
            other => panic!("no close frame: {other:?}"),
        }
    }
    let epoch = epoch.trim_matches('"').to_owned();
    assert!(got < last_sent, "it missed messages ({got} of {last_sent})");
    let mut back = server.connect(&format!("/ws?user=slow&since=r:{got}:{epoch}")).await;
    assert_eq!(back.recv_type("joined").await["data"]["recovered"], true);
    for seq in got + 1..=last_sent {
        assert_eq!(back.recv_type("chat").await["seq"], seq, "every missed message, in order");
    }
}
