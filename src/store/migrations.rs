//! The schema's versions: numbered SQL files in `migrations/`, embedded in the binary and applied
//! in order at start-up.
//!
//! Owns: the list of migrations and the `wsbroker_schema` table that records which are applied.
//! Must not: change a migration once released; a change to the schema is a new file.
//!
//! One SQL text serves both engines where it can. The words they spell differently, an
//! auto-incrementing integer key and a column of bytes, are written `{{serial}}` and `{{blob}}` and
//! filled in per engine; a migration
//! that uses what only one engine has (full-text search: FTS5, `tsvector`) has a file per engine.

use super::{Engine, StoreError, Value};
use crate::protocol::millis;

/// One migration: its version and its SQL for each engine.
#[derive(Debug)]
pub struct Migration {
    pub version: i64,
    sqlite: &'static str,
    postgres: &'static str,
}

impl Migration {
    /// The same SQL for both engines.
    const fn both(version: i64, sql: &'static str) -> Self {
        Self { version, sqlite: sql, postgres: sql }
    }

    /// The SQL `engine` (its [`Engine::name`]) runs.
    pub fn sql(&self, engine: &str) -> &'static str {
        if engine == "sqlite" {
            self.sqlite
        } else {
            self.postgres
        }
    }
}

/// Every migration, in order.
pub const MIGRATIONS: &[Migration] = &[
    Migration::both(1, include_str!("../../migrations/0001_rooms_messages_participants.sql")),
    Migration::both(2, include_str!("../../migrations/0002_presence_and_retention.sql")),
    Migration::both(3, include_str!("../../migrations/0003_room_streams.sql")),
    Migration::both(4, include_str!("../../migrations/0004_room_events.sql")),
    Migration::both(5, include_str!("../../migrations/0005_reactions.sql")),
    Migration::both(6, include_str!("../../migrations/0006_replies.sql")),
    Migration::both(7, include_str!("../../migrations/0007_read_state.sql")),
    Migration {
        version: 8,
        sqlite: include_str!("../../migrations/0008_search.sqlite.sql"),
        postgres: include_str!("../../migrations/0008_search.postgres.sql"),
    },
    Migration::both(9, include_str!("../../migrations/0009_moderation.sql")),
    Migration::both(10, include_str!("../../migrations/0010_attachments.sql")),
];

/// The newest schema version this binary knows.
pub fn latest() -> i64 {
    MIGRATIONS.last().map_or(0, |migration| migration.version)
}

/// Brings the database up to `target` (normally [`latest`]), one transaction per migration. A
/// database from a newer binary (a version above any known here) is refused.
pub fn migrate(engine: &mut dyn Engine, target: i64) -> Result<Vec<i64>, StoreError> {
    engine.begin()?;
    take_turn(engine)?;
    engine.execute(
        "CREATE TABLE IF NOT EXISTS wsbroker_schema \
         (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)",
        &[],
    )?;
    engine.commit()?;
    let current = current_version(engine)?;
    if current > latest() {
        let why = format!(
            "the database is at schema version {current}, newer than this binary's {}",
            latest()
        );
        return Err(StoreError::Corrupt(why));
    }
    let mut applied = Vec::new();
    for migration in MIGRATIONS.iter().filter(|m| m.version > current && m.version <= target) {
        engine.begin()?;
        let sql = migration.sql(engine.name());
        match apply_one(engine, migration.version, sql) {
            Ok(true) => {
                engine.commit()?;
                applied.push(migration.version);
            }
            Ok(false) => engine.rollback()?,
            Err(err) => {
                let _ = engine.rollback();
                return Err(err);
            }
        }
    }
    Ok(applied)
}

/// On PostgreSQL, gathers the planner's statistics of the chat tables never analyzed (as far as the
/// server's activity statistics know: a new database, one just restored, since `pg_restore` brings
/// no statistics, or any after a crash reset those), and says which. Until autovacuum gets to such
/// a table, the planner misjudges it and `GET /rooms` and searches take plans up to 30 times slower
/// (docs/benchmarks.md); `ANALYZE` samples a fixed number of rows (0.45 s for all the tables over
/// 1,000,000 messages). SQLite plans without it.
pub fn analyze_if_never_analyzed(engine: &mut dyn Engine) -> Result<Vec<String>, StoreError> {
    if engine.name() != "postgres" {
        return Ok(Vec::new());
    }
    let rows = engine.query(
        "SELECT relname::text FROM pg_stat_user_tables WHERE schemaname = current_schema() \
         AND last_analyze IS NULL AND last_autoanalyze IS NULL \
         AND relname IN ('chat_messages', 'chat_participants', 'chat_rooms', 'chat_reactions') \
         ORDER BY relname",
        &[],
    )?;
    let mut analyzed = Vec::new();
    for row in rows {
        if let Some(Value::Text(Some(table))) = row.into_iter().next() {
            engine.execute(&format!("ANALYZE {table}"), &[])?;
            analyzed.push(table);
        }
    }
    Ok(analyzed)
}

/// The highest applied version (0 for a new database).
pub fn current_version(engine: &mut dyn Engine) -> Result<i64, StoreError> {
    let rows = engine.query("SELECT MAX(version) FROM wsbroker_schema", &[])?;
    Ok(rows
        .first()
        .and_then(|row| row.first())
        .map(Value::opt_int)
        .transpose()?
        .flatten()
        .unwrap_or(0))
}

/// Applies one migration inside the open transaction; `false` when another instance applied it
/// first (PostgreSQL: instances starting together take turns on an advisory lock).
fn apply_one(engine: &mut dyn Engine, version: i64, sql: &str) -> Result<bool, StoreError> {
    take_turn(engine)?;
    let serial = if engine.name() == "sqlite" {
        "INTEGER PRIMARY KEY AUTOINCREMENT"
    } else {
        "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY"
    };
    if current_version(engine)? >= version {
        return Ok(false);
    }
    let blob = if engine.name() == "sqlite" { "BLOB" } else { "BYTEA" };
    let sql = sql.replace("{{serial}}", serial).replace("{{blob}}", blob);
    for statement in statements(&sql) {
        engine.execute(&statement, &[])?;
    }
    let now = Value::Int(Some(millis(std::time::SystemTime::now())));
    engine.execute(
        "INSERT INTO wsbroker_schema (version, applied_at) VALUES (?1, ?2)",
        &[Value::Int(Some(version)), now],
    )?;
    Ok(true)
}

/// On PostgreSQL, waits for the migration lock (held until the transaction ends), so instances that
/// start together migrate one after the other. SQLite's write lock does the same by itself.
fn take_turn(engine: &mut dyn Engine) -> Result<(), StoreError> {
    if engine.name() == "postgres" {
        engine.execute("SELECT pg_advisory_xact_lock(7419001)", &[])?;
    }
    Ok(())
}

/// The statements of a migration: comment lines left out, then split on `;`, blank ones left out.
/// A trigger's body (`CREATE TRIGGER ... BEGIN ...; ...; END`) is one statement. Migrations hold
/// no `;` inside strings.
fn statements(sql: &str) -> Vec<String> {
    let code: Vec<&str> = sql.lines().filter(|line| !line.trim_start().starts_with("--")).collect();
    let code = code.join("\n");
    let mut found = Vec::new();
    let mut statement = String::new();
    for piece in code.split(';') {
        statement.push_str(piece);
        let upper = statement.to_ascii_uppercase();
        if upper.contains("CREATE TRIGGER") && !upper.trim_end().ends_with("END") {
            statement.push(';');
            continue;
        }
        if !statement.trim().is_empty() {
            found.push(statement.trim().to_owned());
        }
        statement.clear();
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_migration_splits_into_statements_and_versions_rise() {
        let versions: Vec<i64> = MIGRATIONS.iter().map(|m| m.version).collect();
        assert_eq!(versions, (1..=latest()).collect::<Vec<_>>(), "numbered 1, 2, ... with no gap");
        let first = statements(MIGRATIONS[0].sql("sqlite"));
        assert!(first[0].contains("CREATE TABLE chat_rooms"), "{first:?}");
        assert!(first.iter().all(|s| !s.is_empty()));
    }

    #[test]
    fn a_trigger_body_is_one_statement() {
        let sql = "CREATE TABLE t (a INT);\n-- a comment; with a semicolon\nCREATE TRIGGER x AFTER INSERT ON t\nBEGIN\n  \
                   INSERT INTO u VALUES (1);\n  INSERT INTO u VALUES (2);\nEND;\nCREATE INDEX i ON t (a);";
        let found = statements(sql);
        assert_eq!(found.len(), 3, "{found:?}");
        assert!(found[1].starts_with("CREATE TRIGGER") && found[1].ends_with("END"));
        assert!(found[1].contains("VALUES (1);") && found[1].contains("VALUES (2);"));
    }
}
