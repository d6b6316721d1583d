//! The wire contract (docs/protocol.md): parsing client frames and encoding server frames.
//!
//! Owns: the JSON envelope `{id,type,room,from,data,timestamp}`, the message and error vocabularies,
//! name validation, and the one place a server frame is serialized. Pure functions, no I/O.
//! Must not: know about connections, shards or sockets. A frame is encoded here once and the
//! resulting [`Frame`] (a refcounted buffer) is shared by every recipient.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use tokio_tungstenite::tungstenite::Utf8Bytes;

/// A serialized server frame. Cloning it bumps a refcount; the bytes are never copied per recipient.
pub type Frame = Utf8Bytes;
/// A validated room name (see [`validate_room`]); shared by every map that names the room.
pub type Room = Arc<str>;
/// A validated user id.
pub type UserId = Arc<str>;

/// The longest room name, user id or client-supplied message id, in characters.
pub const MAX_NAME_CHARS: usize = 128;
/// The deepest nesting of objects and arrays allowed in a message's `data`.
pub const MAX_DATA_DEPTH: usize = 16;

/// The room name that, in the HTTP API, means "every connected client".
pub const GLOBAL_ROOM: &str = "_global";

/// Every `type` the envelope may carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageType {
    Chat,
    Join,
    Leave,
    Presence,
    Ack,
    Notification,
    System,
    Error,
    Ping,
    Pong,
}

impl MessageType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Chat => "chat",
            Self::Join => "join",
            Self::Leave => "leave",
            Self::Presence => "presence",
            Self::Ack => "ack",
            Self::Notification => "notification",
            Self::System => "system",
            Self::Error => "error",
            Self::Ping => "ping",
            Self::Pong => "pong",
        }
    }
}

/// The `data.code` of an error frame (and of HTTP error bodies).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    BadRequest,
    UnknownType,
    ContentTooLong,
    NotMember,
    Forbidden,
    RateLimited,
    /// A token (in a `refresh`) that does not verify.
    Unauthorized,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BadRequest => "bad_request",
            Self::UnknownType => "unknown_type",
            Self::ContentTooLong => "content_too_long",
            Self::NotMember => "not_member",
            Self::Forbidden => "forbidden",
            Self::RateLimited => "rate_limited",
            Self::Unauthorized => "unauthorized",
        }
    }
}

/// A refusal of one client frame: answered with an error frame, the connection stays open.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {message}", code.as_str())]
pub struct Rejection {
    /// The request's `id`, echoed so the client can match the error to its request.
    pub id: Option<String>,
    pub code: ErrorCode,
    pub message: String,
}

impl Rejection {
    pub fn new(id: Option<String>, code: ErrorCode, message: impl Into<String>) -> Self {
        Self { id, code, message: message.into() }
    }

    /// The error frame that answers this rejection.
    pub fn to_frame(&self) -> Frame {
        error_frame(self.id.as_deref(), self.code, &self.message)
    }
}

/// A client frame that passed validation, ready for the connection's shard.
#[derive(Debug)]
pub struct ClientRequest {
    /// The client's `id`, echoed in the ack or error.
    pub id: Option<String>,
    pub action: Action,
}

/// What a client asked for.
#[derive(Debug)]
pub enum Action {
    /// Publish the already encoded `frame` to `room`, or to everyone when `room` is `None`.
    Chat {
        room: Option<Room>,
        frame: Frame,
    },
    Join(Room),
    Leave(Room),
    /// Who is in the room, and who of them is away.
    Presence(Room),
    Ping,
}

/// A parsed client frame: a request for the shard, or a token refresh, which the session verifies.
#[derive(Debug)]
pub enum ClientFrame {
    Request(ClientRequest),
    Refresh { id: Option<String>, token: String },
}

/// The fields a client frame may carry; anything else (such as a forged `from`) is ignored.
#[derive(Deserialize)]
struct IncomingEnvelope<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    room: Option<Cow<'a, str>>,
    #[serde(borrow)]
    data: Option<&'a RawValue>,
}

/// The `data` of a `refresh`.
#[derive(Deserialize)]
struct RefreshData<'a> {
    #[serde(borrow)]
    token: Cow<'a, str>,
}

/// The part of a chat `data` object that the broker checks.
#[derive(Deserialize)]
struct ChatData<'a> {
    #[serde(borrow)]
    content: Option<Cow<'a, str>>,
}

/// Limits applied while parsing client frames.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// The most Unicode scalar values `data.content` may hold.
    pub max_content_chars: usize,
}

/// Parses one client text frame sent by `user`. A chat message is encoded here, once.
pub fn parse_client_frame(
    text: &str,
    user: &str,
    limits: Limits,
) -> Result<ClientFrame, Rejection> {
    let envelope: IncomingEnvelope<'_> = serde_json::from_str(text).map_err(|err| {
        Rejection::new(None, ErrorCode::BadRequest, format!("invalid JSON: {err}"))
    })?;
    let id = envelope.id.map(Cow::into_owned);
    if id.as_ref().is_some_and(|id| id.chars().count() > MAX_NAME_CHARS) {
        return Err(Rejection::new(
            None,
            ErrorCode::BadRequest,
            "id is longer than 128 characters",
        ));
    }
    let reject = |code, message: &str| Rejection::new(id.clone(), code, message);
    let Some(kind) = envelope.kind else {
        return Err(reject(ErrorCode::BadRequest, "missing type"));
    };
    let room = match envelope.room.as_deref() {
        None | Some("") => None,
        Some(name) => Some(validate_room(name).map_err(|msg| reject(ErrorCode::BadRequest, msg))?),
    };
    let require_room =
        |room: Option<Room>| room.ok_or_else(|| reject(ErrorCode::BadRequest, "missing room"));
    let action = match kind.as_ref() {
        "chat" => {
            let data = chat_data(envelope.data, limits).map_err(|(code, msg)| reject(code, msg))?;
            let message_id = id.clone().unwrap_or_else(new_message_id);
            let frame = message_frame(MessageType::Chat, &message_id, room.as_deref(), user, data);
            Action::Chat { room, frame }
        }
        "join" => Action::Join(require_room(room)?),
        "leave" => Action::Leave(require_room(room)?),
        "presence" => Action::Presence(require_room(room)?),
        "ping" => Action::Ping,
        "refresh" => {
            let data =
                envelope.data.ok_or_else(|| reject(ErrorCode::BadRequest, "missing data"))?;
            let refresh: RefreshData<'_> = serde_json::from_str(data.get())
                .map_err(|_| reject(ErrorCode::BadRequest, "data must be {\"token\": string}"))?;
            return Ok(ClientFrame::Refresh { id, token: refresh.token.into_owned() });
        }
        other => {
            let shown: String = other.chars().take(MAX_NAME_CHARS).collect();
            return Err(reject(
                ErrorCode::UnknownType,
                &format!("unknown message type \"{shown}\""),
            ));
        }
    };
    Ok(ClientFrame::Request(ClientRequest { id, action }))
}

/// Checks a chat's `data`: an object whose `content`, when present, is a string within the limit.
pub fn chat_data(
    data: Option<&RawValue>,
    limits: Limits,
) -> Result<&RawValue, (ErrorCode, &'static str)> {
    let data = data.ok_or((ErrorCode::BadRequest, "missing data"))?;
    if !data.get().starts_with('{') {
        return Err((ErrorCode::BadRequest, "data must be an object"));
    }
    if nesting_depth(data.get()) > MAX_DATA_DEPTH {
        return Err((ErrorCode::BadRequest, "data nests objects and arrays more than 16 deep"));
    }
    let checked: ChatData<'_> = serde_json::from_str(data.get())
        .map_err(|_| (ErrorCode::BadRequest, "data.content must be a string"))?;
    let too_long = checked.content.is_some_and(|c| c.chars().count() > limits.max_content_chars);
    if too_long {
        return Err((ErrorCode::ContentTooLong, "data.content is longer than the content limit"));
    }
    Ok(data)
}

/// How deeply `json` nests objects and arrays; brackets inside strings do not count.
fn nesting_depth(json: &str) -> usize {
    let (mut depth, mut deepest, mut in_string, mut escaped) = (0usize, 0usize, false, false);
    for byte in json.bytes() {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// Validates a room name: 1 to 128 characters of `A-Z a-z 0-9 _ - . : @`, not the reserved `_global`.
pub fn validate_room(name: &str) -> Result<Room, &'static str> {
    if name == GLOBAL_ROOM {
        return Err("room name _global is reserved");
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':' | '@');
    if name.is_empty() || name.len() > MAX_NAME_CHARS || !name.chars().all(allowed) {
        return Err("room names are 1-128 characters of A-Z a-z 0-9 _ - . : @");
    }
    Ok(Arc::from(name))
}

/// Validates a user id: 1 to 128 characters, no control characters.
pub fn validate_user(name: &str) -> Result<UserId, &'static str> {
    if name.is_empty()
        || name.chars().count() > MAX_NAME_CHARS
        || name.chars().any(char::is_control)
    {
        return Err("user ids are 1-128 characters without control characters");
    }
    Ok(Arc::from(name))
}

/// The envelope of every server frame. Absent fields are left out of the JSON.
#[derive(Serialize)]
pub struct Envelope<'a, D: Serialize> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<&'a str>,
    #[serde(rename = "type", serialize_with = "serialize_type")]
    pub kind: MessageType,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub room: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<D>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<&'a str>,
}

fn serialize_type<S: serde::Serializer>(
    kind: &MessageType,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(kind.as_str())
}

/// Serializes an envelope into a shareable frame. The only place server frames are encoded.
pub fn encode<D: Serialize>(envelope: &Envelope<'_, D>) -> Frame {
    let json = serde_json::to_string(envelope)
        .expect("an envelope of strings and JSON values always serializes");
    Frame::from(json)
}

/// A published message, stamped now: `{"id","type","room","from","data","timestamp"}`.
pub fn message_frame(
    kind: MessageType,
    id: &str,
    room: Option<&str>,
    from: &str,
    data: &RawValue,
) -> Frame {
    let timestamp = now_rfc3339();
    encode(&Envelope {
        id: Some(id),
        kind,
        room,
        from: Some(from),
        data: Some(data),
        timestamp: Some(&timestamp),
    })
}

/// A frame with no data: `{"type":...,"id":...}` (acks, pongs).
pub fn reply_frame(kind: MessageType, id: Option<&str>) -> Frame {
    encode::<()>(&Envelope { id, kind, room: None, from: None, data: None, timestamp: None })
}

/// `{"type":"error","id":...,"data":{"code":...,"message":...}}`.
pub fn error_frame(id: Option<&str>, code: ErrorCode, message: &str) -> Frame {
    #[derive(Serialize)]
    struct ErrorData<'a> {
        code: &'a str,
        message: &'a str,
    }
    let data = ErrorData { code: code.as_str(), message };
    encode(&Envelope {
        id,
        kind: MessageType::Error,
        room: None,
        from: None,
        data: Some(data),
        timestamp: None,
    })
}

/// `{"type":"system","data":{"event":"token_expiring","expires_at":...}}`: refresh before then.
pub fn token_expiring_frame(expires_at: SystemTime) -> Frame {
    #[derive(Serialize)]
    struct NoticeData<'a> {
        event: &'static str,
        expires_at: &'a str,
    }
    let expires_at = humantime::format_rfc3339_seconds(expires_at).to_string();
    let data = NoticeData { event: "token_expiring", expires_at: &expires_at };
    encode(&Envelope {
        id: None,
        kind: MessageType::System,
        room: None,
        from: None,
        data: Some(data),
        timestamp: None,
    })
}

/// Whether a user came into a room or went from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PresenceStatus {
    Join,
    Leave,
}

/// `{"type":"presence","room":r,"data":{"user":u,"status":"join|leave"}}`, sent to the room.
pub fn presence_event_frame(room: &str, user: &str, status: PresenceStatus) -> Frame {
    #[derive(Serialize)]
    struct EventData<'a> {
        user: &'a str,
        status: PresenceStatus,
    }
    encode(&Envelope {
        id: None,
        kind: MessageType::Presence,
        room: Some(room),
        from: None,
        data: Some(EventData { user, status }),
        timestamp: Some(&now_rfc3339()),
    })
}

/// `{"type":"presence","room":r,"data":{"users":[...],"away":[...]}}`, the answer to a presence query.
pub fn presence_list_frame(
    id: Option<&str>,
    room: &str,
    users: &[UserId],
    away: &[UserId],
) -> Frame {
    #[derive(Serialize)]
    struct ListData<'a> {
        users: &'a [UserId],
        away: &'a [UserId],
    }
    encode(&Envelope {
        id,
        kind: MessageType::Presence,
        room: Some(room),
        from: None,
        data: Some(ListData { users, away }),
        timestamp: Some(&now_rfc3339()),
    })
}

/// A fresh message id (UUID v4).
pub fn new_message_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// The current time as RFC 3339 UTC with milliseconds, e.g. `2024-01-15T10:30:00.000Z`.
pub fn now_rfc3339() -> String {
    format_rfc3339(SystemTime::now())
}

pub fn format_rfc3339(time: SystemTime) -> String {
    humantime::format_rfc3339_millis(time).to_string()
}

#[cfg(test)]
mod tests;
