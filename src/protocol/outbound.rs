//! Outbound: every server frame, encoded once into a shareable [`Frame`].
//!
//! Owns: the envelope `{id,type,room,from,data,timestamp}` as it is serialized, and one constructor
//! per kind of server frame. Must not: parse anything; a constructor takes validated values.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::SystemTime;

use serde::Serialize;
use serde_json::value::RawValue;

use super::{ErrorCode, Frame, MessageType};

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
    /// When a stored message's content was last edited (history only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub edited_at: Option<&'a str>,
    /// A stored message's reactions, as the caller sees them (history only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reactions: Option<&'a RawValue>,
    /// A stored message's replies: how many, the last one's time (history only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thread: Option<&'a RawValue>,
    /// The message a stored reply answers, as it quotes it (history only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quote: Option<&'a RawValue>,
    /// A room message's place in its room's stream (`None` for everything else).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    /// The name of the room's stream that `seq` counts in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub epoch: Option<&'a str>,
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
    message_frame_at(kind, id, room, from, data, SystemTime::now())
}

/// A published message stamped `at`: live, and read back from the store, alike.
pub fn message_frame_at(
    kind: MessageType,
    id: &str,
    room: Option<&str>,
    from: &str,
    data: &RawValue,
    at: SystemTime,
) -> Frame {
    let (stream, annotations) = (None, Annotations::default());
    room_message_frame(Published { kind, id, room, from, data, at, stream, annotations })
}

/// What a published message's envelope is made of.
#[derive(Debug, Clone, Copy)]
pub struct Published<'a> {
    pub kind: MessageType,
    pub id: &'a str,
    pub room: Option<&'a str>,
    pub from: &'a str,
    pub data: &'a RawValue,
    pub at: SystemTime,
    /// `(seq, epoch)` of a message in a room's stream.
    pub stream: Option<(u64, &'a str)>,
    /// What history shows of it beyond what went out live (nothing, live).
    pub annotations: Annotations<'a>,
}

/// What history adds to a stored message's envelope, as its reader sees it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Annotations<'a> {
    /// When its content was last edited.
    pub edited_at: Option<SystemTime>,
    /// `[{"emoji","count","mine"}]`.
    pub reactions: Option<&'a RawValue>,
    /// `{"replies","last_reply_at"}`.
    pub thread: Option<&'a RawValue>,
    /// `{"id","from","content"}` or `{"id","from","deleted":true}`.
    pub quote: Option<&'a RawValue>,
}

/// A published message, with its place in the room's stream when it has one.
pub fn room_message_frame(message: Published<'_>) -> Frame {
    let Published { kind, id, room, from, data, at, stream, annotations } = message;
    let Annotations { edited_at, reactions, thread, quote } = annotations;
    let timestamp = super::format_rfc3339(at);
    let edited_at = edited_at.map(super::format_rfc3339);
    let (seq, epoch) = (stream.map(|(seq, _)| seq), stream.map(|(_, epoch)| epoch));
    encode(&Envelope {
        id: Some(id),
        kind,
        room,
        from: Some(from),
        data: Some(data),
        timestamp: Some(&timestamp),
        edited_at: edited_at.as_deref(),
        reactions,
        thread,
        quote,
        seq,
        epoch,
    })
}

/// A room message cut where its `seq` and `epoch` go, for a stamp made elsewhere (the cluster's
/// script in Redis): `head`, the seq, `MID`, the epoch, `TAIL` make the frame that
/// [`room_message_frame`] makes with that place in the stream. The epoch is plain ASCII (no escaping).
pub fn room_message_parts(message: Published<'_>) -> String {
    let unstamped = room_message_frame(Published { stream: None, ..message });
    let json = unstamped.as_str();
    let mut head = String::with_capacity(json.len() + 8);
    head.push_str(json.strip_suffix('}').expect("an envelope is a JSON object"));
    head.push_str(r#","seq":"#);
    head
}

/// What goes between a stamped room message's seq and epoch ([`room_message_parts`]).
pub const STAMP_MID: &str = r#","epoch":""#;
/// What ends a stamped room message, after its epoch.
pub const STAMP_TAIL: &str = r#""}"#;

/// A frame with no data: `{"type":...,"id":...}` (acks, pongs).
pub fn reply_frame(kind: MessageType, id: Option<&str>) -> Frame {
    bare_frame(kind, id, None)
}

/// `{"type":"ack","id":...,"seq":N}`: a request done; `seq` for a room message.
pub fn ack_frame(id: Option<&str>, seq: Option<u64>) -> Frame {
    bare_frame(MessageType::Ack, id, seq)
}

/// A server frame with data and no sender, time or place in a stream (errors, notices, answers).
pub(super) fn data_frame<D: Serialize>(
    kind: MessageType,
    id: Option<&str>,
    room: Option<&str>,
    data: D,
) -> Frame {
    plain_frame(kind, id, room, Some(data), None)
}

fn bare_frame(kind: MessageType, id: Option<&str>, seq: Option<u64>) -> Frame {
    plain_frame::<()>(kind, id, None, None, seq)
}

/// A frame with no sender, time or history annotations.
fn plain_frame<D: Serialize>(
    kind: MessageType,
    id: Option<&str>,
    room: Option<&str>,
    data: Option<D>,
    seq: Option<u64>,
) -> Frame {
    let (from, timestamp, epoch) = (None, None, None);
    let (edited_at, reactions, thread, quote) = (None, None, None, None);
    encode(&Envelope {
        id,
        kind,
        room,
        from,
        data,
        timestamp,
        edited_at,
        reactions,
        thread,
        quote,
        seq,
        epoch,
    })
}

/// `{"type":"error","id":...,"data":{"code":...,"message":...}}`.
/// Error frames made for clients, by code (its place in [`ErrorCode::ALL`]): the process's count,
/// read by `/metrics`. Errors are rare, so one shared counter per code costs nothing.
static ERRORS: [AtomicU64; ErrorCode::ALL.len()] =
    [const { AtomicU64::new(0) }; ErrorCode::ALL.len()];

/// How many error frames with `code` this process has made.
pub fn errors_made(code: ErrorCode) -> u64 {
    ERRORS[code as usize].load(Relaxed)
}

pub fn error_frame(id: Option<&str>, code: ErrorCode, message: &str) -> Frame {
    ERRORS[code as usize].fetch_add(1, Relaxed);
    #[derive(Serialize)]
    struct ErrorData<'a> {
        code: &'a str,
        message: &'a str,
    }
    let data = ErrorData { code: code.as_str(), message };
    data_frame(MessageType::Error, id, None, data)
}

/// An error with when it ends: `until` (a mute's end, RFC 3339) or `retry_after_ms` (slow mode).
pub fn refusal_frame(
    id: Option<&str>,
    code: ErrorCode,
    message: &str,
    until: Option<&str>,
    retry_after_ms: Option<i64>,
) -> Frame {
    #[derive(Serialize)]
    struct RefusalData<'a> {
        code: &'a str,
        message: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        until: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        retry_after_ms: Option<i64>,
    }
    ERRORS[code as usize].fetch_add(1, Relaxed);
    let data = RefusalData { code: code.as_str(), message, until, retry_after_ms };
    data_frame(MessageType::Error, id, None, data)
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
    data_frame(MessageType::System, None, None, data)
}

/// The cursor to the next page of a history answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// The next older page (`None`: this was the oldest).
    Before(Option<i64>),
    /// The seq to ask `after` next (`None`: nothing newer was stored when it was read).
    After(Option<i64>),
}

/// `{"type":"history","id":...,"room":r,"data":{"messages":[...],"next_before":...}}` (or
/// `next_after` for a page after a seq): `messages` are the envelopes, exactly as they went out live.
pub fn history_frame(id: Option<&str>, room: &str, messages: &[Frame], next: Next) -> Frame {
    #[derive(Serialize)]
    struct Page<'a> {
        messages: Vec<&'a RawValue>,
        #[serde(skip_serializing_if = "Option::is_none")]
        next_before: Option<Option<String>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        next_after: Option<Option<i64>>,
    }
    let messages = messages
        .iter()
        .filter_map(|frame| serde_json::from_str::<&RawValue>(frame.as_str()).ok())
        .collect();
    let data = match next {
        Next::Before(pos) => {
            Page { messages, next_before: Some(pos.map(|pos| pos.to_string())), next_after: None }
        }
        Next::After(seq) => Page { messages, next_before: None, next_after: Some(seq) },
    };
    data_frame(MessageType::History, id, Some(room), data)
}

/// How a resume went: every message after `since` follows, or the client must reload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resumed {
    Recovered,
    /// Why, and where the stream stands now.
    NotRecovered {
        reason: Unrecovered,
        seq: u64,
        epoch: String,
    },
}

/// Why a resume (or the live stream) could not be carried on; serialized as its wire code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Unrecovered {
    /// The messages after the resume point are no longer kept (window, Redis, store).
    TooOld,
    /// The stream started again under another name (its history is in the store, if anywhere).
    EpochChanged,
    /// Where the stream stands could not be read (the store or Redis is unreachable).
    NoHistory,
    /// Cluster mode: the instance missed messages of the room (a resume fills the hole).
    Interrupted,
    /// The stream is behind the resume point: it no longer has messages the client saw (its store
    /// was restored from a backup). The client takes the stream's place; the next seqs are new.
    Behind,
}

/// The answer to a resuming join: `{"type":"ack","id":...,"room":r,"data":{"recovered":...}}`, or
/// `"type":"joined"` when the join had no id.
pub fn resumed_frame(id: Option<&str>, room: &str, resumed: &Resumed) -> Frame {
    #[derive(Serialize)]
    struct Data<'a> {
        recovered: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<Unrecovered>,
        #[serde(skip_serializing_if = "Option::is_none")]
        seq: Option<u64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        epoch: Option<&'a str>,
    }
    let data = match resumed {
        Resumed::Recovered => Data { recovered: true, reason: None, seq: None, epoch: None },
        Resumed::NotRecovered { reason, seq, epoch } => {
            Data { recovered: false, reason: Some(*reason), seq: Some(*seq), epoch: Some(epoch) }
        }
    };
    let kind = if id.is_some() { MessageType::Ack } else { MessageType::Joined };
    data_frame(kind, id, Some(room), data)
}
