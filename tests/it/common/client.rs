//! A test's WebSocket client: send, receive with a bounded wait, requests, presence helpers.

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::WAIT;

pub struct Client {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl Client {
    pub async fn send(&mut self, value: Value) {
        self.ws.send(Message::text(value.to_string())).await.expect("send");
    }

    pub async fn send_text(&mut self, text: impl Into<String>) {
        self.ws.send(Message::text(text.into())).await.expect("send");
    }

    /// The next JSON text frame, within [`WAIT`].
    pub async fn recv(&mut self) -> Value {
        loop {
            let message =
                tokio::time::timeout(WAIT, self.ws.next()).await.expect("no frame within the wait");
            match message.expect("stream ended").expect("read error") {
                Message::Text(text) => {
                    return serde_json::from_str(&text).expect("server frames are JSON")
                }
                Message::Ping(_) | Message::Pong(_) => continue,
                other => panic!("unexpected frame {other:?}"),
            }
        }
    }

    /// Skips frames until one of type `kind` arrives.
    pub async fn recv_type(&mut self, kind: &str) -> Value {
        loop {
            let frame = self.recv().await;
            if frame["type"] == kind {
                return frame;
            }
        }
    }

    /// Skips frames until one matches `wanted`.
    pub async fn recv_where(&mut self, wanted: impl Fn(&Value) -> bool) -> Value {
        loop {
            let frame = self.recv().await;
            if wanted(&frame) {
                return frame;
            }
        }
    }

    /// Sends a request carrying an `id` and waits for the reply with that id (ack, error, pong or
    /// presence list); frames in between are skipped.
    pub async fn request(&mut self, request: Value) -> Value {
        let id = request["id"].as_str().expect("requests carry an id").to_owned();
        self.send(request).await;
        let is_reply = |f: &Value| {
            ["ack", "error", "pong", "presence", "history"].iter().any(|t| f["type"] == *t)
        };
        self.recv_where(|f| f["id"] == id.as_str() && is_reply(f)).await
    }

    /// The changes of the next presence event (skipping presence query answers): one for a
    /// single event, the lists of a coalesced `batch`, as `(user, "join"|"leave"|"away"|"back")`.
    pub async fn next_presence_changes(&mut self) -> Vec<(String, String)> {
        loop {
            let frame = self.recv_type("presence").await;
            let changes = presence_changes(&frame);
            if !changes.is_empty() {
                return changes;
            }
        }
    }

    /// Skips presence events until one tells that `user` did `status` (`join`, `leave`, `away`,
    /// `back`).
    pub async fn recv_presence_change(&mut self, user: &str, status: &str) {
        let wanted = (user.to_owned(), status.to_owned());
        while !self.next_presence_changes().await.contains(&wanted) {}
    }

    pub async fn join(&mut self, room: &str) {
        let id = format!("join-{room}");
        let reply = self.request(json!({"type": "join", "room": room, "id": id})).await;
        assert_eq!(reply["type"], "ack", "join {room}: {reply}");
    }

    /// Reads until the server closes, answering the close as a real client does; returns the server's
    /// close frame (if one arrived).
    pub async fn closed(&mut self) -> Option<CloseFrame> {
        let mut close = None;
        loop {
            let message = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("not closed within the wait");
            match message {
                Some(Ok(Message::Close(frame))) => close = frame,
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return close,
            }
        }
    }
}

/// The changes a presence frame tells (none for a query answer), in the order a client applies a
/// batch: joins, aways, backs, leaves.
pub fn presence_changes(frame: &Value) -> Vec<(String, String)> {
    let data = &frame["data"];
    if let (Some(user), Some(status)) = (data["user"].as_str(), data["status"].as_str()) {
        return vec![(user.to_owned(), status.to_owned())];
    }
    let named = |list: &Value, status: &str| -> Vec<(String, String)> {
        let users = list.as_array().into_iter().flatten().filter_map(Value::as_str);
        users.map(|user| (user.to_owned(), status.to_owned())).collect()
    };
    let mut changes = named(&data["joined"], "join");
    changes.extend(named(&data["away"], "away"));
    changes.extend(named(&data["back"], "back"));
    changes.extend(named(&data["left"], "leave"));
    changes
}
