//! Full-text search over stored messages with the engines' own indexes (migration 0008: SQLite's
//! FTS5, PostgreSQL's `tsvector` under a GIN index), newest first, among the rooms a reader may
//! read. Room events and deleted messages are not in either index.
//!
//! Owns: how a search's words become each engine's query, and its SQL. Must not: decide who may
//! read a room beyond the rule it is given (a participant's rooms and public ones; every room for
//! an admin; one room the caller was found to read).

use super::messages::{int, message_of, text, MESSAGE_COLUMNS};
use super::{Engine, StoreError, StoredMessage, Value};

/// The most words a search takes (more are ignored).
pub const MAX_WORDS: usize = 8;
/// The most characters of a word (a longer one is cut).
pub const MAX_WORD_CHARS: usize = 64;
/// The last word of a search also matches as the start of a word when it is at least this long
/// (shorter prefixes would match most of the index).
pub const PREFIX_MIN: usize = 3;

/// A search: messages holding every one of `words`, newest first, `limit` before position `before`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Search {
    pub words: Vec<String>,
    pub scope: Scope,
    pub before: Option<i64>,
    pub limit: i64,
}

/// Where a search looks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// The rooms `user` takes part in, and public rooms.
    Readable(String),
    /// One room (the caller may read it).
    Room(String),
    /// Every room (an admin).
    All,
}

/// The words of a query, as messages are split into words: runs of letters and digits,
/// lowercased, each cut at [`MAX_WORD_CHARS`]; the first [`MAX_WORDS`].
pub fn words(query: &str) -> Vec<String> {
    query
        .split(|c: char| !c.is_alphanumeric())
        .filter(|word| !word.is_empty())
        .take(MAX_WORDS)
        .map(|word| word.chars().take(MAX_WORD_CHARS).collect::<String>().to_lowercase())
        .collect()
}

/// The words as an FTS5 query: each quoted (no operator in them), the last a prefix if long enough.
fn fts5_query(words: &[String]) -> String {
    let quoted: Vec<String> = words.iter().map(|word| format!("\"{word}\"")).collect();
    let mut query = quoted.join(" ");
    if words.last().is_some_and(|last| last.chars().count() >= PREFIX_MIN) {
        query.push('*');
    }
    query
}

/// The words as the text of a `tsquery` for `to_tsquery('simple', ...)`, which splits them as the
/// index's `to_tsvector('simple', ...)` split the messages (letters and digits only: nothing in
/// them is an operator).
fn tsquery(words: &[String]) -> String {
    let mut query = words.join(" & ");
    if words.last().is_some_and(|last| last.chars().count() >= PREFIX_MIN) {
        query.push_str(":*");
    }
    query
}

pub(super) fn search(
    engine: &mut dyn Engine,
    search: &Search,
) -> Result<Vec<StoredMessage>, StoreError> {
    if search.words.is_empty() {
        return Ok(Vec::new());
    }
    let (scope, who) = match &search.scope {
        Scope::Readable(user) => (
            "(m.room IN (SELECT p.room FROM chat_participants p WHERE p.user_id = ?4) \
             OR m.room IN (SELECT r.id FROM chat_rooms r WHERE r.type = 'public'))",
            Some(text(user)),
        ),
        Scope::Room(room) => ("m.room = ?4", Some(text(room))),
        Scope::All => ("m.room IS NOT NULL", None),
    };
    let columns = MESSAGE_COLUMNS.split(", ").map(|c| format!("m.{}", c.trim()));
    let columns = columns.collect::<Vec<_>>().join(", ");
    let sql = if engine.name() == "sqlite" {
        format!(
            "SELECT {columns} FROM chat_messages_search s JOIN chat_messages m ON m.pos = s.rowid \
             WHERE chat_messages_search MATCH ?1 AND s.rowid < ?2 AND {scope} \
             ORDER BY s.rowid DESC LIMIT ?3"
        )
    } else {
        format!(
            "SELECT {columns} FROM chat_messages m \
             WHERE m.search @@ to_tsquery('simple', ?1) \
             AND m.target IS NULL AND m.deleted_at IS NULL AND m.content IS NOT NULL \
             AND m.pos < ?2 AND {scope} ORDER BY m.pos DESC LIMIT ?3"
        )
    };
    let query =
        if engine.name() == "sqlite" { fts5_query(&search.words) } else { tsquery(&search.words) };
    let mut params: Vec<Value> =
        vec![text(query), int(search.before.unwrap_or(i64::MAX)), int(search.limit)];
    params.extend(who);
    let rows = engine.query(&sql, &params)?;
    rows.iter().map(|row| message_of(row)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_query_becomes_words_and_each_engines_query() {
        let found = words("  Hello, wörld! ünïcode-42 \"; DROP TABLE x; --");
        assert_eq!(found, ["hello", "wörld", "ünïcode", "42", "drop", "table", "x"]);
        assert_eq!(fts5_query(&found[..2]), "\"hello\" \"wörld\"*");
        assert_eq!(tsquery(&found[..2]), "hello & wörld:*");
        let short = words("hi yo");
        assert_eq!(
            (fts5_query(&short), tsquery(&short)),
            ("\"hi\" \"yo\"".into(), "hi & yo".into())
        );
        assert!(words("!!! ... 👍").is_empty());
        assert_eq!(words(&"a ".repeat(20)).len(), MAX_WORDS);
        assert_eq!(words(&"y".repeat(100))[0].len(), MAX_WORD_CHARS);
    }
}
