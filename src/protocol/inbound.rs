//! Inbound: client text frames into validated requests.
//!
//! Owns: what a client frame may carry and the checks on it (type, id, room, data shape, nesting,
//! content length). A chat's outgoing frame is encoded here, once, through [`super::outbound`].
//! Must not: encode anything but through `outbound`, or know who sent the frame beyond its user id.

use std::borrow::Cow;
use std::time::SystemTime;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::outbound::message_frame_at;
use super::{
    history_of, new_message_id, parse_cursor, validate_room, validate_user, Action, Chat,
    ClientFrame, ClientRequest, ErrorCode, MessageType, Page, Rejection, Room, Since, UserId,
    GLOBAL_ROOM, HISTORY_DEFAULT, HISTORY_MAX, MAX_DATA_DEPTH, MAX_NAME_CHARS,
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

/// The `data` of `history`: `{"limit": 1..=100, "before": "<cursor>"}` or `{"after": <seq>}`.
#[derive(Deserialize)]
struct HistoryData<'a> {
    limit: Option<i64>,
    #[serde(borrow)]
    before: Option<Cow<'a, str>>,
    after: Option<i64>,
}

/// The page a `history` asks for: its size, and which page.
pub fn history_page(data: Option<&RawValue>) -> Result<(i64, Page), &'static str> {
    let Some(data) = data else { return Ok((HISTORY_DEFAULT, Page::Before(None))) };
    let page: HistoryData<'_> = serde_json::from_str(data.get())
        .map_err(|_| "data must be {\"limit\": number, \"before\": cursor} or {\"after\": seq}")?;
    let limit = page.limit.unwrap_or(HISTORY_DEFAULT);
    if !(1..=HISTORY_MAX).contains(&limit) {
        return Err("limit must be 1 to 100");
    }
    match (page.before.as_deref(), page.after) {
        (Some(_), Some(_)) => Err("give before or after, not both"),
        (_, Some(after)) if after < 0 => Err("after must be a seq (0 or more)"),
        (_, Some(after)) => Ok((limit, Page::After(after))),
        (before, None) => Ok((limit, Page::Before(before.map(parse_cursor).transpose()?))),
    }
}

/// The `data` of a `presence` query: `{"after": "<user>"}` for the page after that user.
fn presence_after(data: Option<&RawValue>) -> Result<Option<UserId>, &'static str> {
    #[derive(Deserialize)]
    struct PresenceData<'a> {
        #[serde(borrow)]
        after: Option<Cow<'a, str>>,
    }
    let Some(data) = data else { return Ok(None) };
    let page: PresenceData<'_> =
        serde_json::from_str(data.get()).map_err(|_| "data must be {\"after\": user}")?;
    page.after.map(|after| validate_user(&after)).transpose()
}

/// The `data` of a `join` that resumes: `{"since": {"seq": N, "epoch": "E"}}`.
#[derive(Deserialize)]
struct JoinData<'a> {
    #[serde(borrow)]
    since: Option<SinceData<'a>>,
}

#[derive(Deserialize)]
struct SinceData<'a> {
    seq: u64,
    #[serde(borrow)]
    epoch: Cow<'a, str>,
}

/// Where a `join` resumes from, when it does.
fn resume_point(data: Option<&RawValue>) -> Result<Option<Since>, &'static str> {
    let Some(data) = data else { return Ok(None) };
    let join: JoinData<'_> = serde_json::from_str(data.get())
        .map_err(|_| "data.since must be {\"seq\": number, \"epoch\": string}")?;
    let Some(since) = join.since else { return Ok(None) };
    if since.epoch.is_empty() || since.epoch.chars().count() > MAX_NAME_CHARS {
        return Err("since.epoch must be 1-128 characters");
    }
    Ok(Some(Since { seq: since.seq, epoch: since.epoch.into_owned() }))
}

/// The `data` of `delete`: `{"id": "<message id>", "from": "<sender>"}` (`from` optional).
#[derive(Deserialize)]
struct DeleteData<'a> {
    #[serde(borrow)]
    id: Cow<'a, str>,
    #[serde(borrow)]
    from: Option<Cow<'a, str>>,
}

fn delete_target(data: Option<&RawValue>) -> Result<(String, Option<String>), &'static str> {
    let data = data.ok_or("missing data")?;
    let target: DeleteData<'_> =
        serde_json::from_str(data.get()).map_err(|_| "data must be {\"id\": message id}")?;
    if target.id.is_empty() || target.id.chars().count() > MAX_NAME_CHARS {
        return Err("data.id must be a message id of 1-128 characters");
    }
    Ok((target.id.into_owned(), target.from.map(Cow::into_owned)))
}

/// The `data` of `edit`: `{"id": "<message id>", "content": "<the new content>"}`.
#[derive(Deserialize)]
struct EditData<'a> {
    #[serde(borrow)]
    id: Cow<'a, str>,
    #[serde(borrow)]
    content: Cow<'a, str>,
}

fn edit_data(
    data: Option<&RawValue>,
    limits: Limits,
) -> Result<(String, String), (ErrorCode, &'static str)> {
    let bad = |message| (ErrorCode::BadRequest, message);
    let data = data.ok_or(bad("missing data"))?;
    let edit: EditData<'_> = serde_json::from_str(data.get())
        .map_err(|_| bad("data must be {\"id\": message id, \"content\": string}"))?;
    if edit.id.is_empty() || edit.id.chars().count() > MAX_NAME_CHARS {
        return Err(bad("data.id must be a message id of 1-128 characters"));
    }
    check_content(&edit.content, limits)?;
    Ok((edit.id.into_owned(), edit.content.into_owned()))
}

/// The `data` of `react`: `{"id": "<message id>", "from": "<its author>"?, "emoji": "👍",
/// "remove": false}`.
#[derive(Deserialize)]
struct ReactData<'a> {
    #[serde(borrow)]
    id: Cow<'a, str>,
    #[serde(borrow)]
    from: Option<Cow<'a, str>>,
    #[serde(borrow)]
    emoji: Cow<'a, str>,
    #[serde(default)]
    remove: bool,
}

fn react_data(
    data: Option<&RawValue>,
) -> Result<(String, Option<String>, String, bool), &'static str> {
    let data = data.ok_or("missing data")?;
    let react: ReactData<'_> = serde_json::from_str(data.get())
        .map_err(|_| "data must be {\"id\": message id, \"emoji\": string, \"remove\"?: bool}")?;
    if react.id.is_empty() || react.id.chars().count() > MAX_NAME_CHARS {
        return Err("data.id must be a message id of 1-128 characters");
    }
    validate_reaction(&react.emoji)?;
    let from = react.from.map(Cow::into_owned);
    Ok((react.id.into_owned(), from, react.emoji.into_owned(), react.remove))
}

/// A reaction is an emoji (1 to 8 Unicode scalar values, at most 32 bytes, no ASCII, no space or
/// control character: one emoji with its modifiers and joiners) or a short code (`:name:`, 1 to 30
/// of `a-z 0-9 _ + -` between the colons).
pub fn validate_reaction(emoji: &str) -> Result<(), &'static str> {
    const WHAT: &str =
        "emoji must be one emoji (at most 8 code points, 32 bytes) or a :short_code:";
    if let Some(name) = emoji.strip_prefix(':').and_then(|rest| rest.strip_suffix(':')) {
        let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "_+-".contains(c);
        let fits = (1..=30).contains(&name.len()) && name.chars().all(allowed);
        return if fits { Ok(()) } else { Err(WHAT) };
    }
    let count = emoji.chars().count();
    let plain = |c: char| c.is_ascii() || c.is_whitespace() || c.is_control();
    if count == 0 || count > 8 || emoji.len() > 32 || emoji.chars().any(plain) {
        return Err(WHAT);
    }
    Ok(())
}

/// The `data` of `typing`: none or `{"typing": true}` starts (or goes on), `{"typing": false}`
/// stops.
fn typing_data(data: Option<&RawValue>) -> Result<bool, &'static str> {
    #[derive(Deserialize)]
    struct TypingData {
        typing: Option<bool>,
    }
    let Some(data) = data else { return Ok(true) };
    let data: TypingData =
        serde_json::from_str(data.get()).map_err(|_| "data must be {\"typing\": true or false}")?;
    Ok(data.typing.unwrap_or(true))
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

/// The token of a `refresh`'s `data`.
fn refresh_token(data: Option<&RawValue>) -> Result<String, &'static str> {
    let data = data.ok_or("missing data")?;
    let refresh: RefreshData<'_> =
        serde_json::from_str(data.get()).map_err(|_| "data must be {\"token\": string}")?;
    Ok(refresh.token.into_owned())
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

/// A `data.content` within the content limit.
fn check_content(content: &str, limits: Limits) -> Result<(), (ErrorCode, &'static str)> {
    if content.chars().count() > limits.max_content_chars {
        return Err((ErrorCode::ContentTooLong, "data.content is longer than the content limit"));
    }
    Ok(())
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
