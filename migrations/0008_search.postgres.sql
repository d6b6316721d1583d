-- Search (PostgreSQL): each message's words as a tsvector ('simple': no stemming, no stop words,
-- any language alike), kept by PostgreSQL itself on every insert and edit (a stored generated
-- column, NULL for room events), under a GIN index of messages not deleted. New entries wait in
-- the index's pending list, merged in batches; the list is kept small (512 kB, not 4 MB), since
-- every search reads it through: 4 MB made a search take 70 ms, writing through at once (no list)
-- halved the write rate again (docs/benchmarks.md).
-- A column, not an index over an expression: the planner has statistics of its words (a partial
-- expression index gets none), so a rare word is looked up in the index and a common one found by
-- walking the newest messages back, each test reading the stored words.
ALTER TABLE chat_messages ADD COLUMN search tsvector
    GENERATED ALWAYS AS (CASE WHEN target IS NULL THEN to_tsvector('simple', content) END) STORED;
CREATE INDEX chat_messages_search ON chat_messages USING GIN (search) WITH (gin_pending_list_limit = 512)
    WHERE target IS NULL AND deleted_at IS NULL AND content IS NOT NULL;
