-- Room events: a change to a message (an edit, a deletion) takes a seq in its room's stream like a
-- message, so a resume delivers it in order. Its row is kept with the messages, and `target` names
-- the message it changes (NULL for messages themselves, which history lists).
ALTER TABLE chat_messages ADD COLUMN target TEXT;
-- When a message's content was last edited (NULL: never).
ALTER TABLE chat_messages ADD COLUMN edited_at BIGINT;
-- Each version an edit replaced, for the room's owners and moderators.
CREATE TABLE chat_message_versions (
    room TEXT NOT NULL,
    sender TEXT NOT NULL,
    id TEXT NOT NULL,
    data TEXT NOT NULL,
    replaced_at BIGINT NOT NULL
);
CREATE INDEX chat_message_versions_message ON chat_message_versions (room, sender, id);
