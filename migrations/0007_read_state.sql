-- Read state and unread counts without counting messages: each room keeps the seq of its newest
-- stream item and the position of its newest message (the writer moves them with each batch),
-- each participant the last seq it marked read. Unread = last_seq - last_read.
ALTER TABLE chat_rooms ADD COLUMN last_seq BIGINT NOT NULL DEFAULT 0;
ALTER TABLE chat_rooms ADD COLUMN last_pos BIGINT;
ALTER TABLE chat_participants ADD COLUMN last_read BIGINT NOT NULL DEFAULT 0;
