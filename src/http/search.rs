//! `GET /api/v1/chat/search?q=&room=&limit=&before=`: the messages holding every word of `q` that
//! the caller may read (its rooms and public rooms; one room with `room=`; every room for an
//! admin), newest first, each as the envelope it went out as (with its room and seq).
//!
//! Owns: the endpoint's parameters and answer. The words and the SQL are
//! [`crate::store::search`]; who may read a named room is [`crate::rooms`]. Must not: touch the
//! cache.

use hyper::{Response, StatusCode};
use serde_json::json;
use serde_json::value::RawValue;

use super::caller::{page, query_param, refused, Caller};
use super::messages::raw;
use super::{bad_request, json, store_unavailable, App, Body};
use crate::messages::stored_frame;
use crate::protocol;
use crate::rooms::{self, Access};
use crate::store::ops::{Answer, Read};
use crate::store::search::{self, Scope, Search};

/// The longest `q`, in characters.
const MAX_QUERY_CHARS: usize = 256;

pub async fn search(app: &App, caller: &Caller, query: Option<&str>) -> Response<Body> {
    let Some(store) = app.hub.store() else {
        return super::error(StatusCode::NOT_FOUND, "not_found", "no search without a store");
    };
    let q = query_param(query, "q").unwrap_or_default();
    if q.chars().count() > MAX_QUERY_CHARS {
        return bad_request(&format!("q is longer than {MAX_QUERY_CHARS} characters"));
    }
    let words = search::words(&q);
    if words.is_empty() {
        return bad_request("q must hold a word (letters or digits)");
    }
    let (limit, before) = match page(query, "before") {
        Ok(page) => page,
        Err(message) => return bad_request(message),
    };
    let scope = match query_param(query, "room") {
        Some(room) => {
            let Ok(room) = protocol::validate_room(&room) else {
                return bad_request("not a valid room name");
            };
            match rooms::may_read(store, &room, caller.user.as_deref(), caller.admin).await {
                Access::Allowed => Scope::Room(room.to_string()),
                access => return refused(&room, access),
            }
        }
        None if caller.admin => Scope::All,
        None => Scope::Readable(caller.name().to_owned()),
    };
    let read = Read::Search(Search { words, scope, before, limit });
    let Ok(Answer::Messages(found)) = store.read(read).await else {
        return store_unavailable();
    };
    let next_before =
        found.last().filter(|_| found.len() as i64 == limit).map(|m| m.pos.to_string());
    let frames: Vec<_> = found.iter().filter_map(stored_frame).collect();
    let messages: Vec<&RawValue> = frames.iter().filter_map(raw).collect();
    json(StatusCode::OK, &json!({ "q": q, "messages": messages, "next_before": next_before }))
}
