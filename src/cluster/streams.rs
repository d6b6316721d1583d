//! Room streams in Redis: the cluster-wide numbering of room messages, and the recent messages a
//! resume reads.
//!
//! Owns: the stamp and read scripts and the calls that run them. Must not: keep state; the relay
//! calls these and hands the answers to the room's home shard.
//!
//! A room's stream is a hash (`<p>:s:<room>`: `seq`, `epoch`) and a capped Redis stream of its last
//! messages (`<p>:sx:<room>`, entry id `<seq>-1`). The stamp script increments the seq, completes the
//! frame with it, appends it to the capped stream and publishes it, in one atomic step: every
//! instance sees a room's messages in seq order on the room's channel, and the stored and delivered
//! message carry the same number. A Redis that lost the hash starts the stream again: a new epoch,
//! from seq 1.

use redis::aio::MultiplexedConnection;
use redis::{RedisResult, Script, Value};

use super::wire::Names;
use crate::mailbox::StreamSlice;
use crate::protocol::{Frame, STAMP_MID, STAMP_TAIL};

/// ARGV: 1 hash, 2 capped stream, 3 channel, 4 sender, 5 frame head, 6 mid, 7 tail, 8 the epoch to
/// start with when the stream is new, 9 the stream's cap. Returns `{seq, epoch}`.
const STAMP: &str = r"
local seq = redis.call('HINCRBY', ARGV[1], 'seq', 1)
local epoch = redis.call('HGET', ARGV[1], 'epoch')
if not epoch then
  epoch = ARGV[8]
  redis.call('HSET', ARGV[1], 'epoch', epoch)
  redis.call('DEL', ARGV[2])
end
local frame = ARGV[5] .. seq .. ARGV[6] .. epoch .. ARGV[7]
redis.call('XADD', ARGV[2], 'MAXLEN', '~', ARGV[9], seq .. '-1', 'f', frame)
redis.call('PUBLISH', ARGV[3], ARGV[4] .. '#' .. seq .. '#' .. epoch .. '\n' .. frame)
return {seq, epoch}
";

/// ARGV: 1 hash, 2 capped stream, 3 the resume point's seq, 4 most entries. Returns `{}` for a room
/// without a stream, else `{epoch, last seq, seq1, frame1, seq2, frame2, ...}` after the point.
const READ: &str = r"
local epoch = redis.call('HGET', ARGV[1], 'epoch')
if not epoch then return {} end
local out = {epoch, redis.call('HGET', ARGV[1], 'seq')}
local from = (tonumber(ARGV[3]) + 1) .. '-1'
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

    /// Adds to `pipe` the numbering and publishing of one room message; its reply is
    /// `(seq, epoch)`. `head` is the frame up to its seq ([`crate::protocol::room_message_parts`]).
    pub fn add_stamp(&self, pipe: &mut redis::Pipeline, room: &str, head: &str, new_epoch: &str) {
        pipe.cmd("EVALSHA").arg(self.stamp.get_hash()).arg(0);
        pipe.arg(self.names.stream_of(room))
            .arg(self.names.recent_of(room))
            .arg(self.names.room_channel(room))
            .arg(&self.me)
            .arg(head)
            .arg(STAMP_MID)
            .arg(STAMP_TAIL)
            .arg(new_epoch)
            .arg(self.cap);
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
        let messages = rest
            .chunks_exact(2)
            .filter_map(|pair| Some((pair[0].parse().ok()?, Frame::from(pair[1].as_str()))))
            .collect();
        Ok(StreamSlice { stream: Some((epoch, last)), messages })
    }
}
