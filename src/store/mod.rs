//! The store: every message, room and participant on disk, behind one small seam.
//!
//! Owns: the [`Engine`] contract (one database connection, used by one thread at a time), the chat
//! operations written once on top of it ([`ops`]), the migrations, and the two threads' worth of
//! ownership around it: the writer ([`writer`]) alone writes, the read pool ([`read_pool`]) alone reads.
//! Everyone else holds a [`Store`] handle and sends them typed messages.
//! May touch: the router, to hand a commit's outcome back to the shard that asked. Must not: make a
//! shard or a session wait: a message is handed over with `try_send` into a bounded queue, and a
//! full queue or a database that is down answers `unavailable` at once.
//!
//! Engines: SQLite (embedded, the default, `sqlite://PATH`) and PostgreSQL (`postgres://...`, for
//! production and clusters). `--database-url none` runs without a store.

pub mod attachments;
pub mod handle;
mod jobs;
mod messages;
pub mod migrations;
pub mod moderation;
pub mod ops;
mod postgres;
mod read_pool;
pub mod reads;
mod room_events;
pub mod search;
mod sqlite;
mod turns;
mod writer;

use crate::protocol::{Millis, Room, UserId};

pub use crate::config::{DatabaseUrl, StoreSettings};
pub use handle::{Refused, Store, Unavailable, WriteRefusal};
pub use jobs::Completion;
pub use postgres::without_password;
pub use sqlite::backup;

/// Why the store could not do something.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The database could not be reached or refused the statement; worth retrying later.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// The database aborted the transaction as a deadlock's victim, or could not serialize it:
    /// nothing is wrong with the database or the writes, and the same transaction is retried at
    /// once.
    #[error("transaction conflict: {0}")]
    Conflict(String),
    /// A stored value that does not fit the schema (a bug or a foreign write), not worth retrying.
    #[error("unexpected data in the database: {0}")]
    Corrupt(String),
}

/// One value bound to or read from a statement. The SQL is written once, with `?1..?N`
/// placeholders, and each engine binds these.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Int(Option<i64>),
    Text(Option<String>),
    /// A blob (an attachment's bytes); read back as such from a BLOB or BYTEA column.
    Bytes(Option<Vec<u8>>),
}

impl Value {
    pub fn bytes(self) -> Result<Vec<u8>, StoreError> {
        match self {
            Self::Bytes(Some(value)) => Ok(value),
            other => Err(StoreError::Corrupt(format!("expected bytes, found {other:?}"))),
        }
    }

    pub fn opt_bytes(self) -> Result<Option<Vec<u8>>, StoreError> {
        match self {
            Self::Bytes(value) => Ok(value),
            Self::Text(None) | Self::Int(None) => Ok(None),
            other => Err(StoreError::Corrupt(format!("expected bytes, found {other:?}"))),
        }
    }

    pub fn int(&self) -> Result<i64, StoreError> {
        match self {
            Self::Int(Some(value)) => Ok(*value),
            other => Err(StoreError::Corrupt(format!("expected an integer, found {other:?}"))),
        }
    }

    pub fn opt_int(&self) -> Result<Option<i64>, StoreError> {
        match self {
            Self::Int(value) => Ok(*value),
            Self::Text(None) => Ok(None),
            other => Err(StoreError::Corrupt(format!("expected an integer, found {other:?}"))),
        }
    }

    pub fn text(&self) -> Result<String, StoreError> {
        match self {
            Self::Text(Some(value)) => Ok(value.clone()),
            other => Err(StoreError::Corrupt(format!("expected text, found {other:?}"))),
        }
    }

    pub fn opt_text(&self) -> Result<Option<String>, StoreError> {
        match self {
            Self::Text(value) => Ok(value.clone()),
            Self::Int(None) => Ok(None),
            other => Err(StoreError::Corrupt(format!("expected text, found {other:?}"))),
        }
    }
}

/// A row as read: one [`Value`] per selected column.
pub type Row = Vec<Value>;

/// One connection to a database.
///
/// Contract (checked for every engine by one conformance suite, `tests/it/store.rs`):
/// - `execute` and `query` run one statement written with `?1..?N` placeholders; `query` returns
///   every row, each with one value per selected column, integers as `Value::Int` and text as
///   `Value::Text` (`None` for SQL NULL).
/// - Between `begin` and `commit` every statement belongs to one transaction; `commit` returns only
///   once the transaction is durable, and a failed commit or a `rollback` leaves nothing of it.
/// - `insert_messages` stores each message unless one with the same (room, sender, id) is stored
///   already (then that one is skipped, not an error), inside the open transaction, and says of
///   each, in order, whether it stored it (of the same message twice in one call, the first).
/// - Any error means the connection may be broken: the owner drops it and opens a new one.
pub trait Engine: Send {
    fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64, StoreError>;
    fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>, StoreError>;
    fn begin(&mut self) -> Result<(), StoreError>;
    fn commit(&mut self) -> Result<(), StoreError>;
    fn rollback(&mut self) -> Result<(), StoreError>;
    fn insert_messages(&mut self, messages: &[&NewMessage]) -> Result<Vec<bool>, StoreError>;
    /// The engine's name in logs and errors.
    fn name(&self) -> &'static str;
}

/// How the store reaches its database (the type is a setting, in `config`).
impl DatabaseUrl {
    /// Opens one connection (the writer's, or a reader's).
    pub fn connect(&self) -> Result<Box<dyn Engine>, StoreError> {
        match self {
            Self::None => Err(StoreError::Unavailable("no database configured".into())),
            Self::Sqlite(path) => Ok(Box::new(sqlite::Sqlite::open(path)?)),
            Self::Postgres(url) => Ok(Box::new(postgres::Postgres::connect(url)?)),
        }
    }

    /// A description safe for logs: the path, or the PostgreSQL URL without its password.
    pub fn describe(&self) -> String {
        match self {
            Self::None => "none".into(),
            Self::Sqlite(path) => format!("sqlite://{}", path.display()),
            Self::Postgres(url) => postgres::without_password(url),
        }
    }
}

/// The kinds of room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoomType {
    /// Any user the token allows may join; created by joining a name nobody has taken.
    Public,
    /// Only participants may join or read it.
    Private,
    /// Exactly two participants; named `dm:<a>:<b>` from the sorted pair.
    Direct,
}

impl RoomType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Public => "public",
            Self::Private => "private",
            Self::Direct => "direct",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "public" => Some(Self::Public),
            "private" => Some(Self::Private),
            "direct" => Some(Self::Direct),
            _ => None,
        }
    }
}

/// A participant's role in a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Owner,
    Moderator,
    Member,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Owner => "owner",
            Self::Moderator => "moderator",
            Self::Member => "member",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "owner" => Some(Self::Owner),
            "moderator" => Some(Self::Moderator),
            "member" => Some(Self::Member),
            _ => None,
        }
    }
}

/// A message to store, as the broker accepted it.
#[derive(Debug, Clone)]
pub struct NewMessage {
    /// The envelope `id`: the client's, or the UUID the server assigned.
    pub id: String,
    /// `None` for messages to users rather than a room; `_global` for messages to everyone.
    pub room: Option<Room>,
    pub sender: UserId,
    /// The envelope `type` (`chat`, `notification`, `system`; `message_edited`,
    /// `message_deleted` for a room event).
    pub kind: &'static str,
    /// The envelope `data`, as JSON.
    pub data: Box<str>,
    /// The envelope `timestamp`.
    pub created_at: Millis,
    /// For messages to users: who they were for, as JSON (`{"to":[...]}`).
    pub metadata: Option<String>,
    /// A room message's place in its room's stream, and the stream's name.
    pub stream: Option<(i64, std::sync::Arc<str>)>,
    /// A room event: the id of the message it changes (the writer applies the change with it).
    pub target: Option<String>,
}

/// A message as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    /// Its place in the store's order; history pages are cut by it.
    pub pos: i64,
    pub id: String,
    pub room: Option<String>,
    pub sender: String,
    pub kind: String,
    pub data: String,
    pub created_at: Millis,
    pub deleted_at: Option<Millis>,
    /// `(seq, epoch)` of a message in its room's stream.
    pub stream: Option<(i64, String)>,
    /// When its content was last edited.
    pub edited_at: Option<Millis>,
    /// The message it replies to (`data.reply_to`).
    pub reply_to: Option<String>,
}

/// A room as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomInfo {
    pub id: String,
    pub kind: RoomType,
    pub created_at: Millis,
    pub created_by: String,
    pub metadata: Option<String>,
}

/// A participant of a room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Participant {
    pub user: String,
    pub role: Role,
    pub joined_at: Millis,
}
