//! Cluster presence in Redis: who is online and in which room on every instance, kept alive by
//! heartbeats, and the join/leave decisions that must count every instance.
//!
//! Owns: the Lua scripts and the calls that run them. Must not: keep state; the relay owns the mirror
//! of local presence and calls these with it.
//!
//! Each instance writes only its own sets (`<p>:i:<id>:users`, `:rooms`, `:r:<room>`, `:away`) and its score in
//! `<p>:instances` (Redis `TIME`, in ms, so instance clocks do not matter). A reader counts only
//! instances whose score is within two heartbeat periods. The scripts run atomically, so of two
//! instances racing to add the same user to a room exactly one sees it first and announces `join`.
//! An instance that stops beating is reaped by the first live instance whose heartbeat sees it stale:
//! its sets are deleted and `leave` is announced for each of its users not present elsewhere.

use redis::aio::MultiplexedConnection;
use redis::{RedisResult, Script};

use super::wire::Names;
use crate::protocol::{PresenceStatus, Room, UserId};

/// Live instances, for the scripts below: ARGV[1] prefix, ARGV[2] live window in ms.
const LIVE: &str = r"
local p, window = ARGV[1], tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local live = redis.call('ZRANGEBYSCORE', p .. ':instances', now - window, '+inf')
";

/// A batch of joins and leaves of this instance, in order, in one call: ARGV[3] me, ARGV[4] ttl
/// ms, then per change ARGV[i] `j` or `l`, ARGV[i+1] room, ARGV[i+2] user. Per change the answer
/// is 0 when it changed nothing (the user was already here, or not here) or another live instance
/// has the user in the room; else (this was its first (join) or last (leave) presence there
/// anywhere) 1 + the room's size across the live instances after the change (a user on two
/// instances counts twice).
const MEMBERSHIPS: &str = r"
local me, ttl = ARGV[3], ARGV[4]
local my_rooms = p .. ':i:' .. me .. ':rooms'
local answers = {}
for i = 5, #ARGV, 3 do
  local join, room, user = ARGV[i] == 'j', ARGV[i + 1], ARGV[i + 2]
  local mine = p .. ':i:' .. me .. ':r:' .. room
  local changed
  if join then
    redis.call('SADD', my_rooms, room)
    redis.call('PEXPIRE', my_rooms, ttl)
    changed = redis.call('SADD', mine, user)
    redis.call('PEXPIRE', mine, ttl)
  else
    changed = redis.call('SREM', mine, user)
    if redis.call('SCARD', mine) == 0 then redis.call('SREM', my_rooms, room) end
  end
  local answer = 0
  if changed == 1 then
    local size = 0
    answer = 1
    for _, id in ipairs(live) do
      local set = p .. ':i:' .. id .. ':r:' .. room
      if id ~= me and redis.call('SISMEMBER', set, user) == 1 then answer = 0; break end
      size = size + redis.call('SCARD', set)
    end
    if answer == 1 then answer = 1 + size end
  end
  answers[#answers + 1] = answer
end
return answers
";

/// A batch of this instance's users going away (`a`) or coming back (`b`): ARGV[3] me, ARGV[4] ttl
/// ms, then per change ARGV[i] `a` or `b`, ARGV[i+1] user. Per change the answer is 1 when the
/// cluster's view changed with it: no other live instance has the user online and not away (so
/// it was away everywhere before a `b`, and is after an `a`); else 0.
const ACTIVITY: &str = r"
local me, ttl = ARGV[3], ARGV[4]
local mine = p .. ':i:' .. me .. ':away'
local answers = {}
for i = 5, #ARGV, 2 do
  local user = ARGV[i + 1]
  if ARGV[i] == 'a' then
    redis.call('SADD', mine, user)
    redis.call('PEXPIRE', mine, ttl)
  else
    redis.call('SREM', mine, user)
  end
  local answer = 1
  for _, id in ipairs(live) do
    local base = p .. ':i:' .. id
    if id ~= me and redis.call('SISMEMBER', base .. ':users', user) == 1
      and redis.call('SISMEMBER', base .. ':away', user) == 0 then answer = 0; break end
  end
  answers[#answers + 1] = answer
end
return answers
";

/// ARGV[3] me, ARGV[4] ttl ms. Renews this instance; reaps stale ones. Returns whether this
/// instance's user set exists (0: Redis lost it, register again), then `room, user` pairs that left
/// the cluster with a reaped instance.
const HEARTBEAT: &str = r"
local me, ttl = ARGV[3], ARGV[4]
redis.call('ZADD', p .. ':instances', now, me)
local mine = p .. ':i:' .. me
local exists = redis.call('PEXPIRE', mine .. ':users', ttl)
redis.call('PEXPIRE', mine .. ':rooms', ttl)
redis.call('PEXPIRE', mine .. ':away', ttl)
for _, room in ipairs(redis.call('SMEMBERS', mine .. ':rooms')) do
  redis.call('PEXPIRE', mine .. ':r:' .. room, ttl)
end
local gone = {exists}
local stale = redis.call('ZRANGEBYSCORE', p .. ':instances', '-inf', '(' .. (now - window))
redis.call('ZREMRANGEBYSCORE', p .. ':instances', '-inf', '(' .. (now - window))
for _, dead in ipairs(stale) do
  local base = p .. ':i:' .. dead
  for _, room in ipairs(redis.call('SMEMBERS', base .. ':rooms')) do
    for _, user in ipairs(redis.call('SMEMBERS', base .. ':r:' .. room)) do
      local elsewhere = false
      for _, id in ipairs(live) do
        if id ~= dead and redis.call('SISMEMBER', p .. ':i:' .. id .. ':r:' .. room, user) == 1 then elsewhere = true end
      end
      if not elsewhere then table.insert(gone, room); table.insert(gone, user) end
    end
    redis.call('DEL', base .. ':r:' .. room)
  end
  redis.call('DEL', base .. ':rooms', base .. ':users', base .. ':away')
end
return gone
";

/// ARGV[3] me, ARGV[4] kind (`online`, `room`, `user`), ARGV[5] the room or user.
const QUERY: &str = r"
local kind, name = ARGV[4], ARGV[5]
local keys = {}
for _, id in ipairs(live) do
  if kind == 'online' then table.insert(keys, p .. ':i:' .. id .. ':users')
  elseif kind == 'room' then table.insert(keys, p .. ':i:' .. id .. ':r:' .. name)
  elseif redis.call('SISMEMBER', p .. ':i:' .. id .. ':users', name) == 1 then return {name} end
end
if kind == 'user' or #keys == 0 then return {} end
return redis.call('SUNION', unpack(keys))
";

/// ARGV[3] me, ARGV[4] the payload (`<sender>\n<frame>`), then the users. Publishes the payload, addressed
/// to the users online there, on the channel of each other live instance where one of them is online.
const DIRECT: &str = r"
local me, payload = ARGV[3], ARGV[4]
for _, id in ipairs(live) do
  if id ~= me then
    local set, found = p .. ':i:' .. id .. ':users', {}
    for i = 5, #ARGV do
      if redis.call('SISMEMBER', set, ARGV[i]) == 1 then found[#found + 1] = ARGV[i] end
    end
    if #found > 0 then
      redis.call('PUBLISH', p .. ':instance:' .. id, table.concat(found, '\n') .. '\n\n' .. payload)
    end
  end
end
return 0
";

/// The scripts, loaded once per instance.
pub struct Scripts {
    memberships: Script,
    activity: Script,
    direct: Script,
    heartbeat: Script,
    query: Script,
}

impl std::fmt::Debug for Scripts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Scripts")
    }
}

/// A user coming into or going from a room on this instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Membership {
    Join,
    Leave,
}

impl From<Membership> for PresenceStatus {
    fn from(membership: Membership) -> Self {
        match membership {
            Membership::Join => Self::Join,
            Membership::Leave => Self::Leave,
        }
    }
}

/// Presence calls for one instance.
#[derive(Debug)]
pub struct Presence {
    pub names: Names,
    pub me: String,
    prefix: String,
    /// Two heartbeat periods: an instance silent for longer is gone.
    live_window_ms: u64,
    /// How long this instance's keys outlive its last heartbeat (time for a survivor to reap them).
    ttl_ms: u64,
    scripts: Scripts,
}

/// A cluster presence question, as [`Presence::query`] asks it.
pub enum Lookup<'a> {
    Online,
    Room(&'a str),
    User(&'a str),
}

impl Presence {
    pub fn new(prefix: &str, me: &str, heartbeat: std::time::Duration) -> Self {
        let live_window_ms = 2 * u64::try_from(heartbeat.as_millis()).unwrap_or(u64::MAX / 4);
        let script = |body: &str| Script::new(&format!("{LIVE}{body}"));
        let scripts = Scripts {
            memberships: script(MEMBERSHIPS),
            activity: script(ACTIVITY),
            heartbeat: script(HEARTBEAT),
            query: script(QUERY),
            direct: script(DIRECT),
        };
        let names = Names::new(prefix);
        Self {
            names,
            me: me.to_owned(),
            prefix: prefix.to_owned(),
            live_window_ms,
            ttl_ms: 2 * live_window_ms,
            scripts,
        }
    }

    /// Applies a batch of joins and leaves of this instance in one script call. Per change, in
    /// order: 0, or, when it was the user's first (join) or last (leave) presence in the room
    /// anywhere, 1 + the room's size after it.
    pub async fn apply_memberships(
        &self,
        conn: &mut MultiplexedConnection,
        changes: &[(Membership, Room, UserId)],
    ) -> RedisResult<Vec<i64>> {
        let mut invocation = self.scripts.memberships.prepare_invoke();
        invocation.arg(&self.prefix).arg(self.live_window_ms).arg(&self.me).arg(self.ttl_ms);
        for (membership, room, user) in changes {
            let kind = match membership {
                Membership::Join => "j",
                Membership::Leave => "l",
            };
            invocation.arg(kind).arg(room.as_ref()).arg(user.as_ref());
        }
        invocation.invoke_async(conn).await
    }

    /// Applies a batch of this instance's users going away (`Away`) or coming back (`Back`), in
    /// one script call. Per change, in order: whether the cluster's view of the user changed.
    pub async fn apply_activity(
        &self,
        conn: &mut MultiplexedConnection,
        changes: &[(UserId, PresenceStatus)],
    ) -> RedisResult<Vec<bool>> {
        let mut invocation = self.scripts.activity.prepare_invoke();
        invocation.arg(&self.prefix).arg(self.live_window_ms).arg(&self.me).arg(self.ttl_ms);
        for (user, status) in changes {
            invocation.arg(if *status == PresenceStatus::Away { "a" } else { "b" });
            invocation.arg(user.as_ref());
        }
        let answers: Vec<i64> = invocation.invoke_async(conn).await?;
        Ok(answers.into_iter().map(|answer| answer == 1).collect())
    }

    /// Loads the direct script, which pipelines run by hash (after every connect).
    pub async fn load_scripts(&self, conn: &mut MultiplexedConnection) -> RedisResult<()> {
        let _: String = self.scripts.direct.prepare_invoke().load_async(conn).await?;
        Ok(())
    }

    /// Adds to `pipe` (its reply ignored) the publishing of `payload` to the other instances where
    /// any of `users` is online, addressed to those of them online there.
    pub fn add_direct(&self, pipe: &mut redis::Pipeline, users: &[UserId], payload: &[u8]) {
        pipe.cmd("EVALSHA").arg(self.scripts.direct.get_hash()).arg(0);
        pipe.arg(&self.prefix).arg(self.live_window_ms).arg(&self.me).arg(payload);
        for user in users {
            pipe.arg(user.as_ref());
        }
        pipe.ignore();
    }

    /// Renews this instance and reaps stale ones: whether this instance's records survived, and the
    /// `(room, user)` pairs that left with a reaped instance.
    pub async fn heartbeat(
        &self,
        conn: &mut MultiplexedConnection,
    ) -> RedisResult<(bool, Vec<(String, String)>)> {
        let mut invocation = self.scripts.heartbeat.prepare_invoke();
        invocation.arg(&self.prefix).arg(self.live_window_ms).arg(&self.me).arg(self.ttl_ms);
        let reply: Vec<redis::Value> = invocation.invoke_async(conn).await?;
        let mut values = reply.into_iter();
        let exists = matches!(values.next(), Some(redis::Value::Int(1)));
        let strings: Vec<String> =
            values.filter_map(|value| redis::from_redis_value(value).ok()).collect();
        let gone = strings.chunks_exact(2).map(|pair| (pair[0].clone(), pair[1].clone())).collect();
        Ok((exists, gone))
    }

    /// Users matching `lookup` on every live instance, sorted.
    pub async fn query(
        &self,
        conn: &mut MultiplexedConnection,
        lookup: Lookup<'_>,
    ) -> RedisResult<Vec<String>> {
        let (kind, name) = match lookup {
            Lookup::Online => ("online", ""),
            Lookup::Room(room) => ("room", room),
            Lookup::User(user) => ("user", user),
        };
        let mut invocation = self.scripts.query.prepare_invoke();
        invocation.arg(&self.prefix).arg(self.live_window_ms).arg(&self.me).arg(kind).arg(name);
        let mut users: Vec<String> = invocation.invoke_async(conn).await?;
        users.sort_unstable();
        Ok(users)
    }

    /// Writes this instance's whole local presence again (after connecting, or after Redis lost it),
    /// replacing whatever Redis held for it.
    pub async fn register<'a>(
        &self,
        conn: &mut MultiplexedConnection,
        users: impl Iterator<Item = &'a str>,
        rooms: impl Iterator<Item = (&'a str, Vec<&'a str>)>,
    ) -> RedisResult<()> {
        let (users_key, rooms_key) = (self.names.users_of(&self.me), self.names.rooms_of(&self.me));
        let old_rooms: Vec<String> =
            redis::cmd("SMEMBERS").arg(&rooms_key).query_async(conn).await?;
        let mut pipe = redis::pipe();
        pipe.del(&users_key).ignore().del(&rooms_key).ignore();
        // Who was away is not kept: the users count as there until they go away again.
        pipe.del(self.names.away_of(&self.me)).ignore();
        for room in &old_rooms {
            pipe.del(self.names.room_members_of(&self.me, room)).ignore();
        }
        let users: Vec<&str> = users.collect();
        if !users.is_empty() {
            pipe.sadd(&users_key, users).ignore().pexpire(&users_key, self.ttl_ms as i64).ignore();
        }
        for (room, members) in rooms {
            let key = self.names.room_members_of(&self.me, room);
            pipe.sadd(&rooms_key, room)
                .ignore()
                .sadd(&key, members)
                .ignore()
                .pexpire(&key, self.ttl_ms as i64)
                .ignore();
        }
        pipe.pexpire(&rooms_key, self.ttl_ms as i64).ignore();
        pipe.query_async::<()>(conn).await
    }

    /// Marks this instance online or offline for `user` (its user set; offline, not away either).
    pub fn user_command(&self, pipe: &mut redis::Pipeline, user: &str, online: bool) {
        let key = self.names.users_of(&self.me);
        if online {
            pipe.sadd(&key, user).ignore().pexpire(&key, self.ttl_ms as i64).ignore();
        } else {
            pipe.srem(&key, user).ignore().srem(self.names.away_of(&self.me), user).ignore();
        }
    }
}
