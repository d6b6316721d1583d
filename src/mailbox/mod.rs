//! The mailbox: the vocabulary that readers, sessions, shards, the hub and the relay exchange.
//!
//! Owns: the message types that cross a channel between two owners (a reader or session and its
//! shard, a shard and the others, the HTTP API or the relay and the shards), and the answers to
//! queries. Plain data. Must not: import any of the modules that send or receive these messages
//! (reader, session, shard, hub, router, cluster, http). It sits below all of them, so they talk through it as peers, the way
//! rumqttd's connections and router share their event types. A room stream's words are in
//! `stream.rs`, the reads of a shard's cache in `query.rs`.

mod query;
mod stream;

pub use query::{ConnInfo, LocalPresence, Query, UserStatus};
pub use stream::{
    LoadedStream, Origin, Replay, ReplayRequest, Stamp, StreamSlice, ToSequence, Unanswered,
};

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::oneshot;

use crate::auth::Permissions;
use crate::close::CloseReason;
use crate::lane::Lane;
use crate::protocol::{ClientRequest, Frame, PresenceStatus, Room, Since, UserId};

/// A connection's id, unique within the process.
pub type ConnId = u64;

/// Where a shard puts a connection's frames. Both are bounded and never wait; a full one evicts.
#[derive(Debug, Clone)]
pub enum Outbox {
    /// A queue that the connection's session writes from (TLS, or `--fast-path false`).
    Queue(flume::Sender<Frame>),
    /// The connection's socket itself, written by the shard (plain TCP).
    Lane(Arc<Lane>),
}

impl Outbox {
    /// Frames waiting in it (for the metrics; a glance, not a promise).
    pub fn queued(&self) -> usize {
        match self {
            Self::Queue(queue) => queue.len(),
            Self::Lane(lane) => lane.queued(),
        }
    }
}

impl From<flume::Sender<Frame>> for Outbox {
    fn from(queue: flume::Sender<Frame>) -> Self {
        Self::Queue(queue)
    }
}

/// Who a publish is for.
#[derive(Debug, Clone)]
pub enum Target {
    Room(Room),
    /// Every connection (device) of one user.
    User(UserId),
    /// Every connection of each listed user.
    Users(Vec<UserId>),
    /// Every connection.
    All,
}

/// A shard's answer to a new connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enrolment {
    /// The connection is visible to publishers and in its URL's rooms: answer `101`.
    Accepted,
    /// The shard is shutting down.
    ShuttingDown,
    /// Its user already has `--max-conns-per-user` connections on this instance.
    UserFull,
    /// Its user is banned from the instance until then (`None`: until unbanned).
    Banned(Option<crate::protocol::Millis>),
}

/// From a connection's reader or session to its shard.
#[derive(Debug)]
pub enum Command {
    /// A new connection; the sender is answered once it is visible to publishers, or refused.
    /// Boxed: it is rare and large, and every command (and every session's pending send) is as big as
    /// the largest variant.
    Register(Box<Registration>, oneshot::Sender<Enrolment>),
    Request {
        conn: ConnId,
        request: ClientRequest,
    },
    /// The reader or session verified a `refresh`: the new token's permissions replace the old ones, and the
    /// client gets its ack in order with the connection's other replies.
    Reauthorize {
        conn: ConnId,
        id: Option<String>,
        permissions: Permissions,
    },
    Unregister {
        conn: ConnId,
    },
}

/// A new connection, registered before its `101 Switching Protocols` is sent.
#[derive(Debug)]
pub struct Registration {
    pub conn: ConnId,
    pub user: UserId,
    /// Rooms named in the connect URL, joined as part of registering.
    pub rooms: Vec<Room>,
    /// Rooms of the connect URL to resume (`?since=room:seq:epoch`), each answered with `joined`.
    pub since: Vec<(Room, Since)>,
    pub outbox: Outbox,
    /// Tells the connection's session to close (`None` on a lane: the shard asks the lane).
    pub closer: Option<oneshot::Sender<CloseReason>>,
    pub remote: SocketAddr,
    pub permissions: Permissions,
}

/// From other shards, the HTTP API, the relay or the server to a shard.
#[derive(Debug)]
pub enum Delivery {
    /// Deliver `frame` to the local connections that `target` selects.
    Publish {
        target: Target,
        frame: Frame,
        accepted_at: Instant,
    },
    /// One frame for one local connection (an answer computed off the shard), queued through the
    /// shard's output like any other, so a full outbox evicts.
    Reply {
        conn: ConnId,
        frame: Frame,
    },
    /// The writer committed a chat of `user` sent on `conn`: told to the shard its completion
    /// names, a room message's home (which passes the ack on as `Stored` after its own fan-out of
    /// the message, and in cluster mode once it heard it back).
    Committed {
        conn: ConnId,
        user: UserId,
        room: Option<Room>,
        id: String,
        seq: Option<u64>,
    },
    /// The writer committed a chat to everyone sent on this shard: publish it if this is the
    /// `first` time it is stored (not a resend of one stored before), then ack it when it has an
    /// id (its connection, sender and id).
    EveryoneCommitted {
        frame: Frame,
        acked: Option<(ConnId, UserId, String)>,
        first: bool,
    },
    /// The writer committed a room message homed on this shard that nobody waits for: the home
    /// publishes what it held up to `seq`.
    RoomCommitted {
        room: Room,
        seq: u64,
    },
    /// At the sender's shard: a chat of `user` sent on `conn` is in (committed with a store,
    /// numbered without one): ack it, with its seq when it has one (and any retry waiting for it).
    Stored {
        conn: ConnId,
        user: UserId,
        room: Option<Room>,
        id: String,
        seq: Option<u64>,
    },
    /// A room message for this shard, the room's home, to stamp with its seq and publish.
    Sequence(Box<ToSequence>),
    /// Cluster mode: the broker numbered a room message homed here (`Err`: it could not).
    Stamped {
        item: Box<ToSequence>,
        /// The seq and epoch it was given (`Err`: it could not be numbered).
        stamped: Result<Stamp, Unanswered>,
    },
    /// Cluster mode: a numbered room message from the cluster (this instance's own too), for the
    /// room's home, which keeps the window and fans it out here.
    Sequenced {
        room: Room,
        seq: u64,
        epoch: Arc<str>,
        frame: Frame,
    },
    /// Cluster mode: the instance now listens to `room` afresh, so what its home knew of the
    /// room's stream has a hole behind it.
    StreamReset {
        room: Room,
    },
    /// A numbered room message from its home, for this shard's members (a member whose resume is
    /// in flight, or whose replay already held it, is skipped).
    RoomMessage {
        room: Room,
        seq: u64,
        frame: Frame,
        accepted_at: Instant,
    },
    /// The instance listens to `room` (cluster mode: its subscription is confirmed), so a join
    /// of `conn` can be acked, or resumed after `since`.
    Subscribed {
        conn: ConnId,
        id: Option<String>,
        room: Room,
        since: Option<Since>,
    },
    /// Cluster mode: the instance listens to the rooms a new connection joined from its URL, so
    /// its registration is confirmed (the HTTP side answers `101`).
    Registered(oneshot::Sender<Enrolment>),
    /// An HTTP publish's message is committed: the room's home answers with its seq once its
    /// fan-out of the message is out.
    Numbered {
        room: Room,
        reply: oneshot::Sender<Option<u64>>,
        seq: u64,
    },
    /// The room's home could not take the chat: the store is full or down (`why`: `None`, the
    /// sender hears `unavailable`) or the room's rules refuse it. The sender's shard answers and
    /// forgets the id.
    Refused {
        conn: ConnId,
        user: UserId,
        room: Room,
        id: String,
        why: Option<Box<crate::rules::Refusal>>,
    },
    /// A moderation action for this shard: a room's rules (the room's home), a kick or an
    /// instance ban (the user's shard).
    Notice(Box<crate::rules::Notice>),
    /// Everything in force (at start-up, and after Redis came back): the shard keeps its part in
    /// place of what it had.
    InForce(std::sync::Arc<crate::rules::InForce>),
    /// A member asks the room's home for the messages after a seq (resume).
    Replay(Box<ReplayRequest>),
    /// The store's part of a replay, back at the room's home: the messages up to `upto` (`Err`:
    /// the store could not say).
    ReplayLoaded {
        request: Box<ReplayRequest>,
        upto: u64,
        stored: Result<Vec<(u64, Frame)>, Unanswered>,
    },
    /// Cluster mode: the broker's read of a room's stream for a resume, back at the room's home.
    StreamRead {
        request: Box<ReplayRequest>,
        read: Result<StreamSlice, Unanswered>,
    },
    /// The home's answer to a replay, at the member's shard: ack the join, send the messages.
    Replayed {
        conn: ConnId,
        room: Room,
        id: Option<String>,
        replay: Replay,
    },
    /// Where a room's stream stands in the store (`Err`: the store could not say).
    StreamLoaded {
        room: Room,
        stream: Result<LoadedStream, Unanswered>,
    },
    /// The store decided whether `conn` may join `room`: `Ok` joins it and acks `id`, `Err` answers
    /// with the error frame.
    JoinDecided {
        conn: ConnId,
        id: Option<String>,
        room: Room,
        /// A resuming join: replay after this point once joined.
        since: Option<Since>,
        decision: Result<(), Frame>,
    },
    /// `user` joined or left `room` (its first or last connection there; cluster mode: anywhere), for
    /// the room's home shard, which coalesces the room's presence events. `members`: the room's size
    /// after it, when the sender knows it (the cluster's count).
    PresenceChange {
        room: Room,
        user: UserId,
        status: PresenceStatus,
        members: Option<usize>,
    },
    /// The message a chat replies to was looked up: the chat goes on, or is refused with why.
    ReplyChecked {
        conn: ConnId,
        id: Option<String>,
        chat: Box<crate::protocol::Chat>,
        refused: Option<(crate::protocol::ErrorCode, String)>,
    },
    /// To the room's home shard: `user` started (or renewed) or stopped typing in `room`.
    Typing {
        room: Room,
        user: UserId,
        typing: bool,
    },
    /// `user` is no longer a participant of `room`: every connection of it leaves the room.
    Kick {
        user: UserId,
        room: Room,
    },
    Query(Query),
    /// Close every connection with 1001, then stop once all are gone.
    /// The first step of a graceful shutdown: take no new chat (`unavailable`: resend after
    /// reconnecting), and answer once every chat already taken is acked (or refused), so the
    /// connections close with nothing of theirs in flight.
    Quiesce(oneshot::Sender<()>),
    Shutdown,
}

/// The receiving ends of a shard's two inboxes.
#[derive(Debug)]
pub struct Inbox {
    /// From the shard's reader and sessions; bounded, so a flooding client is slowed by TCP backpressure.
    pub commands: flume::Receiver<Command>,
    /// From everyone else; unbounded, so shards never wait on each other and cannot deadlock.
    pub deliveries: tokio::sync::mpsc::UnboundedReceiver<Delivery>,
}
