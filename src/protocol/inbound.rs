//! Inbound: client text frames into validated requests.
//!
//! Owns: what a client frame may carry and the checks on it (type, id, room, data shape, nesting,
//! content length); the `data` of each request but a chat's is read by [`super::fields`]. A chat's
//! outgoing frame is encoded here, once, through [`super::outbound`].
//! Must not: encode anything but through `outbound`, or know who sent the frame beyond its user id.

use std::borrow::Cow;
use std::time::SystemTime;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::fields::{
    check_content, delete_target, edit_data, history_page, presence_after, react_data,
    refresh_token, resume_point, typing_data, Limits,
};
use super::outbound::message_frame_at;
use super::{
    history_of, new_message_id, validate_room, Action, Chat, ClientFrame, ClientRequest, ErrorCode,
    MessageType, Rejection, Room, GLOBAL_ROOM, MAX_DATA_DEPTH, MAX_NAME_CHARS,
};

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

/// The part of a chat `data` object that the broker checks.
#[derive(Deserialize)]
struct ChatData<'a> {
    #[serde(borrow)]
    content: Option<Cow<'a, str>>,
    /// The message this one replies to (same room).
    #[serde(borrow)]
    reply_to: Option<Cow<'a, str>>,
}

/// A chat's `data`, checked: the data as sent, and the message it replies to.
#[derive(Debug)]
pub struct ChatChecked<'a> {
    pub data: &'a RawValue,
    pub reply_to: Option<String>,
}

/// Parses one client text frame sent by `user`. A chat message is encoded here, once.
pub fn parse_client_frame(
    text: &str,
    user: &str,
    limits: Limits,
) -> Result<ClientFrame, Rejection> {
    let (envelope, id) = envelope_of(text)?;
    let reject = |code, message: &str| Rejection::new(id.clone(), code, message);
    let Some(kind) = envelope.kind else {
        return Err(reject(ErrorCode::BadRequest, "missing type"));
    };
    let room = match envelope.room.as_deref() {
        None | Some("") => None,
        // Read by `history_of` below: `_global` has a history too.
        Some(GLOBAL_ROOM) if kind.as_ref() == "history" => None,
        Some(name) => Some(validate_room(name).map_err(|msg| reject(ErrorCode::BadRequest, msg))?),
    };
    let require_room =
        |room: Option<Room>| room.ok_or_else(|| reject(ErrorCode::BadRequest, "missing room"));
    let action = match kind.as_ref() {
        "chat" => {
            let checked =
                chat_data(envelope.data, limits).map_err(|(code, msg)| reject(code, msg))?;
            if checked.reply_to.is_some() && room.is_none() {
                return Err(reject(ErrorCode::BadRequest, "reply_to needs a room"));
            }
            Action::Chat(Box::new(chat(id.clone(), room, user, checked)))
        }
        "history" => {
            let (limit, page) =
                history_page(envelope.data).map_err(|msg| reject(ErrorCode::BadRequest, msg))?;
            let room = match envelope.room.as_deref() {
                Some(GLOBAL_ROOM) => history_of(GLOBAL_ROOM, &page)
                    .map_err(|msg| reject(ErrorCode::BadRequest, msg))?,
                _ => require_room(room)?,
            };
            Action::History { room, limit, page }
        }
        "delete" => {
            let (message, from) =
                delete_target(envelope.data).map_err(|msg| reject(ErrorCode::BadRequest, msg))?;
            Action::Delete { room: require_room(room)?, id: message, from }
        }
        "edit" => {
            let (message, content) =
                edit_data(envelope.data, limits).map_err(|(code, msg)| reject(code, msg))?;
            Action::Edit { room: require_room(room)?, id: message, content }
        }
        "join" => {
            match resume_point(envelope.data).map_err(|msg| reject(ErrorCode::BadRequest, msg))? {
                Some(since) => Action::Resume { room: require_room(room)?, since },
                None => Action::Join(require_room(room)?),
            }
        }
        "leave" => Action::Leave(require_room(room)?),
        "presence" => {
            let after =
                presence_after(envelope.data).map_err(|msg| reject(ErrorCode::BadRequest, msg))?;
            Action::Presence { room: require_room(room)?, after }
        }
        "ping" => Action::Ping,
        "active" => Action::Active,
        "read" => {
            #[derive(Deserialize)]
            struct ReadData {
                seq: u64,
            }
            let data =
                envelope.data.ok_or_else(|| reject(ErrorCode::BadRequest, "missing data"))?;
            let read: ReadData = serde_json::from_str(data.get())
                .map_err(|_| reject(ErrorCode::BadRequest, "data must be {\"seq\": number}"))?;
            Action::Read { room: require_room(room)?, seq: read.seq }
        }
        "react" => {
            let react =
                react_data(envelope.data).map_err(|msg| reject(ErrorCode::BadRequest, msg))?;
            let (id, from, emoji, remove) = react;
            Action::React { room: require_room(room)?, id, from, emoji, remove }
        }
        "typing" => {
            let typing =
                typing_data(envelope.data).map_err(|msg| reject(ErrorCode::BadRequest, msg))?;
            Action::Typing { room: require_room(room)?, typing }
        }
        "refresh" => {
            let token =
                refresh_token(envelope.data).map_err(|msg| reject(ErrorCode::BadRequest, msg))?;
            return Ok(ClientFrame::Refresh { id, token });
        }
        kind if super::moderate::is_moderation(kind) => {
            let request = super::moderate::parse(kind, envelope.data)
                .map_err(|message| reject(ErrorCode::BadRequest, &message))?;
            Action::Moderate { room: require_room(room)?, request: Box::new(request) }
        }
        other => {
            let shown: String = other.chars().take(MAX_NAME_CHARS).collect();
            let message = format!("unknown message type \"{shown}\"");
            return Err(reject(ErrorCode::UnknownType, &message));
        }
    };
    Ok(ClientFrame::Request(ClientRequest { id, action }))
}

/// A chat from `user`, stamped now and encoded once.
fn chat(id: Option<String>, room: Option<Room>, user: &str, checked: ChatChecked<'_>) -> Chat {
    let ChatChecked { data, reply_to } = checked;
    let id = id.unwrap_or_else(new_message_id);
    let at = SystemTime::now();
    let millis = super::millis(at);
    let at = super::time_of(millis);
    // A room chat is encoded by its room's home shard, with its seq.
    let frame =
        room.is_none().then(|| message_frame_at(MessageType::Chat, &id, None, user, data, at));
    Chat { room, id, data: data.to_owned(), at: millis, frame, reply_to }
}

/// The envelope of a client frame and its `id`, checked for length.
fn envelope_of(text: &str) -> Result<(IncomingEnvelope<'_>, Option<String>), Rejection> {
    let envelope: IncomingEnvelope<'_> = serde_json::from_str(text).map_err(|err| {
        Rejection::new(None, ErrorCode::BadRequest, format!("invalid JSON: {err}"))
    })?;
    let id = envelope.id.as_ref().map(|id| id.clone().into_owned());
    if id.as_ref().is_some_and(|id| id.chars().count() > MAX_NAME_CHARS) {
        let message = "id is longer than 128 characters";
        return Err(Rejection::new(None, ErrorCode::BadRequest, message));
    }
    Ok((envelope, id))
}

/// Checks a chat's `data`: an object whose `content`, when present, is a string within the limit.
pub fn chat_data(
    data: Option<&RawValue>,
    limits: Limits,
) -> Result<ChatChecked<'_>, (ErrorCode, &'static str)> {
    let data = data.ok_or((ErrorCode::BadRequest, "missing data"))?;
    if !data.get().starts_with('{') {
        return Err((ErrorCode::BadRequest, "data must be an object"));
    }
    if nesting_depth(data.get()) > MAX_DATA_DEPTH {
        return Err((ErrorCode::BadRequest, "data nests objects and arrays more than 16 deep"));
    }
    let checked: ChatData<'_> = serde_json::from_str(data.get())
        .map_err(|_| (ErrorCode::BadRequest, "data.content and data.reply_to must be strings"))?;
    if let Some(content) = checked.content {
        check_content(&content, limits)?;
    }
    let reply_to = checked.reply_to.map(Cow::into_owned);
    if reply_to.as_ref().is_some_and(|id| id.is_empty() || id.chars().count() > MAX_NAME_CHARS) {
        return Err((
            ErrorCode::BadRequest,
            "data.reply_to must be a message id of 1-128 characters",
        ));
    }
    Ok(ChatChecked { data, reply_to })
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
