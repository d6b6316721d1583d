-- Last-seen presence per user, and the index the retention job deletes by.
CREATE TABLE chat_presence (
    user_id TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    last_seen BIGINT NOT NULL,
    connections BIGINT NOT NULL
);

CREATE INDEX chat_messages_created_at ON chat_messages (created_at);
