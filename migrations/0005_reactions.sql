-- Reactions: who reacted to which message with what. A user reacts with a given emoji once per
-- message. Each add and remove is also a room event (a row of chat_messages with a seq).
CREATE TABLE chat_reactions (
    room TEXT NOT NULL,
    sender TEXT NOT NULL,
    id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    emoji TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (room, sender, id, user_id, emoji)
);
