//! The room rules: who may join a room, who may read it, and how rooms come into being.
//!
//! Owns: the rules of the three room types (docs/protocol.md, "Rooms"), asked of the store, and
//! [`Refused`], the refusal the services built on them (moderation, attachments) answer with. Used by
//! the upgrade (rooms in the connect URL), the shard's offloaded joins and the REST handlers, so
//! every path applies the same rules. Must not: hold state; the store owns rooms and participants.
//!
//! - public: anyone the token allows may join; joining a name nobody has taken creates it.
//! - private: participants only (and admins).
//! - direct: `dm:<a>:<b>` with `a < b`, exactly those two; joining it by name creates it.

use std::time::SystemTime;

pub use crate::protocol::direct_pair;
use crate::protocol::{self, millis, ErrorCode, Room};
use crate::store::ops::{Answer, Read, Write};
use crate::store::reads::Bar;
use crate::store::{Role, RoomInfo, RoomType, Store, Unavailable};

/// Whether a join, a read or a change of a room is allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    Allowed,
    /// Not for this user: the reason, for the error message.
    Forbidden(String),
    /// The room does not exist (reads only; a join creates it).
    NotFound,
    Unavailable,
}

impl Access {
    /// A refusal's error code and message (`None`: allowed), for WebSocket and HTTP alike.
    pub fn refusal(self, room: &str) -> Option<(ErrorCode, String)> {
        match self {
            Self::Allowed => None,
            Self::Forbidden(why) => Some((ErrorCode::Forbidden, why)),
            Self::NotFound => Some((ErrorCode::NotFound, format!("no room {room}"))),
            Self::Unavailable => {
                Some((ErrorCode::Unavailable, protocol::STORE_UNAVAILABLE.to_owned()))
            }
        }
    }
}

/// Why a request of a service (moderation, attachments) was refused, for WebSocket and HTTP alike;
/// nothing changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub code: ErrorCode,
    pub message: String,
}

impl Refused {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into() }
    }

    pub fn unavailable() -> Self {
        Self::new(ErrorCode::Unavailable, protocol::STORE_UNAVAILABLE)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Forbidden, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, message)
    }

    /// The refusal the room rules made of `room`.
    pub fn of(room: &str, access: Access) -> Self {
        match access.refusal(room) {
            Some((code, message)) => Self { code, message },
            None => Self::forbidden("not allowed"),
        }
    }
}

impl From<Unavailable> for Access {
    fn from(_: Unavailable) -> Self {
        Self::Unavailable
    }
}

/// The direct room of two users, named from the sorted pair; `None` when it cannot be named
/// (the same user twice, or ids that do not fit a room name).
pub fn direct_room(one: &str, other: &str) -> Option<Room> {
    if one == other || one.contains(':') || other.contains(':') {
        return None;
    }
    let (a, b) = if one < other { (one, other) } else { (other, one) };
    protocol::validate_room(&format!("dm:{a}:{b}")).ok()
}

/// The room as a new public or direct room created by `user` joining it.
fn born_by_joining(room: &str, user: &str) -> (RoomInfo, Vec<String>) {
    let created_at = millis(SystemTime::now());
    let (kind, members) = match direct_pair(room) {
        Some((a, b)) => (RoomType::Direct, vec![a.to_owned(), b.to_owned()]),
        None => (RoomType::Public, vec![user.to_owned()]),
    };
    let info =
        RoomInfo { id: room.to_owned(), kind, created_at, created_by: user.into(), metadata: None };
    (info, members)
}

/// The room and `user`'s role in it.
pub async fn room_and_role(
    store: &Store,
    room: &str,
    user: &str,
) -> Result<(Option<RoomInfo>, Option<Role>), Unavailable> {
    let read = Read::Access { room: room.to_owned(), user: user.to_owned(), bar: false };
    match store.read(read).await? {
        Answer::Access { room, role, .. } => Ok((room, role)),
        _ => Err(Unavailable),
    }
}

/// The room, `user`'s role in it, and what keeps the user out of it.
pub async fn standing(
    store: &Store,
    room: &str,
    user: &str,
) -> Result<(Option<RoomInfo>, Option<Role>, Option<Bar>), Unavailable> {
    let read = Read::Access { room: room.to_owned(), user: user.to_owned(), bar: true };
    match store.read(read).await? {
        Answer::Access { room, role, bar } => Ok((room, role, bar)),
        _ => Err(Unavailable),
    }
}

/// The refusal of a join (or of being added) that `bar` makes.
pub fn barred(room: &str, bar: &Bar) -> Access {
    Access::Forbidden(match bar {
        Bar::Banned(Some(until)) => {
            let until = protocol::format_rfc3339(protocol::time_of(*until));
            format!("you are banned from {room} until {until}")
        }
        Bar::Banned(None) => format!("you are banned from {room}"),
        Bar::Blocked => format!("the other user of {room} blocked you"),
        Bar::Archived => format!("{room} is archived"),
    })
}

/// Allowed once `write` is committed: the join's ack means the room (and the participant) exists
/// for every request after it.
async fn committed(store: &Store, write: Write) -> Access {
    match store.write_and_wait(write).await {
        Ok(_) => Access::Allowed,
        Err(unavailable) => unavailable.into(),
    }
}

/// Users made participants of a room (both users of a direct room a join created, the creator and
/// the members named when a room is created, a participant added): they are told with
/// `room_added`, so the room shows up on each of their connections without a reload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Added {
    pub room: Room,
    pub kind: RoomType,
    pub by: String,
    pub users: Vec<String>,
}

/// Whether `user` may join `room`; a join of a room nobody created creates it (public, or direct
/// for its two users), and a first join of a public room makes the user a participant. A direct
/// room created so comes with its other user, to tell.
pub async fn may_join(
    store: &Store,
    room: &Room,
    user: &str,
    admin: bool,
) -> (Access, Option<Added>) {
    let (info, role) = match standing(store, room, user).await {
        Ok((_, _, Some(bar))) if !admin => return (barred(room, &bar), None),
        Ok((info, role, _)) => (info, role),
        Err(unavailable) => return (unavailable.into(), None),
    };
    let born_direct = if info.is_none() { direct_pair(room) } else { None };
    let access = may_join_as(store, room, user, admin, (info, role)).await;
    let added = born_direct.filter(|_| access == Access::Allowed).map(|(a, b)| Added {
        room: room.clone(),
        kind: RoomType::Direct,
        by: user.to_owned(),
        users: [a, b].into_iter().map(str::to_owned).collect(),
    });
    (access, added)
}

async fn may_join_as(
    store: &Store,
    room: &Room,
    user: &str,
    admin: bool,
    (info, role): (Option<RoomInfo>, Option<Role>),
) -> Access {
    match (info, role) {
        (None, _) if room.starts_with("dm:") && direct_pair(room).is_none() => {
            Access::Forbidden(format!("direct rooms are named dm:<a>:<b> with a < b, not {room}"))
        }
        (None, _) if direct_pair(room).is_some_and(|(a, b)| user != a && user != b) && !admin => {
            Access::Forbidden(format!("{room} is a direct room of two other users"))
        }
        (None, _) => {
            let (info, members) = born_by_joining(room, user);
            committed(store, Write::EnsureRoom { room: info, members }).await
        }
        (Some(_), Some(_)) => Access::Allowed,
        (Some(info), None) if info.kind == RoomType::Public => {
            let at = millis(SystemTime::now());
            let (room, user) = (room.to_string(), user.to_owned());
            committed(store, Write::AddParticipant { room, user, role: Role::Member, at }).await
        }
        (Some(_), None) if admin => Access::Allowed,
        (Some(info), None) => {
            Access::Forbidden(format!("{} is a {} room", info.id, info.kind.as_str()))
        }
    }
}

/// Whether `user` may read `room` (its history, its participants): any existing public room,
/// private and direct ones for participants and admins.
pub async fn may_read(store: &Store, room: &str, user: Option<&str>, admin: bool) -> Access {
    let (info, role) = match standing(store, room, user.unwrap_or_default()).await {
        Ok((_, _, Some(Bar::Archived))) if !admin => return barred(room, &Bar::Archived),
        Ok((info, role, _)) => (info, role),
        Err(unavailable) => return unavailable.into(),
    };
    match (info, role) {
        (None, _) => Access::NotFound,
        (Some(info), None) if info.kind != RoomType::Public && !admin => {
            Access::Forbidden(format!("{} is a {} room", info.id, info.kind.as_str()))
        }
        _ => Access::Allowed,
    }
}

/// The room, when `user` may add or remove its participants: its owner, or an admin; else the
/// refusal.
pub async fn may_manage(
    store: &Store,
    room: &str,
    user: Option<&str>,
    admin: bool,
) -> Result<RoomInfo, Access> {
    let (info, role) = room_and_role(store, room, user.unwrap_or_default()).await?;
    match (info, role) {
        (None, _) => Err(Access::NotFound),
        (Some(info), Some(Role::Owner)) => Ok(info),
        (Some(info), _) if admin => Ok(info),
        (Some(info), _) => Err(Access::Forbidden(format!("only the owner of {} may", info.id))),
    }
}

/// Whether `user` may see what moderators see of `room` (an edited message's earlier versions):
/// its owners and moderators, and admins.
pub async fn may_moderate(store: &Store, room: &str, user: Option<&str>, admin: bool) -> Access {
    let (info, role) = match room_and_role(store, room, user.unwrap_or_default()).await {
        Ok(found) => found,
        Err(unavailable) => return unavailable.into(),
    };
    match (info, role) {
        (None, _) => Access::NotFound,
        (Some(_), Some(Role::Owner | Role::Moderator)) => Access::Allowed,
        (Some(_), _) if admin => Access::Allowed,
        (Some(info), _) => {
            Access::Forbidden(format!("only the owners and moderators of {} may", info.id))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn direct_rooms_are_named_from_the_sorted_pair() {
        assert_eq!(direct_room("bob", "alice").as_deref(), Some("dm:alice:bob"));
        assert_eq!(direct_room("alice", "bob").as_deref(), Some("dm:alice:bob"));
        assert_eq!(direct_room("alice", "alice"), None);
        assert_eq!(direct_room("a:b", "c"), None);
        assert_eq!(direct_pair("dm:alice:bob"), Some(("alice", "bob")));
        assert_eq!(direct_pair("dm:bob:alice"), None, "not sorted");
        assert_eq!(direct_pair("dm:alice"), None);
        assert_eq!(direct_pair("lobby"), None);
    }
}
