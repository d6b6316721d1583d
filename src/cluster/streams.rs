//! Room streams in Redis: the cluster-wide numbering of room messages, and the recent messages a
//! resume reads.
//!
//! Owns: the stamp and read scripts and the calls that run them. Must not: keep state; the relay
//! calls these and hands the answers to the room's home shard.
//!
//! A room's stream is a hash (`<p>:s:<room>`: `seq`, `epoch`) and a capped Redis stream of its last
//! batches of messages (`<p>:sx:<room>`, entry id `<first seq>-1`, at least `--recovery-window`
//! entries kept). The stamp script takes a batch of one room's
//! messages; it increments the seq, completes each frame with its number, appends it to the capped
//! stream and publishes the batch, in one atomic step: every instance sees a room's messages in seq
//! order on the room's channel, and the stored and delivered message carry the same number. A Redis that lost the hash starts the stream again: a new epoch,
//! from seq 1.

use redis::aio::MultiplexedConnection;
use redis::{RedisResult, Script, Value};

use super::wire::Names;
use crate::mailbox::{Stamp, StreamSlice};
use crate::protocol::{Frame, STAMP_MID, STAMP_TAIL};

/// ARGV: 1 hash, 2 capped stream, 3 channel, 4 sender, 5 mid, 6 tail, 7 the epoch to start with
/// when the stream is new, 8 the stream's cap, 9 how many messages, 10 the prefix of the room's
/// sent-id keys, 11 how long a sent id is remembered (ms), then each message's frame head, then each
/// message's sent id (`sender\nid`, or empty when the client gave no id).
/// A message whose sent id is remembered is a resend: it keeps the seq it was given and is neither
/// numbered nor published again. The others are numbered in order, appended to the capped stream
/// and published in one payload (frames separated by 0x1E, which valid JSON never holds raw), and
/// their ids remembered. Returns `{epoch, {seq, ...}}`, a resend's seq negated.
const STAMP: &str = r"
local n = tonumber(ARGV[9])
local seqs, fresh, firsts = {}, 0, {}
for i = 1, n do
  local sent = ARGV[11 + n + i]
  local before = sent ~= '' and (firsts[sent] or redis.call('GET', ARGV[10] .. sent))
  if before then
    seqs[i] = before
  else
    fresh = fresh + 1
    seqs[i] = false
    if sent ~= '' then firsts[sent] = 'batch:' .. i end
  end
end
local epoch = redis.call('HGET', ARGV[1], 'epoch')
if not epoch then
  epoch = ARGV[7]
  redis.call('HSET', ARGV[1], 'epoch', epoch)
  redis.call('DEL', ARGV[2])
end
local out = {}
if fresh > 0 then
  local first = redis.call('HINCRBY', ARGV[1], 'seq', fresh) - fresh + 1
  local frames, seq = {}, first
  for i = 1, n do
    if not seqs[i] then
      out[i] = seq
      frames[#frames + 1] = ARGV[11 + i] .. seq .. ARGV[5] .. epoch .. ARGV[6]
      local sent = ARGV[11 + n + i]
      if sent ~= '' then redis.call('SET', ARGV[10] .. sent, seq, 'PX', ARGV[11]) end
      seq = seq + 1
    end
  end
  local batch = table.concat(frames, '\30')
  redis.call('XADD', ARGV[2], 'MAXLEN', '~', ARGV[8], first .. '-1', 'f', batch)
  redis.call('PUBLISH', ARGV[3], ARGV[4] .. '#' .. first .. '#' .. epoch .. '\n' .. batch)
end
for i = 1, n do
  if seqs[i] then
    local at = string.match(seqs[i], '^batch:(%d+)$')
    if at then out[i] = -out[tonumber(at)] else out[i] = -tonumber(seqs[i]) end
  end
end
return {epoch, out}
";

/// The stamps of one script call's messages, in order.
pub fn stamps((epoch, seqs): (String, Vec<i64>)) -> Vec<Stamp> {
    let epoch: std::sync::Arc<str> = epoch.into();
    let stamp = |seq: i64| Stamp { seq: seq.unsigned_abs(), epoch: epoch.clone(), again: seq < 0 };
    seqs.into_iter().map(stamp).collect()
}

/// What separates the frames of one numbered payload.
pub const FRAME_SEPARATOR: char = '\x1e';

/// ARGV: 1 hash, 2 capped stream, 3 the resume point's seq, 4 most entries. Returns `{}` for a room
/// without a stream, else `{epoch, last seq, first1, batch1, first2, batch2, ...}`: the batches from
/// the one that holds the message after the resume point (or the oldest kept) on.
const READ: &str = r"
local epoch = redis.call('HGET', ARGV[1], 'epoch')
if not epoch then return {} end
local out = {epoch, redis.call('HGET', ARGV[1], 'seq')}
local holding = redis.call('XREVRANGE', ARGV[2], (tonumber(ARGV[3]) + 1) .. '-1', '-', 'COUNT', 1)
local from = '-'
if #holding > 0 then from = holding[1][1] end
for _, entry in ipairs(redis.call('XRANGE', ARGV[2], from, '+', 'COUNT', ARGV[4])) do
  table.insert(out, string.match(entry[1], '^(%d+)'))
  table.insert(out, entry[2][2])
end
return out
";

/// The stream calls of one instance.
pub struct RoomStreams {
    names: Names,
    me: String,
    /// How many recent messages a room's capped stream keeps at least (`--recovery-window`).
    cap: usize,
    /// How long a sender's id is remembered in a room (`--dedup-window`), in milliseconds.
    dedup_ms: u64,
    stamp: Script,
    read: Script,
}

impl std::fmt::Debug for RoomStreams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoomStreams").field("cap", &self.cap).finish()
    }
}

impl RoomStreams {
    pub fn new(names: Names, me: &str, cap: usize, dedup_window: std::time::Duration) -> Self {
        let (stamp, read) = (Script::new(STAMP), Script::new(READ));
        let dedup_ms = u64::try_from(dedup_window.as_millis()).unwrap_or(u64::MAX).max(1);
        Self { names, me: me.to_owned(), cap: cap.max(1), dedup_ms, stamp, read }
    }

    /// Loads the stamp script, which pipelines run by hash (after every connect).
    pub async fn load_scripts(&self, conn: &mut MultiplexedConnection) -> RedisResult<()> {
        let _: String = self.stamp.prepare_invoke().load_async(conn).await?;
        Ok(())
    }

    /// Adds to `pipe` the numbering and publishing of a room's messages, in order; its reply is
    /// read by [`stamps`]. Each head is a frame up to its seq
    /// ([`crate::protocol::room_message_parts`]); each sent id is `sender\nid` for a chat whose
    /// client gave the id (a resend of it is recognised), empty otherwise.
    pub fn add_stamp(
        &self,
        pipe: &mut redis::Pipeline,
        room: &str,
        (heads, sent): (&[String], &[String]),
        new_epoch: &str,
    ) {
        pipe.cmd("EVALSHA").arg(self.stamp.get_hash()).arg(0);
        pipe.arg(self.names.stream_of(room))
            .arg(self.names.recent_of(room))
            .arg(self.names.room_channel(room))
            .arg(&self.me)
            .arg(STAMP_MID)
            .arg(STAMP_TAIL)
            .arg(new_epoch)
            .arg(self.cap)
            .arg(heads.len())
            .arg(self.names.sent_of(room))
            .arg(self.dedup_ms)
            .arg(heads)
            .arg(sent);
    }

    /// Where the room's stream stands, and the messages after `after` that Redis still keeps.
    pub async fn read(
        &self,
        conn: &mut MultiplexedConnection,
        room: &str,
        after: u64,
    ) -> RedisResult<StreamSlice> {
        let mut invocation = self.read.prepare_invoke();
        invocation
            .arg(self.names.stream_of(room))
            .arg(self.names.recent_of(room))
            .arg(after)
            .arg(2 * self.cap + 16);
        let reply: Vec<Value> = invocation.invoke_async(conn).await?;
        let strings: Vec<String> = redis::from_redis_value(Value::Array(reply))?;
        let mut strings = strings.into_iter();
        let (Some(epoch), Some(last)) = (strings.next(), strings.next()) else {
            return Ok(StreamSlice { stream: None, messages: Vec::new() });
        };
        let last = last.parse().unwrap_or(0);
        let rest: Vec<String> = strings.collect();
        let mut messages = Vec::new();
        for pair in rest.chunks_exact(2) {
            let Ok(first) = pair[0].parse::<u64>() else { continue };
            let frames = pair[1].split(FRAME_SEPARATOR).zip(first..);
            messages
                .extend(frames.filter(|(_, seq)| *seq > after).map(|(f, s)| (s, Frame::from(f))));
        }
        Ok(StreamSlice { stream: Some((epoch, last)), messages })
    }
}
