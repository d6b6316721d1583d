//! The `data` of each client request but a chat's: parsed, bounded and checked, each into what the
//! request needs (a page, a resume point, a reaction...), or a message saying what was wrong.
//!
//! Owns: those shapes and their rules. Must not: know the envelope ([`super::inbound`] reads it and
//! hands each request's `data` here).

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::{
    parse_cursor, validate_user, ErrorCode, Page, Since, UserId, HISTORY_DEFAULT, HISTORY_MAX,
    MAX_NAME_CHARS,
};

/// Limits applied while parsing client frames.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// The most Unicode scalar values `data.content` may hold.
    pub max_content_chars: usize,
}

/// A `data.content` within the content limit.
pub(super) fn check_content(
    content: &str,
    limits: Limits,
) -> Result<(), (ErrorCode, &'static str)> {
    if content.chars().count() > limits.max_content_chars {
        return Err((ErrorCode::ContentTooLong, "data.content is longer than the content limit"));
    }
    Ok(())
}

/// The `data` of a `refresh`.
#[derive(Deserialize)]
struct RefreshData<'a> {
    #[serde(borrow)]
    token: Cow<'a, str>,
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
pub(super) fn presence_after(data: Option<&RawValue>) -> Result<Option<UserId>, &'static str> {
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
pub(super) fn resume_point(data: Option<&RawValue>) -> Result<Option<Since>, &'static str> {
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

pub(super) fn delete_target(
    data: Option<&RawValue>,
) -> Result<(String, Option<String>), &'static str> {
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

pub(super) fn edit_data(
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

pub(super) fn react_data(
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
pub(super) fn typing_data(data: Option<&RawValue>) -> Result<bool, &'static str> {
    #[derive(Deserialize)]
    struct TypingData {
        typing: Option<bool>,
    }
    let Some(data) = data else { return Ok(true) };
    let data: TypingData =
        serde_json::from_str(data.get()).map_err(|_| "data must be {\"typing\": true or false}")?;
    Ok(data.typing.unwrap_or(true))
}

/// The token of a `refresh`'s `data`.
pub(super) fn refresh_token(data: Option<&RawValue>) -> Result<String, &'static str> {
    let data = data.ok_or("missing data")?;
    let refresh: RefreshData<'_> =
        serde_json::from_str(data.get()).map_err(|_| "data must be {\"token\": string}")?;
    Ok(refresh.token.into_owned())
}
