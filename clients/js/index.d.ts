// Types of the wsbroker client (index.js). No build step: the module is plain JavaScript.

export type State = "idle" | "connecting" | "joining" | "live" | "reconnecting" | "closed" | "banned";

/** Where a client stands in a room's stream: the last message it has, and the stream's name. */
export interface Since {
  seq: number;
  epoch: string;
}

/** A frame as the broker sends it (docs/protocol.md): one JSON envelope. */
export interface Frame {
  id?: string;
  type: string;
  room?: string;
  from?: string;
  data?: any;
  timestamp?: string;
  seq?: number;
  epoch?: string;
}

export interface OutboxStore {
  load(): Array<{ id: string; room: string; data: object }>;
  save(chats: Array<{ id: string; room: string; data: object }>): void;
}

export interface ClientOptions {
  /** The broker's WebSocket endpoint, such as "wss://chat.example.com/ws". */
  url: string;
  /** The user to connect as, with authentication off. */
  user?: string;
  /** A JWT, with authentication on. */
  token?: string;
  /** Asked for a new token when the broker says the current one expires soon, or closed 4001. */
  refreshToken?: () => Promise<string>;
  /** A WebSocket constructor (browsers and Node with --experimental-websocket have one). */
  WebSocket?: new (url: string) => WebSocket;
  /** Where unacked chats are kept across page reloads (see storageOutbox). */
  outboxStore?: OutboxStore;
  /** First reconnect delay (doubled each attempt, with jitter), default 500 ms. */
  backoffMs?: number;
  /** Longest reconnect delay, default 30 s. */
  maxBackoffMs?: number;
  /** How often an idle connection is checked, default 15 s. */
  pingIntervalMs?: number;
  /** How long the broker may stay silent while something is owed before the connection is
   * presumed dead and replaced, default 10 s. */
  answerTimeoutMs?: number;
}

export interface Events {
  state: { state: State; retryInMs: number };
  message: Frame;
  acked: { id: string; room: string; seq?: number };
  /** `until`: with code "muted", when the mute ends (null: until lifted). */
  failed: { id: string; room: string; data: object; code: string; message: string; until: string | null };
  deleted: { room: string; id: string; from: string };
  edited: { room: string; id: string; from: string; content: string; at: string };
  reaction: { room: string; id: string; author: string; user: string; emoji: string; added: boolean };
  presence: PresenceChange;
  /** `typing`: who is typing in the room now, after the change. */
  typing: { room: string; started: string[]; stopped: string[]; typing: string[] };
  reset: { room: string; reason: string; seq: number; epoch: string };
  removed: { room: string; code: string; message: string };
  room_added: { room: string; type: "public" | "private" | "direct"; by: string };
  /** The user is no longer a participant of the room (removed, or it left on another device). */
  room_removed: { room: string; by: string };
  /** Where one of the user's rooms stands for it; `lastMessage` only when it changed. */
  unread: { room: string; unread: number; lastSeq: number; lastRead: number; lastMessage?: Frame };
  /** A member of a small room read it up to `seq`. */
  receipt: { room: string; user: string; seq: number };
  /** A moderator acted on this user (mute, unmute, kick, ban, unban, set_role, ban_user), or, to
   * a room's moderators, a report or a sanction that ended (mute_ended, ban_ended). `until`: RFC
   * 3339, null when it holds until lifted. */
  moderation: { room: string | null; action: string; user?: string; by: string; until: string | null; reason?: string; role?: string };
  /** A room's settings changed (`archived`: it takes no new messages). */
  room_updated: { room: string; title: string | null; topic: string | null; slow_mode_ms: number; archived: boolean; by: string };
  frame: Frame;
}

/** Codes that end a chat or an operation; any other error is retried. */
export const FINAL_CODES: Set<string>;

export class Emitter<E = Events> {
  on<K extends keyof E>(event: K, handler: (detail: E[K]) => void): () => void;
  off<K extends keyof E>(event: K, handler: (detail: E[K]) => void): void;
  emit<K extends keyof E>(event: K, detail: E[K]): void;
}

/** A room's presence change; `users` only for a query's answer (the whole list). */
export interface PresenceChange {
  room: string;
  joined: string[];
  away: string[];
  back: string[];
  left: string[];
  users?: string[];
}

export class Typers {
  apply(frame: Frame): { room: string; started: string[]; stopped: string[]; typing: string[] } | null;
  of(room: string): string[];
  forget(room: string): void;
}

export class Members {
  apply(frame: Frame): PresenceChange | null;
  of(room: string): string[];
  isAway(room: string, user: string): boolean;
  forget(room: string): void;
}

export class Client extends Emitter<Events> {
  constructor(options: ClientOptions);
  readonly state: State;
  readonly members: Members;
  readonly typers: Typers;
  readonly outbox: { chats: Map<string, { id: string; room: string; data: object }> };
  connect(): void;
  close(): void;
  /** Sends a chat; returns its id. It is acked once, or "failed" for a reason retrying cannot change. */
  send(room: string, data: object, id?: string): string;
  join(room: string): Promise<Frame>;
  leave(room: string): Promise<Frame>;
  delete(room: string, id: string, from: string): Promise<Frame>;
  /** Tells the client the newest message of `room` its user was shown otherwise (a history page's
   * last), so a resume starts after it. */
  seen(room: string, message: { seq?: number; epoch?: string }): void;
  /** Marks `room` read up to `seq` (unread counts everywhere follow); queued while offline. */
  read(room: string, seq: number): Promise<Frame>;
  /** Reacts with `emoji` to message `id` by `author` (or, `remove`, takes it back); queued. */
  react(room: string, id: string, author: string, emoji: string, remove?: boolean): Promise<Frame>;
  /** Tells `room` its user is typing (again every few seconds while it goes on), or stopped. */
  typing(room: string, typing?: boolean): void;
  /** Replaces the content of this user's own message `id`; queued while offline. */
  edit(room: string, id: string, content: string): Promise<Frame>;
  /** A moderation request in `room` (docs/protocol.md, "Moderation"); queued while offline. */
  moderate(action: "mute" | "unmute" | "kick" | "ban" | "unban", room: string, data: { user: string; duration?: number; reason?: string }): Promise<Frame>;
  moderate(action: "report", room: string, data: { id: string; from?: string; reason: string }): Promise<Frame>;
  presence(room: string): Promise<{ users: string[]; away: string[]; next_after?: string }>;
  /** A page of `room`'s history, oldest first; `"_global"`: the chats to everyone (paged by `before` only). */
  history(room: string, page?: { limit?: number; before?: string; after?: number }): Promise<{ messages: Frame[]; next_before: string | null }>;
  rooms(): Map<string, Since | null>;
  /** Marks the user present (not away) without sending anything else; dropped while offline. */
  active(): void;
}

export function storageOutbox(storage: Storage, key?: string): OutboxStore;
