//! The client's task: one connection at a time, the rooms with where each stands, the outbox.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio::time::{interval, sleep, timeout, Instant};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{connect_async, MaybeTlsStream, WebSocketStream};

use crate::{Command, Event, Options, FINAL_CODES};

type Socket = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

/// A chat not acked yet, in the order it was sent.
struct Chat {
    order: u64,
    room: String,
    data: Value,
}

struct State {
    options: Options,
    /// Each joined room and the last (seq, epoch) delivered from it.
    rooms: BTreeMap<String, Option<(u64, String)>>,
    outbox: HashMap<String, Chat>,
    next_order: u64,
    /// Chats refused for a transient reason, to send again at the given time.
    retry: Vec<(Instant, String)>,
    events: mpsc::UnboundedSender<Event>,
}

/// The connection broke while writing to it.
#[derive(Debug)]
struct Gone;

/// Why a connection ended.
enum Ended {
    /// The handle was dropped: stop.
    Closed,
    /// Dropped, refused or presumed dead: connect again.
    Dropped,
}

pub(crate) async fn run(
    options: Options,
    mut commands: mpsc::UnboundedReceiver<Command>,
    events: mpsc::UnboundedSender<Event>,
) {
    let mut state = State {
        options,
        rooms: BTreeMap::new(),
        outbox: HashMap::new(),
        next_order: 0,
        retry: Vec::new(),
        events,
    };
    let mut attempt = 0;
    loop {
        let connected = Instant::now();
        if let Ended::Closed = state.connection(&mut commands).await {
            return;
        }
        // A connection that lived a while starts the backoff over.
        attempt = if connected.elapsed() > state.options.max_backoff { 1 } else { attempt + 1 };
        let _ = state.events.send(Event::Reconnecting { attempt });
        sleep(state.backoff(attempt)).await;
    }
}

impl State {
    fn backoff(&self, attempt: u32) -> Duration {
        let step = self.options.backoff.saturating_mul(1 << attempt.min(16).saturating_sub(1));
        let step = step.min(self.options.max_backoff);
        let jitter = f64::from(uuid::Uuid::new_v4().as_fields().0) / f64::from(u32::MAX);
        step.mul_f64(0.5 + jitter / 2.0)
    }

    fn url(&self) -> String {
        let (name, value) = match &self.options.token {
            Some(token) => ("token", token.as_str()),
            None => ("user", self.options.user.as_str()),
        };
        let separator = if self.options.url.contains('?') { '&' } else { '?' };
        format!("{}{separator}{name}={value}", self.options.url)
    }

    /// One connection, from the upgrade to its end.
    async fn connection(&mut self, commands: &mut mpsc::UnboundedReceiver<Command>) -> Ended {
        let patience = self.options.answer_timeout;
        let Ok(Ok((mut socket, _))) = timeout(patience, connect_async(self.url())).await else {
            return Ended::Dropped;
        };
        let mut rejoining = HashSet::new();
        for room in self.rooms.keys().cloned().collect::<Vec<_>>() {
            let id = format!("rejoin:{room}");
            if send(&mut socket, self.join_frame(&room, &id)).await.is_err() {
                return Ended::Dropped;
            }
            rejoining.insert(id);
        }
        let mut live = false;
        let mut heard = Instant::now();
        let mut owed_since: Option<Instant> = (!rejoining.is_empty()).then(Instant::now);
        let mut ticks = interval(patience / 4);
        loop {
            if !live && rejoining.is_empty() {
                live = true;
                let _ = self.events.send(Event::Live);
                if self.resend_all(&mut socket).await.is_err() {
                    return Ended::Dropped;
                }
                owed_since = (!self.outbox.is_empty()).then(Instant::now);
            }
            tokio::select! {
                frame = socket.next() => {
                    let Some(Ok(Message::Text(text))) = frame else {
                        match frame {
                            Some(Ok(_)) => continue,
                            _ => return Ended::Dropped,
                        }
                    };
                    heard = Instant::now();
                    let Ok(frame) = serde_json::from_str::<Value>(&text) else { continue };
                    if self.on_frame(&mut socket, frame, &mut rejoining).await.is_err() {
                        return Ended::Dropped;
                    }
                    let owed = !self.outbox.is_empty() || !rejoining.is_empty();
                    owed_since = owed.then_some(heard);
                }
                command = commands.recv() => {
                    let Some(command) = command else {
                        let _ = socket.close(None).await;
                        return Ended::Closed;
                    };
                    if self.on_command(&mut socket, command, live, &mut rejoining).await.is_err() {
                        return Ended::Dropped;
                    }
                    owed_since = owed_since.or(Some(Instant::now()));
                }
                _ = ticks.tick() => {
                    if live && self.resend_due(&mut socket).await.is_err() {
                        return Ended::Dropped;
                    }
                    // Something is owed and nothing was heard for too long: the broker is gone.
                    if owed_since.is_some_and(|since| since.max(heard).elapsed() > patience) {
                        return Ended::Dropped;
                    }
                    if owed_since.is_none() && heard.elapsed() > patience / 2 {
                        if send(&mut socket, json!({"type": "ping", "id": "ping"})).await.is_err() {
                            return Ended::Dropped;
                        }
                        owed_since = Some(Instant::now());
                    }
                }
            }
        }
    }

    fn join_frame(&self, room: &str, id: &str) -> Value {
        match self.rooms.get(room).cloned().flatten() {
            Some((seq, epoch)) => json!({"type": "join", "room": room, "id": id,
                "data": {"since": {"seq": seq, "epoch": epoch}}}),
            None => json!({"type": "join", "room": room, "id": id}),
        }
    }

    async fn on_command(
        &mut self,
        socket: &mut Socket,
        command: Command,
        live: bool,
        rejoining: &mut HashSet<String>,
    ) -> Result<(), Gone> {
        match command {
            Command::Join(room) => {
                self.rooms.entry(room.clone()).or_insert(None);
                let id = format!("join:{room}");
                rejoining.insert(id.clone());
                send(socket, self.join_frame(&room, &id)).await
            }
            Command::Send { id, room, data } => {
                let chat = Chat { order: self.next_order, room, data };
                self.next_order += 1;
                let frame = chat_frame(&id, &chat);
                self.outbox.insert(id, chat);
                if live {
                    send(socket, frame).await?;
                }
                Ok(())
            }
        }
    }

    /// The chats whose retry time came.
    async fn resend_due(&mut self, socket: &mut Socket) -> Result<(), Gone> {
        let now = Instant::now();
        let (due, later) = self.retry.drain(..).partition(|(at, _)| *at <= now);
        self.retry = later;
        for (_, id) in due {
            if let Some(chat) = self.outbox.get(&id) {
                send(socket, chat_frame(&id, chat)).await?;
            }
        }
        Ok(())
    }

    /// Every chat not acked yet, in the order it was sent, with its own id.
    async fn resend_all(&mut self, socket: &mut Socket) -> Result<(), Gone> {
        self.retry.clear();
        let mut owed: Vec<(&String, &Chat)> = self.outbox.iter().collect();
        owed.sort_by_key(|(_, chat)| chat.order);
        let frames: Vec<Value> = owed.into_iter().map(|(id, chat)| chat_frame(id, chat)).collect();
        for frame in frames {
            send(socket, frame).await?;
        }
        Ok(())
    }

    async fn on_frame(
        &mut self,
        socket: &mut Socket,
        frame: Value,
        rejoining: &mut HashSet<String>,
    ) -> Result<(), Gone> {
        let id = frame["id"].as_str().unwrap_or_default().to_owned();
        match frame["type"].as_str().unwrap_or_default() {
            "ack" | "error" if rejoining.remove(&id) => self.rejoined(&id, &frame),
            "ack" | "error" if self.outbox.contains_key(&id) => self.answered(id, &frame),
            "chat" | "notification" | "message_edited" | "message_deleted" => self.deliver(frame),
            "joined" => return self.hole(socket, &frame, rejoining).await,
            _ => {}
        }
        Ok(())
    }

    /// A join's answer: `join:` for one the owner asked for (told as `Joined`), `rejoin:` for a
    /// resume after a reconnect.
    fn rejoined(&mut self, id: &str, frame: &Value) {
        let asked = id.starts_with("join:");
        let room = id.split_once(':').map_or(id, |(_, room)| room).to_owned();
        if frame["type"] == "error" {
            self.rooms.remove(&room);
            let code = frame["data"]["code"].as_str().unwrap_or_default().to_owned();
            let _ = self.events.send(Event::Refused { room, code });
        } else if frame["data"]["reason"] == "interrupted" {
            // Redis is away: the stream stands where this client left it. What follows comes live,
            // or after a hole notice (`interrupted`), which asks for this resume again.
        } else if frame["data"]["recovered"] == false {
            self.reset(room, &frame["data"]);
        } else if asked {
            let _ = self.events.send(Event::Joined { room });
        }
    }

    fn reset(&mut self, room: String, data: &Value) {
        let (seq, epoch) =
            (data["seq"].as_u64().unwrap_or(0), data["epoch"].as_str().unwrap_or(""));
        self.rooms.insert(room.clone(), Some((seq, epoch.to_owned())));
        let reason = data["reason"].as_str().unwrap_or_default().to_owned();
        let _ = self.events.send(Event::Reset { room, reason, seq, epoch: epoch.to_owned() });
    }

    /// Cluster mode: the instance missed messages of a room while this connection stayed up.
    async fn hole(
        &mut self,
        socket: &mut Socket,
        frame: &Value,
        rejoining: &mut HashSet<String>,
    ) -> Result<(), Gone> {
        let Some(room) = frame["room"].as_str().map(str::to_owned) else { return Ok(()) };
        if frame["data"]["reason"] == "interrupted" {
            let id = format!("rejoin:{room}");
            rejoining.insert(id.clone());
            return send(socket, self.join_frame(&room, &id)).await;
        }
        let mut data = frame["data"].clone();
        data["seq"] = json!(data["seq"].as_u64().unwrap_or(1).saturating_sub(1));
        self.reset(room, &data);
        Ok(())
    }

    fn answered(&mut self, id: String, frame: &Value) {
        let code = frame["data"]["code"].as_str().unwrap_or_default().to_owned();
        if frame["type"] == "error" && !FINAL_CODES.contains(&code.as_str()) {
            // A transient refusal (unavailable, rate_limited): the same chat again, a little later.
            self.retry.push((Instant::now() + self.options.backoff / 2, id));
            return;
        }
        let Some(chat) = self.outbox.remove(&id) else { return };
        let event = if frame["type"] == "error" {
            let message = frame["data"]["message"].as_str().unwrap_or_default().to_owned();
            Event::Failed { id, room: chat.room, code, message }
        } else {
            Event::Acked { id, room: chat.room, seq: frame["seq"].as_u64() }
        };
        let _ = self.events.send(event);
    }

    /// A message, once: one at or below its room's last seq (same stream) was delivered already.
    fn deliver(&mut self, frame: Value) {
        let (room, seq) = (frame["room"].as_str(), frame["seq"].as_u64());
        if let (Some(room), Some(seq)) = (room, seq) {
            let epoch = frame["epoch"].as_str().unwrap_or_default().to_owned();
            if let Some(since) = self.rooms.get_mut(room) {
                if matches!(since, Some((last, known)) if *known == epoch && seq <= *last) {
                    return;
                }
                *since = Some((seq, epoch));
            }
        }
        let _ = self.events.send(Event::Message(frame));
    }
}

fn chat_frame(id: &str, chat: &Chat) -> Value {
    json!({"type": "chat", "room": chat.room, "id": id, "data": chat.data})
}

async fn send(socket: &mut Socket, frame: Value) -> Result<(), Gone> {
    socket.send(Message::text(frame.to_string())).await.map_err(|_| Gone)
}
