-- Moderation and room administration. A room's settings: a display name, a topic, slow mode (a
-- member may send one chat per interval; 0: off) and when it was archived (no new messages).
ALTER TABLE chat_rooms ADD COLUMN title TEXT;
ALTER TABLE chat_rooms ADD COLUMN topic TEXT;
ALTER TABLE chat_rooms ADD COLUMN slow_mode_ms BIGINT NOT NULL DEFAULT 0;
ALTER TABLE chat_rooms ADD COLUMN archived_at BIGINT;

-- Mutes and bans in force: kind 'mute' or 'ban' in a room, or 'ban' with room '' (instance-wide).
-- until_at NULL: until lifted. An expired row is no longer in force and is deleted by the sweep.
CREATE TABLE chat_sanctions (
    room TEXT NOT NULL,
    user_id TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('mute', 'ban')),
    until_at BIGINT,
    reason TEXT,
    by_user TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (room, user_id, kind)
);
CREATE INDEX chat_sanctions_until ON chat_sanctions (until_at);

-- Reports of messages: one per reporter and message, open until resolved.
CREATE TABLE chat_reports (
    pos {{serial}},
    room TEXT NOT NULL,
    sender TEXT NOT NULL,
    message_id TEXT NOT NULL,
    reporter TEXT NOT NULL,
    reason TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    resolved_by TEXT,
    resolution TEXT,
    resolved_at BIGINT
);
CREATE UNIQUE INDEX chat_reports_once ON chat_reports (room, sender, message_id, reporter);
CREATE INDEX chat_reports_room ON chat_reports (room, resolved_at, pos);

-- Users a user blocked.
CREATE TABLE chat_blocks (
    user_id TEXT NOT NULL,
    blocked TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (user_id, blocked)
);

-- Every moderation action, for a room's moderators (room '' for instance-wide ones).
CREATE TABLE chat_moderation_log (
    pos {{serial}},
    room TEXT NOT NULL,
    actor TEXT NOT NULL,
    target TEXT,
    action TEXT NOT NULL,
    reason TEXT,
    until_at BIGINT,
    created_at BIGINT NOT NULL
);
CREATE INDEX chat_moderation_log_room ON chat_moderation_log (room, pos);
