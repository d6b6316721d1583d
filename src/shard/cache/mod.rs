//! One shard's slice of the connection cache: its connections, their users and room memberships.
//!
//! Owns: the maps `conn -> Connection`, `user -> conns`, `room -> members`. Plain data, no I/O, no
//! locks: only the owning shard task holds a `LocalCache`, so it is never shared.
//! Must not: send anything. It reports what changed (a user's first join, a room emptied here) and the
//! shard decides what to announce.
//!
//! Users are pinned to shards by id, so every connection of a user lives in the same cache and "the
//! user's first / last connection in a room" is decided here, locally.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::oneshot;

use std::net::{IpAddr, SocketAddr};

use crate::auth::Permissions;
use crate::close::CloseReason;
use crate::mailbox::{ConnId, ConnInfo, LocalPresence, Outbox, UserStatus};
use crate::protocol::{self, Room, UserId};

/// What the cache knows of one connection.
#[derive(Debug)]
pub struct Connection {
    pub user: UserId,
    /// Where frames for this connection go; bounded, written with `try_send` only.
    pub outbox: Outbox,
    /// Tells the connection's session to close; taken when the shard evicts the connection. `None`
    /// on a lane, which carries the request to the shard's reader. Boxed: an optional sender takes
    /// 16 bytes inline, a boxed one 8.
    pub closer: Option<Box<oneshot::Sender<CloseReason>>>,
    /// When it connected, in milliseconds since the Unix epoch (8 bytes, not a `SystemTime`'s 16:
    /// it keeps the whole entry in a smaller allocation class).
    pub connected_at_ms: protocol::Millis,
    /// The client's address, for the audit log.
    pub remote: Remote,
    /// Which rooms it may join.
    pub permissions: Permissions,
    /// The last client frame the shard saw from this connection (drives `away`).
    pub last_activity: Instant,
    /// Its user was told away (marked on each of the user's connections), and not back since.
    pub away: bool,
    /// Exactly its rooms (most connections have one or two; a join or leave makes a new list).
    pub rooms: Box<[Room]>,
}

/// A client's address in 20 bytes rather than a `SocketAddr`'s 32, which with the boxed lists keeps
/// a [`Connection`] at 128 bytes, an allocation class smaller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Remote {
    ip: IpAddr,
    port: u16,
}

impl From<SocketAddr> for Remote {
    fn from(addr: SocketAddr) -> Self {
        Self { ip: addr.ip(), port: addr.port() }
    }
}

impl From<Remote> for SocketAddr {
    fn from(remote: Remote) -> Self {
        SocketAddr::new(remote.ip, remote.port)
    }
}

impl Connection {
    /// A connection of `user` that is in no room yet, active now, with no restrictions.
    pub fn new(user: UserId, outbox: Outbox, closer: Option<oneshot::Sender<CloseReason>>) -> Self {
        let connected_at_ms = protocol::millis(SystemTime::now());
        let last_activity = Instant::now();
        let (remote, permissions) =
            (Remote::from(SocketAddr::from(([0, 0, 0, 0], 0))), Permissions::unrestricted());
        Self {
            user,
            outbox,
            closer: closer.map(Box::new),
            connected_at_ms,
            remote,
            permissions,
            last_activity,
            away: false,
            rooms: Box::default(),
        }
    }
}

impl Connection {
    /// Asks whoever reads the connection to close it (once; the first reason wins).
    pub fn ask_to_close(&mut self, reason: &'static CloseReason) {
        if let Some(closer) = self.closer.take() {
            let _ = closer.send(*reason);
        } else if let Outbox::Lane(lane) = &self.outbox {
            lane.request_close(reason);
        }
    }
}

/// The local members of one room. Which users are in it is not kept a second time: whether a user
/// is, is asked of the user's few connections (presence fires on its first and last one).
#[derive(Debug, Default)]
struct RoomMembers {
    /// Each member's outbox, cloned here so fan-out is one map walk.
    conns: HashMap<ConnId, Outbox>,
}

/// What a successful join changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Joined {
    /// This was the user's first connection in the room: announce `join`.
    pub user_joined: bool,
    /// The room had no local members before: the directory must learn this shard has it.
    pub room_new_here: bool,
}

/// What a connection leaving a room changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Left {
    pub room: Room,
    /// That was the user's last connection in the room: announce `leave`.
    pub user_left: bool,
    /// The room has no local members left: the directory must drop this shard.
    pub room_empty_here: bool,
}

#[derive(Debug, Default)]
pub struct LocalCache {
    /// Boxed: a hash table keeps up to twice its entries' room free, and a `Connection` is 128
    /// bytes, so inline it would cost ~200 B per connection in table slack alone.
    conns: HashMap<ConnId, Box<Connection>>,
    /// Each user's connections here, as exactly sized slices: nearly every user has one, and a
    /// boxed slice is 8 bytes smaller than a `Vec` in every table slot.
    users: HashMap<UserId, Box<[ConnId]>>,
    rooms: HashMap<Room, RoomMembers>,
}

impl LocalCache {
    pub fn len(&self) -> usize {
        self.conns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.conns.is_empty()
    }

    pub fn get(&self, conn: ConnId) -> Option<&Connection> {
        self.conns.get(&conn).map(Box::as_ref)
    }

    pub fn get_mut(&mut self, conn: ConnId) -> Option<&mut Connection> {
        self.conns.get_mut(&conn).map(Box::as_mut)
    }

    pub fn insert(&mut self, conn: ConnId, connection: Connection) {
        let conns = self.users.entry(connection.user.clone()).or_default();
        *conns = conns.iter().copied().chain([conn]).collect();
        self.conns.insert(conn, Box::new(connection));
    }

    /// Removes a connection and its memberships; `None` if it was not here (already evicted).
    pub fn remove(&mut self, conn: ConnId) -> Option<(Connection, Vec<Left>)> {
        let mut connection = self.conns.remove(&conn)?;
        let rooms = std::mem::take(&mut connection.rooms).into_vec();
        let left = rooms
            .into_iter()
            .filter_map(|room| self.remove_member(conn, &connection.user, room))
            .collect();
        if let Some(conns) = self.users.get_mut(&connection.user) {
            *conns = conns.iter().copied().filter(|c| *c != conn).collect();
            if conns.is_empty() {
                self.users.remove(&connection.user);
            }
        }
        Some((*connection, left))
    }

    /// Adds `conn` to `room`; `None` if the connection is unknown or already a member.
    pub fn join(&mut self, conn: ConnId, room: &Room) -> Option<Joined> {
        let user = self.conns.get(&conn)?.user.clone();
        let user_joined = !self.user_in(&user, room);
        let connection = self.conns.get_mut(&conn)?;
        if connection.rooms.contains(room) {
            return None;
        }
        // The room's name is shared with the room's entry when it has one, so the connection keeps
        // no copy of its own; and the list holds exactly its rooms (most connections have one).
        let room =
            self.rooms.get_key_value(room).map_or_else(|| room.clone(), |(known, _)| known.clone());
        let mut rooms = Vec::with_capacity(connection.rooms.len() + 1);
        rooms.extend(connection.rooms.iter().cloned());
        rooms.push(room.clone());
        connection.rooms = rooms.into_boxed_slice();
        let room = &room;
        let room_new_here = !self.rooms.contains_key(room);
        let members = self.rooms.entry(room.clone()).or_default();
        members.conns.insert(conn, connection.outbox.clone());
        Some(Joined { user_joined, room_new_here })
    }

    /// Whether any connection of `user` here is in `room`: one lookup per connection of the user.
    fn user_in(&self, user: &str, room: &str) -> bool {
        let (Some(conns), Some(members)) = (self.users.get(user), self.rooms.get(room)) else {
            return false;
        };
        conns.iter().any(|conn| members.conns.contains_key(conn))
    }

    /// Removes `conn` from `room`; `None` if it was not a member.
    pub fn leave(&mut self, conn: ConnId, room: &Room) -> Option<Left> {
        let connection = self.conns.get_mut(&conn)?;
        let position = connection.rooms.iter().position(|r| r == room)?;
        let mut rooms = std::mem::take(&mut connection.rooms).into_vec();
        let room = rooms.swap_remove(position);
        connection.rooms = rooms.into_boxed_slice();
        let user = connection.user.clone();
        self.remove_member(conn, &user, room)
    }

    fn remove_member(&mut self, conn: ConnId, user: &UserId, room: Room) -> Option<Left> {
        let members = self.rooms.get_mut(&room)?;
        members.conns.remove(&conn)?;
        let room_empty_here = members.conns.is_empty();
        if room_empty_here {
            self.rooms.remove(&room);
        }
        let user_left = room_empty_here || !self.user_in(user, &room);
        Some(Left { room, user_left, room_empty_here })
    }

    /// Records a client frame from `conn` at `now` that shows a person there. When its user was
    /// told away, it no longer is: its rooms here, to tell them it is back.
    pub fn touch(&mut self, conn: ConnId, now: Instant) -> Option<(UserId, Vec<Room>)> {
        let connection = self.conns.get_mut(&conn)?;
        connection.last_activity = now;
        // A user's connections are marked together: one unmarked, none is.
        if !connection.away {
            return None;
        }
        let user = connection.user.clone();
        self.back(&user)
    }

    /// Clears `user`'s away mark: its rooms here when it had one.
    pub fn back(&mut self, user: &UserId) -> Option<(UserId, Vec<Room>)> {
        let conns = self.users.get(user)?;
        let mut was_away = false;
        for conn in conns.iter() {
            if let Some(connection) = self.conns.get_mut(conn) {
                was_away |= std::mem::replace(&mut connection.away, false);
            }
        }
        was_away.then(|| (user.clone(), self.rooms_of(user)))
    }

    /// Marks away, and returns with their rooms here, the users none of whose connections showed a
    /// person there for `away_after` and who were not told away yet.
    pub fn newly_away(&mut self, now: Instant, away_after: Duration) -> Vec<(UserId, Vec<Room>)> {
        let idle = |c: &Connection| {
            !c.away && now.saturating_duration_since(c.last_activity) >= away_after
        };
        let users = self.users.iter().filter(|(_, conns)| {
            conns.iter().filter_map(|conn| self.conns.get(conn)).map(Box::as_ref).all(idle)
        });
        let gone: Vec<UserId> = users.map(|(user, _)| user.clone()).collect();
        let mut told = Vec::with_capacity(gone.len());
        for user in gone {
            for conn in self.users[&user].iter() {
                if let Some(connection) = self.conns.get_mut(conn) {
                    connection.away = true;
                }
            }
            let rooms = self.rooms_of(&user);
            told.push((user, rooms));
        }
        told
    }

    /// The rooms any connection of `user` here is in, each once.
    fn rooms_of(&self, user: &str) -> Vec<Room> {
        let conns = self.users.get(user).map(AsRef::as_ref).unwrap_or_default();
        let mut rooms: Vec<Room> = conns
            .iter()
            .filter_map(|conn| self.conns.get(conn))
            .flat_map(|c| c.rooms.iter().cloned())
            .collect();
        rooms.sort_unstable();
        rooms.dedup();
        rooms
    }

    pub fn is_member(&self, conn: ConnId, room: &str) -> bool {
        self.rooms.get(room).is_some_and(|members| members.conns.contains_key(&conn))
    }

    /// Every local member of `room`.
    pub fn room_outboxes<'a>(
        &'a self,
        room: &str,
    ) -> impl Iterator<Item = (ConnId, &'a Outbox)> + 'a {
        self.rooms
            .get(room)
            .into_iter()
            .flat_map(|members| members.conns.iter().map(|(c, o)| (*c, o)))
    }

    /// Every connection of `user` (all on this shard, since users are pinned).
    pub fn user_outboxes<'a>(
        &'a self,
        user: &str,
    ) -> impl Iterator<Item = (ConnId, &'a Outbox)> + 'a {
        let conns = self.users.get(user).map(AsRef::as_ref).unwrap_or_default();
        conns.iter().filter_map(|conn| self.conns.get(conn).map(|c| (*conn, &c.outbox)))
    }

    /// Every local connection.
    pub fn all_outboxes(&self) -> impl Iterator<Item = (ConnId, &Outbox)> + '_ {
        self.conns.iter().map(|(conn, c)| (*conn, &c.outbox))
    }

    pub fn conn_ids(&self) -> Vec<ConnId> {
        self.conns.keys().copied().collect()
    }

    /// How many connections `user` has here.
    pub fn connections_of(&self, user: &str) -> usize {
        self.users.get(user).map_or(0, |conns| conns.len())
    }

    /// Whether `user` has any connection here.
    pub fn has_user(&self, user: &str) -> bool {
        self.users.contains_key(user)
    }

    /// Frames waiting in every connection's outbox.
    pub fn queued(&self) -> u64 {
        self.conns.values().map(|conn| conn.outbox.queued() as u64).sum()
    }

    pub fn online_users(&self) -> Vec<UserId> {
        self.users.keys().cloned().collect()
    }

    /// Every online user, and every room with its users (each once).
    pub fn presence(&self) -> LocalPresence {
        let rooms = self.rooms.keys().map(|room| (room.clone(), self.users_in(room))).collect();
        LocalPresence { users: self.online_users(), rooms }
    }

    /// The users in `room`, each once, sorted.
    fn users_in(&self, room: &str) -> Vec<UserId> {
        let members = self.rooms.get(room).map(|members| &members.conns);
        let conns = members.into_iter().flat_map(HashMap::keys);
        let mut users: Vec<UserId> =
            conns.filter_map(|conn| self.conns.get(conn)).map(|c| c.user.clone()).collect();
        users.sort_unstable();
        users.dedup();
        users
    }

    /// The users in `room`, each with whether it is away (no client frame for `away_after`).
    pub fn room_users(
        &self,
        room: &str,
        now: Instant,
        away_after: Duration,
    ) -> Vec<(UserId, bool)> {
        let away = |user: &UserId| self.user_status(user, now, away_after) == UserStatus::Away;
        self.users_in(room).into_iter().map(|user| (user.clone(), away(&user))).collect()
    }

    /// Online while any connection has been active within `away_after`, away when all are idle.
    pub fn user_status(&self, user: &str, now: Instant, away_after: Duration) -> UserStatus {
        let Some(conns) = self.users.get(user) else {
            return UserStatus::Offline;
        };
        let last_activity =
            conns.iter().filter_map(|conn| self.conns.get(conn)).map(|c| c.last_activity).max();
        match last_activity {
            Some(last) if now.saturating_duration_since(last) < away_after => UserStatus::Online,
            Some(_) => UserStatus::Away,
            None => UserStatus::Offline,
        }
    }

    pub fn user_connections(&self, user: &str, now: Instant) -> Vec<ConnInfo> {
        let conns = self.users.get(user).map(AsRef::as_ref).unwrap_or_default();
        let info = |conn: &ConnId| {
            let c = self.conns.get(conn)?;
            let idle_for = now.saturating_duration_since(c.last_activity);
            Some(ConnInfo {
                conn: *conn,
                connected_at: protocol::time_of(c.connected_at_ms),
                idle_for,
                rooms: c.rooms.to_vec(),
            })
        };
        conns.iter().filter_map(info).collect()
    }
}

#[cfg(test)]
mod tests;
