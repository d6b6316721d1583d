-- Replies and threads: the message a message replies to (its `data.reply_to`, same room), so a
-- thread (the replies to one message) is read by index, and a page of history counts each
-- message's replies with one grouped read.
ALTER TABLE chat_messages ADD COLUMN reply_to TEXT;
-- Partial: most messages answer none, and an index entry per message would cost every insert.
CREATE INDEX chat_messages_room_reply ON chat_messages (room, reply_to) WHERE reply_to IS NOT NULL;
