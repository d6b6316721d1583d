-- Attachments: files uploaded into a room, stored with the messages. A file's bytes are rows of
-- chat_attachment_chunks (256 KiB each, in order); its thumbnail (images) is small and kept in its
-- row. A column of bytes is BLOB in SQLite and BYTEA in PostgreSQL (filled in per engine).
-- message_sender and message_id name the message that carries it (NULL until one does; an upload
-- no message takes within an hour is deleted).
CREATE TABLE chat_attachments (
    id TEXT PRIMARY KEY,
    room TEXT NOT NULL,
    uploader TEXT NOT NULL,
    name TEXT NOT NULL,
    content_type TEXT NOT NULL,
    size BIGINT NOT NULL,
    width BIGINT,
    height BIGINT,
    complete BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    message_sender TEXT,
    message_id TEXT,
    thumbnail {{blob}}
);
CREATE INDEX chat_attachments_uploader ON chat_attachments (uploader, created_at);
CREATE INDEX chat_attachments_message ON chat_attachments (room, message_sender, message_id);
CREATE INDEX chat_attachments_created ON chat_attachments (created_at);

CREATE TABLE chat_attachment_chunks (
    attachment TEXT NOT NULL,
    n BIGINT NOT NULL,
    data {{blob}} NOT NULL,
    PRIMARY KEY (attachment, n)
);
