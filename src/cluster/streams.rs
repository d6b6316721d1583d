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
use crate::mailbox::StreamSlice;
use crate::protocol::{Frame, STAMP_MID, STAMP_TAIL};

/// ARGV: 1 hash, 2 capped stream, 3 channel, 4 sender, 5 mid, 6 tail, 7 the epoch to start with
/// when the stream is new, 8 the stream's cap, 9 how many messages, then each message's frame head.
/// Numbers them in order, appends each to the capped stream and publishes them in one payload
/// (frames separated by 0x1E, which valid JSON never holds raw). Returns `{first seq, epoch}`.
const STAMP: &str = r"
local n = tonumber(ARGV[9])
local last = redis.call('HINCRBY', ARGV[1], 'seq', n)
local epoch = redis.call('HGET', ARGV[1], 'epoch')
if not epoch then
  epoch = ARGV[7]
  redis.call('HSET', ARGV[1], 'epoch', epoch)
  redis.call('DEL', ARGV[2])
end
local first = last - n + 1
local frames = {}
for i = 1, n do
  local seq = first + i - 1
  frames[i] = ARGV[9 + i] .. seq .. ARGV[5] .. epoch .. ARGV[6]
end
local batch = table.concat(frames, '\30')
redis.call('XADD', ARGV[2], 'MAXLEN', '~', ARGV[8], first .. '-1', 'f', batch)
redis.call('PUBLISH', ARGV[3], ARGV[4] .. '#' .. first .. '#' .. epoch .. '\n' .. batch)
return {first, epoch}
";

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
    stamp: Script,
    read: Script,
}

impl std::fmt::Debug for RoomStreams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoomStreams").field("cap", &self.cap).finish()
    }
}

impl RoomStreams {
    pub fn new(names: Names, me: &str, cap: usize) -> Self {
        let (stamp, read) = (Script::new(STAMP), Script::new(READ));
        Self { names, me: me.to_owned(), cap: cap.max(1), stamp, read }
    }

    /// Loads the stamp script, which pipelines run by hash (after every connect).
    pub async fn load_scripts(&self, conn: &mut MultiplexedConnection) -> RedisResult<()> {
        let _: String = self.stamp.prepare_invoke().load_async(conn).await?;
        Ok(())
    }

    /// Adds to `pipe` the numbering and publishing of a room's messages, in order; its reply is
    /// `(first seq, epoch)`. Each head is a frame up to its seq
    /// ([`crate::protocol::room_message_parts`]).
    pub fn add_stamp(
        &self,
        pipe: &mut redis::Pipeline,
        room: &str,
        heads: &[String],
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
            .arg(heads);
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
