// The wsbroker client: one connection that comes back by itself, resumes every room it joined where
// it left off (docs/protocol.md, "Room streams and resuming"), and delivers each chat exactly once:
// a chat stays in the outbox until its ack and is resent with the same id after a reconnect, which
// the broker's dedup turns into one delivery. In a browser, going offline drops the connection at
// once and coming back online reconnects at once. Runs in browsers and in Node >= 20 (pass a
// WebSocket constructor, such as the `ws` package's or Node's with --experimental-websocket).
//
// Events: "state" { state, retryInMs }, "message" (a chat or notification frame, each once),
// "acked" { id, room, seq }, "failed" { id, room, data, code, message }, "deleted" { room, id, from },
// "edited" { room, id, from, content, at }, "reaction" { room, id, author, user, emoji, added }
// (deletions, edits and reactions are numbered in the room's stream like messages: a resume
// replays those missed, each once),
// "presence" { room, joined, away, back, left }, "typing" { room, started, stopped, typing }, "reset" { room, reason, seq, epoch } (reload the room's
// history: what was missed cannot be replayed), "removed" { room, code, message } (a room it may no
// longer join), and the user's own stream, whatever rooms it joined: "room_added" { room, type, by }
// (a participant now: a direct conversation, a private room, one it created elsewhere),
// "room_removed" { room, by } (a participant no more), "unread" { room, unread, lastSeq, lastRead,
// lastMessage? }; "receipt" { room, user, seq } (a small room's member read it up to seq);
// moderation: "moderation" { room, action, user, by, until, reason, role } (done to this user, or
// told to a room's moderators: a report, a mute or ban that ended), "room_updated" { room, title,
// topic, slow_mode_ms, archived, by }; "frame" (every frame, as sent). Closed 4003 (banned from
// the instance), the client stops: state "banned".

import { Emitter } from "./emitter.js";
import { Members } from "./members.js";
import { Outbox } from "./outbox.js";
import { Typers } from "./typing.js";
import { streamEvent } from "./stream.js";
import { FINAL_CODES, REPLIES, UNKNOWN_EPOCH, alreadyDone, backoff, newId } from "./rules.js";

export { Emitter } from "./emitter.js";
export { Members } from "./members.js";
export { Typers } from "./typing.js";
export { storageOutbox } from "./outbox.js";
export { FINAL_CODES } from "./rules.js";

export class Client extends Emitter {
  state = "idle";
  members = new Members();
  typers = new Typers();
  #options;
  #socket = null;
  #attempt = 0;
  #timers = new Set();
  #retryTimer = null;
  #network = null;
  #heartbeat = null;
  #rooms = new Map(); // room -> { since: { seq, epoch } | null }
  #joining = new Set(); // rooms whose join is asked and not answered: their chats wait for it
  #inFlight = new Map(); // request or chat id -> { chat } | { operation }
  #answerBy = Infinity; // when the connection is presumed dead if nothing answers
  #token;
  #stopped = false;

  /**
   * @param {object} options url (ws://host/ws), user or token, WebSocket, outboxStore,
   *   refreshToken (async () => a new token), backoffMs, maxBackoffMs, pingIntervalMs,
   *   answerTimeoutMs.
   */
  constructor(options) {
    super();
    this.#options = {
      WebSocket: globalThis.WebSocket,
      backoffMs: 500,
      maxBackoffMs: 30_000,
      pingIntervalMs: 15_000,
      answerTimeoutMs: 10_000,
      ...options,
    };
    this.#token = options.token ?? null;
    this.outbox = new Outbox(options.outboxStore);
  }

  connect() {
    this.#stopped = false;
    this.#watchNetwork();
    this.#open();
  }

  close() {
    this.#stopped = true;
    this.#unwatchNetwork();
    this.#clearTimers();
    const socket = this.#socket;
    this.#socket = null;
    socket?.close(1000);
    this.#setState("closed");
  }

  /** Sends a chat (`data` is the message's data object); returns its id. Delivered exactly once,
   * or reported "failed" with a reason that retrying cannot change. */
  send(room, data, id = newId()) {
    this.outbox.addChat(id, room, data);
    if (this.#maySend(room)) this.#sendChat(this.outbox.chats.get(id));
    return id;
  }

  join(room) {
    this.#joining.add(room);
    const answered = () => this.#joining.delete(room);
    return this.#operation({ type: "join", room }).then(
      (reply) => {
        answered();
        this.#rooms.set(room, this.#rooms.get(room) ?? { since: null });
        // The chats that waited for this join (sent before it, or owed from before a reload).
        for (const owed of this.outbox.inOrder()) {
          if (owed.chat?.room === room && this.#maySend(room)) this.#sendChat(owed.chat);
        }
        return reply;
      },
      (error) => {
        answered();
        throw error;
      },
    );
  }

  leave(room) {
    this.#rooms.delete(room);
    this.members.forget(room);
    this.typers.forget(room);
    return this.#operation({ type: "leave", room });
  }

  /** Deletes message `id` (sent by `from`); queued while offline, never turned into a resend. */
  delete(room, id, from) {
    return this.#operation({ type: "delete", room, data: { id, from } });
  }

  /** Replaces the content of this user's own message `id`; queued while offline. */
  edit(room, id, content) {
    return this.#operation({ type: "edit", room, data: { id, content } });
  }

  /** Marks `room` read up to `seq` (unread counts everywhere follow); queued while offline. */
  read(room, seq) {
    return this.#operation({ type: "read", room, data: { seq } });
  }

  /** Reacts with `emoji` to message `id` by `author` (or, `remove`, takes it back); queued. */
  react(room, id, author, emoji, remove = false) {
    return this.#operation({ type: "react", room, data: { id, from: author, emoji, remove } });
  }

  presence(room) {
    return this.#operation({ type: "presence", room }).then((reply) => {
      this.members.apply(reply);
      return reply.data;
    });
  }

  history(room, page = {}) {
    return this.#operation({ type: "history", room, data: page }).then((reply) => reply.data);
  }

  /** Tells `room` its user is typing (call again every few seconds while it goes on), or stopped.
   * Dropped while offline: nobody needs to know one was typing a minute ago. */
  typing(room, typing = true) {
    if (this.state !== "live") return;
    this.#socket?.send(JSON.stringify({ type: "typing", room, data: { typing } }));
  }

  /** Tells the broker its user is there (typing, reading) though sending nothing: only chats,
   * joins, leaves, deletes and this keep a user from showing as away. Dropped while offline. */
  active() {
    if (this.state === "live") this.#socket?.send(JSON.stringify({ type: "active" }));
  }

  /** Tells the client the newest message of `room` its user was shown otherwise (a history page's
   * last, with its `seq` and `epoch`), so a resume starts after it. */
  seen(room, { seq, epoch }) {
    const known = this.#rooms.get(room);
    if (!known || typeof seq !== "number" || !epoch) return;
    if (known.since && known.since.epoch === epoch && known.since.seq >= seq) return;
    known.since = { seq, epoch };
  }

  /** A moderation request in `room`: `action` is mute, unmute, kick, ban or unban, with
   * `{ user, duration?, reason? }` (duration in seconds); or report, with `{ id, from?, reason }`.
   * Resolves with the ack, rejects with the error (its `code`: forbidden, not_found, ...). */
  moderate(action, room, data) {
    return this.#operation({ type: action, room, data });
  }

  /** The rooms this client is in, with where it stands in each stream. */
  rooms() {
    return new Map([...this.#rooms].map(([room, { since }]) => [room, since]));
  }

  #operation(frame) {
    return new Promise((resolve, reject) => {
      const operation = this.outbox.addOperation(frame, resolve, reject);
      if (this.state === "live") this.#sendOperation(operation);
    });
  }

  #open() {
    this.#setState(this.#attempt === 0 ? "connecting" : "reconnecting");
    const url = new URL(this.#options.url);
    if (this.#token) url.searchParams.set("token", this.#token);
    else url.searchParams.set("user", this.#options.user);
    let socket;
    try {
      socket = new this.#options.WebSocket(url.href);
    } catch {
      return this.#retry();
    }
    this.#socket = socket;
    // A broker that accepts the connection but never answers (hung) is left for another try.
    this.#after(this.#options.answerTimeoutMs, () => {
      if (socket === this.#socket && socket.readyState === 0) this.#dropped(socket, 4998, true);
    });
    socket.onopen = () => this.#opened(socket);
    socket.onmessage = (event) => this.#onFrame(socket, event.data);
    socket.onclose = (event) => this.#dropped(socket, event.code);
    socket.onerror = () => {};
  }

  async #opened(socket) {
    this.#setState("joining");
    this.#startHeartbeat(socket);
    const rejoins = [...this.#rooms.keys()].map((room) => this.#rejoin(socket, room));
    await Promise.all(rejoins);
    if (socket !== this.#socket) return;
    this.#attempt = 0;
    this.#setState("live");
    for (const owed of this.outbox.inOrder()) {
      if (!owed.chat) this.#sendOperation(owed.operation);
      else if (this.#maySend(owed.chat.room)) this.#sendChat(owed.chat);
    }
  }

  /** Live, and the room's join (if one is asked) answered: a chat would not be refused `not_member`
   * for coming too early. */
  #maySend(room) {
    return this.state === "live" && !this.#joining.has(room);
  }

  /** Joins `room` again on a new connection, resuming after the last message seen. With none seen
   * (nothing came since the join, and `seen` was not told of any), anything may have been missed:
   * a position no stream has gets `recovered:false` and the stream's position, told as "reset". */
  #rejoin(socket, room) {
    const since = this.#rooms.get(room)?.since ?? { seq: 0, epoch: UNKNOWN_EPOCH };
    const frame = { type: "join", room, data: { since } };
    return new Promise((resolve) => {
      const id = newId();
      const operation = { frame: { ...frame, id }, resolve, reject: resolve, sent: true, rejoin: true };
      this.#inFlight.set(id, { operation });
      this.#transmit(socket, operation.frame);
    }).then((reply) => {
      if (reply?.type === "ack") return this.#resumed(room, reply.data);
      const code = reply?.data?.code;
      if (FINAL_CODES.has(code)) {
        this.#rooms.delete(room);
        this.emit("removed", { room, code, message: reply.data.message });
      }
    });
  }

  #resumed(room, answer) {
    if (!answer || answer.recovered !== false) return;
    // Redis is away: the stream stands where this client left it. What follows comes live, or after
    // a hole notice (`interrupted`), which asks for this resume again: nothing to reload.
    if (answer.reason === "interrupted") return;
    const known = this.#rooms.get(room);
    if (known) known.since = { seq: answer.seq, epoch: answer.epoch };
    this.emit("reset", { room, reason: answer.reason, seq: answer.seq, epoch: answer.epoch });
  }

  #sendChat(chat) {
    const frame = { type: "chat", room: chat.room, id: chat.id, data: chat.data };
    this.#inFlight.set(chat.id, { chat });
    this.#transmit(this.#socket, frame);
  }

  #sendOperation(operation) {
    const id = operation.frame.id ?? newId();
    operation.frame = { ...operation.frame, id };
    operation.sent = true;
    this.#inFlight.set(id, { operation });
    this.#transmit(this.#socket, operation.frame);
  }

  #transmit(socket, frame) {
    if (!socket || socket.readyState !== 1) return;
    socket.send(JSON.stringify(frame));
    this.#answerBy = Math.min(this.#answerBy, Date.now() + this.#options.answerTimeoutMs);
  }

  #onFrame(socket, text) {
    if (socket !== this.#socket) return;
    let frame;
    try {
      frame = JSON.parse(text);
    } catch {
      return;
    }
    // Heard from: the broker is alive, whatever it answers.
    this.#answerBy = this.#inFlight.size ? Date.now() + this.#options.answerTimeoutMs : Infinity;
    this.emit("frame", frame);
    if (frame.id !== undefined && REPLIES.has(frame.type) && this.#inFlight.has(frame.id)) {
      return this.#answered(frame);
    }
    switch (frame.type) {
      case "chat":
      case "notification":
        return this.#once(frame) && this.emit("message", frame);
      case "message_deleted":
        if (!this.#once(frame)) return;
        return this.emit("deleted", { room: frame.room, id: frame.data?.id, from: frame.data?.from });
      case "reaction_added":
      case "reaction_removed": {
        if (!this.#once(frame)) return;
        const { id, from: author, emoji } = frame.data ?? {};
        const added = frame.type === "reaction_added";
        return this.emit("reaction", { room: frame.room, id, author, user: frame.from, emoji, added });
      }
      case "message_edited": {
        if (!this.#once(frame)) return;
        const { id, content } = frame.data ?? {};
        return this.emit("edited", { room: frame.room, id, from: frame.from, content, at: frame.timestamp });
      }
      case "presence": {
        const change = this.members.apply(frame);
        if (change) this.emit("presence", change);
        return;
      }
      case "typing": {
        const change = this.typers.apply(frame);
        if (change) this.emit("typing", change);
        return;
      }
      case "joined":
        return this.#joinedWhileLive(frame);
      case "room_removed":
        this.#rooms.delete(frame.room);
        return this.emit("room_removed", { room: frame.room, by: frame.data?.by });
      case "system":
        if (frame.data?.event === "token_expiring") this.#refresh();
        return;
    }
    const told = streamEvent(frame);
    if (told) this.emit(...told);
  }

  /** Whether a message or room event is new: one at or below the room's last seq (same stream)
   * was seen already. A new one moves the room's resume point. */
  #once(frame) {
    const known = frame.room && typeof frame.seq === "number" ? this.#rooms.get(frame.room) : null;
    if (known) {
      const since = known.since;
      if (since && since.epoch === frame.epoch && frame.seq <= since.seq) return false;
      known.since = { seq: frame.seq, epoch: frame.epoch };
    }
    return true;
  }

  /** Cluster mode: the instance missed messages of a room while this connection stayed up. */
  #joinedWhileLive(frame) {
    const { reason, seq, epoch } = frame.data ?? {};
    if (reason === "interrupted" && this.#socket) return this.#rejoin(this.#socket, frame.room);
    const known = this.#rooms.get(frame.room);
    if (known) known.since = { seq: seq - 1, epoch };
    this.emit("reset", { room: frame.room, reason, seq: seq - 1, epoch });
  }

  #answered(frame) {
    const owed = this.#inFlight.get(frame.id);
    this.#inFlight.delete(frame.id);
    if (this.#inFlight.size === 0) this.#answerBy = Infinity;
    const code = frame.type === "error" ? frame.data?.code : null;
    if (owed.chat) return this.#chatAnswered(owed.chat, frame, code);
    const { operation } = owed;
    if (operation.rejoin) return operation.resolve(frame);
    if (code && !FINAL_CODES.has(code)) return this.#later(() => this.#sendOperation(operation), frame);
    this.outbox.removeOperation(operation);
    if (code && !(operation.resent && alreadyDone(operation.frame, code))) {
      return operation.reject(Object.assign(new Error(frame.data?.message ?? code), { code }));
    }
    operation.resolve(frame);
  }

  #chatAnswered(chat, frame, code) {
    if (code && !FINAL_CODES.has(code)) return this.#later(() => this.#sendChat(chat), frame);
    this.outbox.removeChat(chat.id);
    if (code) {
      const message = frame.data?.message ?? code;
      const until = frame.data?.until ?? null; // a mute's end
      return this.emit("failed", { id: chat.id, room: chat.room, data: chat.data, code, message, until });
    }
    this.emit("acked", { id: chat.id, room: chat.room, seq: frame.seq ?? frame.data?.seq });
  }

  /** Retries after the broker's hint, or the backoff; the item stays owed meanwhile. */
  #later(again, frame) {
    const hint = frame.data?.retry_after_ms;
    const delay = typeof hint === "number" ? hint : this.#backoff(1);
    this.#after(delay, () => this.state === "live" && again());
  }

  async #refresh() {
    if (!this.#options.refreshToken) return;
    const token = await this.#options.refreshToken();
    const reply = await this.#operation({ type: "refresh", data: { token } }).catch(() => null);
    if (reply) this.#token = token;
  }

  #startHeartbeat(socket) {
    clearInterval(this.#heartbeat);
    this.#answerBy = Infinity;
    const every = Math.min(this.#options.pingIntervalMs, this.#options.answerTimeoutMs / 2);
    this.#heartbeat = setInterval(() => {
      if (socket !== this.#socket) return;
      if (Date.now() > this.#answerBy) return this.#dropped(socket, 4999, true);
      if (this.#inFlight.size === 0 && this.#answerBy === Infinity) {
        const id = newId();
        this.#inFlight.set(id, { operation: { frame: { type: "ping", id }, resolve() {}, rejoin: true } });
        this.#transmit(socket, { type: "ping", id });
      }
    }, every);
  }

  /** The connection is gone (or presumed dead: `hung`); what was in flight is owed again. */
  #dropped(socket, code, hung = false) {
    if (socket !== this.#socket) return;
    this.#socket = null;
    clearInterval(this.#heartbeat);
    if (hung) socket.close();
    for (const owed of this.#inFlight.values()) {
      if (owed.operation?.rejoin) owed.operation.resolve(null);
      else if (owed.operation) owed.operation.resent = true;
    }
    this.#inFlight.clear();
    if (this.#stopped) return this.#setState("closed");
    if (code === 4003) {
      // Banned from the instance: it does not come back by itself, and holds no timer.
      this.#stopped = true;
      this.#clearTimers();
      return this.#setState("banned");
    }
    if (code === 4001 && this.#options.refreshToken) {
      return this.#options.refreshToken().then((token) => {
        this.#token = token;
        this.#retry();
      }, () => this.#retry());
    }
    this.#retry();
  }

  #retry() {
    this.#attempt += 1;
    const delay = this.#backoff(this.#attempt);
    this.#setState("reconnecting", delay);
    this.#retryTimer = this.#after(delay, () => {
      this.#retryTimer = null;
      if (!this.#stopped) this.#open();
    });
  }

  /** In a browser, its word on the network: offline, the connection is as good as gone (no need
   * to wait for the heartbeat to find it silent); online again, the next try is now, not after
   * the backoff. */
  #watchNetwork() {
    if (this.#network || typeof globalThis.addEventListener !== "function") return;
    const offline = () => this.#socket && this.#dropped(this.#socket, 4999, true);
    const online = () => {
      if (this.#stopped || this.#retryTimer === null) return;
      clearTimeout(this.#retryTimer);
      this.#timers.delete(this.#retryTimer);
      this.#retryTimer = null;
      this.#open();
    };
    this.#network = { offline, online };
    globalThis.addEventListener("offline", offline);
    globalThis.addEventListener("online", online);
  }

  #unwatchNetwork() {
    if (!this.#network) return;
    globalThis.removeEventListener("offline", this.#network.offline);
    globalThis.removeEventListener("online", this.#network.online);
    this.#network = null;
  }

  #backoff(attempt) {
    return backoff(this.#options.backoffMs, this.#options.maxBackoffMs, attempt);
  }

  #after(ms, run) {
    const timer = setTimeout(() => {
      this.#timers.delete(timer);
      run();
    }, ms);
    this.#timers.add(timer);
    return timer;
  }

  #clearTimers() {
    clearInterval(this.#heartbeat);
    for (const timer of this.#timers) clearTimeout(timer);
    this.#timers.clear();
    this.#retryTimer = null;
  }

  #setState(state, retryInMs = 0) {
    this.state = state;
    this.emit("state", { state, retryInMs });
  }
}
