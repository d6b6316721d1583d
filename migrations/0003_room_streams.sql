-- Room streams: a room message's place in its room (seq) and the name of the stream it counts in
-- (epoch). Messages stored before this migration, and messages to users, have neither.
ALTER TABLE chat_messages ADD COLUMN seq BIGINT;
ALTER TABLE chat_messages ADD COLUMN epoch TEXT;
-- Resume and `after=`: a room's messages after a seq.
CREATE INDEX chat_messages_room_seq ON chat_messages (room, seq);
