//! The PostgreSQL engine (the synchronous `postgres` client): the store for production and clusters.
//!
//! Owns: one connection to the server. Statements are prepared once per connection and cached; a
//! batch of messages goes in as one `INSERT ... SELECT FROM UNNEST(...)`, one round trip however
//! many rows, taking their keys in key order (see [`Postgres::insert_messages`]). Must not: be
//! shared between threads (each owner opens its own).

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use postgres::error::SqlState;
use postgres::types::{ToSql, Type};
use postgres::{Client, NoTls, Statement};

use super::{Engine, NewMessage, Row, StoreError, Value};

/// How long connecting may take before the server counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

pub struct Postgres {
    client: Client,
    /// Prepared statements by their SQL (after placeholder translation).
    prepared: HashMap<String, Statement>,
    /// The messages' insert, prepared at the first (after the migrations made the table: it names
    /// the sequence of `chat_messages.pos`).
    insert: Option<Statement>,
}

/// A failed statement as the store sees it: a deadlock's victim or a serialization failure is a
/// conflict (retried at once); anything else makes the database unavailable.
fn store_error(err: postgres::Error) -> StoreError {
    let why = match std::error::Error::source(&err) {
        Some(cause) => format!("postgres: {err}: {cause}"),
        None => format!("postgres: {err}"),
    };
    let conflict = [SqlState::T_R_DEADLOCK_DETECTED, SqlState::T_R_SERIALIZATION_FAILURE];
    match err.code() {
        Some(code) if conflict.contains(code) => StoreError::Conflict(why),
        _ => StoreError::Unavailable(why),
    }
}

/// `url` with any password replaced by `***`, for logs.
pub fn without_password(url: &str) -> String {
    match url.split_once("://").and_then(|(scheme, rest)| Some((scheme, rest.split_once('@')?))) {
        Some((scheme, (credentials, host))) => {
            let user = credentials.split(':').next().unwrap_or_default();
            format!("{scheme}://{user}:***@{host}")
        }
        None => url.to_owned(),
    }
}

/// The SQL with SQLite's `?N` placeholders written as PostgreSQL's `$N`.
fn translate(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        let placeholder = c == '?' && chars.peek().is_some_and(char::is_ascii_digit);
        out.push(if placeholder { '$' } else { c });
    }
    out
}

impl Postgres {
    pub fn connect(url: &str) -> Result<Self, StoreError> {
        let mut config: postgres::Config = url
            .parse()
            .map_err(|err| StoreError::Unavailable(format!("{}: {err}", without_password(url))))?;
        config.connect_timeout(CONNECT_TIMEOUT);
        let client = config
            .connect(NoTls)
            .map_err(|err| StoreError::Unavailable(format!("{}: {err}", without_password(url))))?;
        Ok(Self { client, prepared: HashMap::new(), insert: None })
    }

    fn statement(&mut self, sql: &str) -> Result<Statement, StoreError> {
        let sql = translate(sql);
        if let Some(statement) = self.prepared.get(&sql) {
            return Ok(statement.clone());
        }
        let statement = self.client.prepare(&sql).map_err(store_error)?;
        self.prepared.insert(sql, statement.clone());
        Ok(statement)
    }

    /// See [`Engine::insert_messages`] below: the statement, prepared once.
    fn insert_statement(&mut self) -> Result<Statement, StoreError> {
        if let Some(statement) = &self.insert {
            return Ok(statement.clone());
        }
        let row = self
            .client
            .query_one("SELECT pg_get_serial_sequence('chat_messages', 'pos')", &[])
            .map_err(store_error)?;
        let positions: String = row.try_get(0).map_err(store_error)?;
        // The subquery numbers the rows as UNNEST yields them (a subquery with a volatile target
        // list is planned on its own, below the sort); the sort then orders the insert by key.
        let statement = self.statement(&format!(
            "INSERT INTO chat_messages (pos, id, room, sender, message_type, content, data, \
             created_at, updated_at, metadata, seq, epoch, target, reply_to) \
             SELECT pos, id, room, sender, kind, content, data, at, at, metadata, seq, epoch, \
             target, reply_to FROM (SELECT nextval('{positions}') AS pos, m.* FROM UNNEST \
             (?1::text[], ?2::text[], ?3::text[], ?4::text[], ?5::text[], ?6::text[], \
             ?7::bigint[], ?8::text[], ?9::bigint[], ?10::text[], ?11::text[], ?12::text[]) \
             AS m (id, room, sender, kind, content, data, at, metadata, seq, epoch, target, \
             reply_to)) AS numbered ORDER BY room, sender, id, pos \
             ON CONFLICT (room, sender, id) DO NOTHING \
             RETURNING room, sender, id"
        ))?;
        Ok(self.insert.insert(statement).clone())
    }
}

/// The parameters as the `postgres` client takes them.
fn bind(params: &[Value]) -> Vec<&(dyn ToSql + Sync)> {
    params
        .iter()
        .map(|value| match value {
            Value::Int(value) => value as &(dyn ToSql + Sync),
            Value::Text(value) => value as &(dyn ToSql + Sync),
            Value::Bytes(value) => value as &(dyn ToSql + Sync),
        })
        .collect()
}

fn value_of(row: &postgres::Row, index: usize) -> Result<Value, StoreError> {
    let column_type = row.columns()[index].type_();
    let corrupt = |err: postgres::Error| StoreError::Corrupt(format!("postgres: {err}"));
    match *column_type {
        Type::INT8 => row.try_get::<_, Option<i64>>(index).map(Value::Int).map_err(corrupt),
        Type::INT4 => {
            let value = row.try_get::<_, Option<i32>>(index).map_err(corrupt)?;
            Ok(Value::Int(value.map(i64::from)))
        }
        Type::TEXT | Type::VARCHAR => {
            row.try_get::<_, Option<String>>(index).map(Value::Text).map_err(corrupt)
        }
        Type::BYTEA => row.try_get::<_, Option<Vec<u8>>>(index).map(Value::Bytes).map_err(corrupt),
        ref other => Err(StoreError::Corrupt(format!("unexpected column type {other}"))),
    }
}

impl Engine for Postgres {
    fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64, StoreError> {
        if params.is_empty() {
            // DDL and plain statements need no preparing (and some, like CREATE, cannot be).
            return self.client.execute(&translate(sql), &[]).map_err(store_error);
        }
        let statement = self.statement(sql)?;
        self.client.execute(&statement, &bind(params)).map_err(store_error)
    }

    fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>, StoreError> {
        let statement = self.statement(sql)?;
        let rows = self.client.query(&statement, &bind(params)).map_err(store_error)?;
        rows.iter().map(|row| (0..row.len()).map(|i| value_of(row, i)).collect()).collect()
    }

    fn begin(&mut self) -> Result<(), StoreError> {
        self.client.batch_execute("BEGIN").map_err(store_error)
    }

    fn commit(&mut self) -> Result<(), StoreError> {
        self.client.batch_execute("COMMIT").map_err(store_error)
    }

    fn rollback(&mut self) -> Result<(), StoreError> {
        self.client.batch_execute("ROLLBACK").map_err(store_error)
    }

    /// Each row takes its `pos` in the order given (history's order), but the rows go in by key
    /// (room, sender, id): the unique index's entries, which another instance's writer inserting the
    /// same message (a chat resent through it) waits on, are taken in one order by every writer,
    /// however each numbered its copy. So two writers never wait for each other in a cycle here.
    fn insert_messages(&mut self, messages: &[&NewMessage]) -> Result<Vec<bool>, StoreError> {
        let statement = self.insert_statement()?;
        let ids: Vec<&str> = messages.iter().map(|m| m.id.as_str()).collect();
        let rooms: Vec<Option<&str>> = messages.iter().map(|m| m.room.as_deref()).collect();
        let senders: Vec<&str> = messages.iter().map(|m| m.sender.as_ref()).collect();
        let kinds: Vec<&str> = messages.iter().map(|m| m.kind).collect();
        let (contents, replies): (Vec<Option<String>>, Vec<Option<String>>) =
            messages.iter().map(|m| super::ops::columns_of(&m.data)).unzip();
        let data: Vec<&str> = messages.iter().map(|m| m.data.as_ref()).collect();
        let times: Vec<i64> = messages.iter().map(|m| m.created_at).collect();
        let metadata: Vec<Option<&str>> = messages.iter().map(|m| m.metadata.as_deref()).collect();
        let seqs: Vec<Option<i64>> =
            messages.iter().map(|m| m.stream.as_ref().map(|s| s.0)).collect();
        let epochs: Vec<Option<&str>> =
            messages.iter().map(|m| m.stream.as_ref().map(|s| s.1.as_ref())).collect();
        let targets: Vec<Option<&str>> = messages.iter().map(|m| m.target.as_deref()).collect();
        let params: [&(dyn ToSql + Sync); 12] = [
            &ids, &rooms, &senders, &kinds, &contents, &data, &times, &metadata, &seqs, &epochs,
            &targets, &replies,
        ];
        let rows = self.client.query(&statement, &params).map_err(store_error)?;
        let mut new: HashSet<(Option<String>, String, String)> =
            rows.iter().map(|row| (row.get(0), row.get(1), row.get(2))).collect();
        // A message twice in one batch went in once: the first of them is the new one.
        Ok(messages
            .iter()
            .map(|m| {
                new.remove(&(
                    m.room.as_deref().map(str::to_owned),
                    m.sender.to_string(),
                    m.id.clone(),
                ))
            })
            .collect())
    }

    fn name(&self) -> &'static str {
        "postgres"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_and_passwords() {
        assert_eq!(translate("a = ?1 AND b = ?12 AND c = '?'"), "a = $1 AND b = $12 AND c = '?'");
        assert_eq!(without_password("postgres://u:secret@h:5/db"), "postgres://u:***@h:5/db");
        assert_eq!(without_password("postgres://h/db"), "postgres://h/db");
    }
}
