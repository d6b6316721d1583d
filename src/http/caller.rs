//! Who calls the REST API of rooms and messages, and the query parameters their endpoints share.
//!
//! Owns: [`Caller`] and how a query's parameters and a refusal of the room rules become answers.
//! Must not: decide anything; the endpoints and the rules do.

use hyper::Response;

use super::{refusal, Body};
use crate::auth::Identity;
use crate::protocol::{self, UserId, HISTORY_DEFAULT, HISTORY_MAX};
use crate::rooms::Access;

/// The answer to a request that changes something for an anonymous caller.
pub const UNNAMED: &str = "name yourself: a token, or ?user= with authentication off";

/// Who is calling: the token's `sub` with authentication on, `?user=` with it off.
#[derive(Debug)]
pub struct Caller {
    pub user: Option<UserId>,
    pub admin: bool,
}

impl Caller {
    pub fn of(identity: Option<Identity>, query: Option<&str>) -> Result<Self, &'static str> {
        if let Some(identity) = identity {
            return Ok(Self { user: Some(identity.user), admin: identity.permissions.admin });
        }
        let user =
            query_param(query, "user").map(|user| protocol::validate_user(&user)).transpose()?;
        Ok(Self { user, admin: false })
    }

    pub fn name(&self) -> &str {
        self.user.as_deref().unwrap_or_default()
    }
}

pub fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
}

/// The answer to a refusal of the room rules.
pub fn refused(room: &str, access: Access) -> Response<Body> {
    let (code, message) = access.refusal(room).expect("only refusals are answered with an error");
    refusal(code, &message)
}

/// A page's `limit=` (1 to 100, 50 when absent) and its cursor `name=` (a position from a
/// `next_before` or `next_after`; `None` when absent).
pub fn page(query: Option<&str>, name: &str) -> Result<(i64, Option<i64>), &'static str> {
    let cursor = query_param(query, name).map(|c| protocol::parse_cursor(&c)).transpose()?;
    Ok((page_limit(query)?, cursor))
}

/// `limit=` of a page: 1 to 100, 50 when absent.
pub fn page_limit(query: Option<&str>) -> Result<i64, &'static str> {
    match query_param(query, "limit") {
        None => Ok(HISTORY_DEFAULT),
        Some(limit) => limit
            .parse::<i64>()
            .ok()
            .filter(|limit| (1..=HISTORY_MAX).contains(limit))
            .ok_or("limit must be 1 to 100"),
    }
}
