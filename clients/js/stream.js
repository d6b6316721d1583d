// The frames of a user's own stream and of moderation, as the client's events: rooms added,
// unread counts, read receipts, what a moderator did to this user, a room's settings changing.

/** The event a frame of these types makes: `[name, detail]`, or null for any other frame. */
export function streamEvent(frame) {
  const data = frame.data ?? {};
  switch (frame.type) {
    case "room_added":
      return ["room_added", { room: frame.room, type: data.type, by: data.by }];
    case "unread": {
      const { unread, last_seq: lastSeq, last_read: lastRead, last_message: lastMessage } = data;
      return ["unread", { room: frame.room, unread, lastSeq, lastRead, lastMessage }];
    }
    case "receipt":
      return ["receipt", { room: frame.room, user: data.user, seq: data.seq }];
    case "moderation":
      return ["moderation", { room: frame.room ?? null, ...data, until: data.until ?? null }];
    case "room_updated":
    case "room_deleted":
      return ["room_updated", { room: frame.room, ...data }];
    default:
      return null;
  }
}
