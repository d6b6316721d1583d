//! The SQLite engine (rusqlite, SQLite compiled in): the default store, one file, no server.
//!
//! Owns: one connection to the file. The file is in WAL mode, so the read pool read while the writer
//! writes; `synchronous = FULL`, so a commit has reached the disk when it returns (an ack after a
//! commit survives a power cut). Must not: be shared between threads (each owner opens its own).

use std::path::Path;
use std::time::Duration;

use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, ToSql};

use super::{Engine, NewMessage, Row, StoreError, Value};

/// How long a statement waits for another connection's write lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

pub struct Sqlite {
    conn: Connection,
}

fn unavailable(err: rusqlite::Error) -> StoreError {
    StoreError::Unavailable(format!("sqlite: {err}"))
}

impl Sqlite {
    /// Opens (creating when missing) the database file at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let conn = Connection::open(path)
            .map_err(|err| StoreError::Unavailable(format!("{}: {err}", path.display())))?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(unavailable)?;
        let mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))
            .map_err(|err| StoreError::Unavailable(format!("{}: {err}", path.display())))?;
        if !mode.eq_ignore_ascii_case("wal") {
            let why = format!("{}: cannot switch to WAL mode (got {mode})", path.display());
            return Err(StoreError::Unavailable(why));
        }
        // A page cache of 64 MiB (filled only as pages are used): the indexes of a table of millions
        // of messages stay in memory, so an insert or a history page rarely reads the disk.
        conn.execute_batch(
            "PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; PRAGMA cache_size = -65536; PRAGMA wal_autocheckpoint = 16384;",
        )
        .map_err(unavailable)?;
        Ok(Self { conn })
    }
}

/// Pages copied per step of a backup; between steps the writer may commit (WAL: it never waits).
const BACKUP_STEP_PAGES: std::ffi::c_int = 1024;

/// Copies the database at `source` to a new file `target` while others write to it, with SQLite's
/// online backup API: the copy is the database as one commit left it. Returns the pages copied.
pub fn backup(source: &Path, target: &Path) -> Result<u64, StoreError> {
    use rusqlite::OpenFlags;
    let failed =
        |what: &str, err: rusqlite::Error| StoreError::Unavailable(format!("{what}: {err}"));
    if target.exists() {
        let why = format!("{} exists: a backup never overwrites", target.display());
        return Err(StoreError::Unavailable(why));
    }
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let from = Connection::open_with_flags(source, flags)
        .map_err(|err| failed(&source.display().to_string(), err))?;
    from.busy_timeout(BUSY_TIMEOUT).map_err(unavailable)?;
    let mut to =
        Connection::open(target).map_err(|err| failed(&target.display().to_string(), err))?;
    let copy =
        rusqlite::backup::Backup::new(&from, &mut to).map_err(|err| failed("backup", err))?;
    copy.run_to_completion(BACKUP_STEP_PAGES, Duration::ZERO, None)
        .map_err(|err| failed("backup", err))?;
    Ok(u64::try_from(copy.progress().pagecount).unwrap_or(0))
}

impl ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self {
            Self::Int(Some(value)) => ToSqlOutput::from(*value),
            Self::Text(Some(value)) => ToSqlOutput::Borrowed(ValueRef::Text(value.as_bytes())),
            Self::Bytes(Some(value)) => ToSqlOutput::Borrowed(ValueRef::Blob(value)),
            Self::Int(None) | Self::Text(None) | Self::Bytes(None) => {
                ToSqlOutput::from(rusqlite::types::Null)
            }
        })
    }
}

fn value_of(value: ValueRef<'_>) -> Result<Value, StoreError> {
    match value {
        ValueRef::Null => Ok(Value::Text(None)),
        ValueRef::Integer(int) => Ok(Value::Int(Some(int))),
        ValueRef::Text(text) => String::from_utf8(text.to_vec())
            .map(|text| Value::Text(Some(text)))
            .map_err(|_| StoreError::Corrupt("text that is not UTF-8".into())),
        ValueRef::Blob(blob) => Ok(Value::Bytes(Some(blob.to_vec()))),
        other => {
            Err(StoreError::Corrupt(format!("unexpected column type {:?}", other.data_type())))
        }
    }
}

impl Engine for Sqlite {
    fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64, StoreError> {
        let mut statement = self.conn.prepare_cached(sql).map_err(unavailable)?;
        let changed = statement.execute(rusqlite::params_from_iter(params)).map_err(unavailable)?;
        Ok(changed as u64)
    }

    fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>, StoreError> {
        let mut statement = self.conn.prepare_cached(sql).map_err(unavailable)?;
        let columns = statement.column_count();
        let mut rows = statement.query(rusqlite::params_from_iter(params)).map_err(unavailable)?;
        let mut all = Vec::new();
        while let Some(row) = rows.next().map_err(unavailable)? {
            let values: Result<Row, StoreError> = (0..columns)
                .map(|i| row.get_ref(i).map_err(unavailable).and_then(value_of))
                .collect();
            all.push(values?);
        }
        Ok(all)
    }

    fn begin(&mut self) -> Result<(), StoreError> {
        // IMMEDIATE: take the write lock now, so a transaction never fails half-way on it.
        self.conn.execute_batch("BEGIN IMMEDIATE").map_err(unavailable)
    }

    fn commit(&mut self) -> Result<(), StoreError> {
        self.conn.execute_batch("COMMIT").map_err(unavailable)
    }

    fn rollback(&mut self) -> Result<(), StoreError> {
        self.conn.execute_batch("ROLLBACK").map_err(unavailable)
    }

    /// Inserts the messages, then adds those of them the search index holds (not room events) to
    /// it in one statement: FTS5 takes a batch at once about 3.5 times as fast as row by row (a
    /// trigger per insert), which would cost SQLite half its write rate (docs/benchmarks.md).
    /// Edits, deletions and retention keep the index by triggers (migration 0008).
    fn insert_messages(&mut self, messages: &[&NewMessage]) -> Result<Vec<bool>, StoreError> {
        let newest_before: i64 = self
            .conn
            .prepare_cached("SELECT COALESCE(MAX(pos), 0) FROM chat_messages")
            .and_then(|mut statement| statement.query_row([], |row| row.get(0)))
            .map_err(unavailable)?;
        let inserted = self.insert_rows(messages)?;
        self.conn
            .prepare_cached(
                "INSERT INTO chat_messages_search (rowid, content) SELECT pos, content \
                 FROM chat_messages WHERE pos > ?1 AND target IS NULL AND deleted_at IS NULL \
                 AND content IS NOT NULL",
            )
            .and_then(|mut statement| statement.execute([newest_before]))
            .map_err(unavailable)?;
        Ok(inserted)
    }

    fn name(&self) -> &'static str {
        "sqlite"
    }
}

impl Sqlite {
    /// Inserts each message unless it is stored already; which ones it inserted.
    fn insert_rows(&mut self, messages: &[&NewMessage]) -> Result<Vec<bool>, StoreError> {
        let mut statement = self
            .conn
            .prepare_cached(
                "INSERT INTO chat_messages (id, room, sender, message_type, content, data, \
                 created_at, updated_at, metadata, seq, epoch, target, reply_to) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7, ?8, ?9, ?10, ?11, ?12) \
                 ON CONFLICT (room, sender, id) DO NOTHING",
            )
            .map_err(unavailable)?;
        let mut inserted = Vec::with_capacity(messages.len());
        for message in messages {
            let (content, reply_to) = super::ops::columns_of(&message.data);
            let room = message.room.as_deref();
            let rows = statement
                .execute(rusqlite::params![
                    message.id,
                    room,
                    message.sender.as_ref(),
                    message.kind,
                    content,
                    message.data.as_ref(),
                    message.created_at,
                    message.metadata,
                    message.stream.as_ref().map(|(seq, _)| *seq),
                    message.stream.as_ref().map(|(_, epoch)| epoch.as_ref()),
                    message.target,
                    reply_to,
                ])
                .map_err(unavailable)?;
            inserted.push(rows == 1);
        }
        Ok(inserted)
    }
}
