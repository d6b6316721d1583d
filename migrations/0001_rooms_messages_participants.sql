-- Rooms, their messages and their participants. Times are milliseconds since the Unix epoch.
-- {{serial}} is the one word the engines spell differently: an auto-incrementing integer key.
CREATE TABLE chat_rooms (
    id TEXT PRIMARY KEY,
    type TEXT NOT NULL CHECK (type IN ('public', 'private', 'direct')),
    created_at BIGINT NOT NULL,
    created_by TEXT NOT NULL,
    metadata TEXT
);

CREATE TABLE chat_messages (
    pos {{serial}},
    id TEXT NOT NULL,
    room TEXT,
    sender TEXT NOT NULL,
    message_type TEXT NOT NULL,
    content TEXT,
    data TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    deleted_at BIGINT,
    metadata TEXT
);
-- The envelope id is unique per room and sender: a retried send is stored once.
CREATE UNIQUE INDEX chat_messages_room_sender_id ON chat_messages (room, sender, id);
-- History: the newest messages of a room before a position.
CREATE INDEX chat_messages_room_pos ON chat_messages (room, pos);

CREATE TABLE chat_participants (
    room TEXT NOT NULL REFERENCES chat_rooms (id) ON DELETE CASCADE,
    user_id TEXT NOT NULL,
    joined_at BIGINT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('owner', 'moderator', 'member')),
    PRIMARY KEY (room, user_id)
);
-- The caller's rooms.
CREATE INDEX chat_participants_user ON chat_participants (user_id);
