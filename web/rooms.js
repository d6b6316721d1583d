// The room list (the caller's and public rooms), the online users to open a direct conversation
// with, and the open room's participants with their presence.

import { $, el, button, clear } from "./view.js";

export function directRoom(me, other) {
  const [a, b] = [me, other].sort();
  return `dm:${a}:${b}`;
}

// A room as a person calls it: a direct room by the other person's name.
export function roomName(room, me) {
  const pair = /^dm:([^:]+):([^:]+)$/.exec(room);
  if (!pair) return room;
  return pair[1] === me ? pair[2] : pair[1];
}

export function renderRooms(rooms, current, onOpen, me, unread = new Set()) {
  const list = $("room-list");
  clear(list);
  for (const room of rooms) {
    const item = el("li", room.id === current ? "current" : "");
    const name = roomName(room.id, me);
    const label = room.type === "public" ? name : room.type === "direct" ? `${name} (direct)` : `${name} (${room.type})`;
    const open = button(label, () => onOpen(room.id), "room-name");
    // What the broker counts unread for this user, or "new" for what came since it last said.
    const count = room.id === current ? 0 : room.unread ?? 0;
    if (count > 0 || unread.has(room.id)) {
      open.classList.add("unread");
      open.append(el("span", "badge", count > 0 ? ` • ${count}` : " • new"));
    }
    item.append(open);
    list.append(item);
  }
  const total = rooms.reduce((sum, room) => sum + (room.id === current ? 0 : room.unread ?? 0), 0);
  document.title = total > 0 ? `(${total}) wsbroker chat` : "wsbroker chat";
}

// The room list: the broker's answer to GET /rooms, then kept live by the user's own stream: each
// room's unread count and newest message (`unread`), rooms added and removed. Asked again only for
// a room it does not know. A room too large for `unread` events shows "new" for a message that
// came while it was not on show.
export class RoomList {
  constructor({ api, me, onOpen, current }) {
    Object.assign(this, { api, me, onOpen, current });
    this.rooms = [];
    this.fresh = new Set();
  }

  async refresh() {
    const result = await this.api.rooms().catch(() => ({ ok: false }));
    if (!result.ok) return;
    this.rooms = result.answer.rooms;
    this.render();
  }

  render() {
    renderRooms(this.rooms, this.current(), this.onOpen, this.me, this.fresh);
  }

  arrived(room) {
    if (room === this.current() || this.fresh.has(room)) return;
    this.fresh.add(room);
    this.render();
  }

  opened(room) {
    this.fresh.delete(room);
    this.render();
  }

  unread({ room, unread, lastMessage }) {
    const entry = this.rooms.find((known) => known.id === room);
    if (!entry) return this.refresh();
    entry.unread = unread;
    if (lastMessage) entry.last_message = lastMessage;
    if (unread === 0) this.fresh.delete(room);
    this.render();
  }

  // No longer a participant: a public room stays listed (anyone may join it), others go.
  removed(room) {
    this.fresh.delete(room);
    const entry = this.rooms.find((known) => known.id === room);
    if (entry?.type === "public") entry.unread = null;
    else this.rooms = this.rooms.filter((known) => known.id !== room);
    this.render();
  }
}

export function renderOnline(users, me, onMessage) {
  const list = $("online-list");
  clear(list);
  for (const user of users.filter((u) => u !== me)) {
    const item = el("li", "", user);
    item.append(button(`Message ${user}`, () => onMessage(user)));
    list.append(item);
  }
}

// Participants of the open room and their status, kept up to date by presence events.
export class People {
  // `extras(user)`: what else shows beside a participant (its role, the actions one has on it).
  constructor(extras = () => []) {
    this.status = new Map();
    this.extras = extras;
  }

  reset(participants) {
    this.status = new Map(participants.map((user) => [user, "offline"]));
    this.render();
  }

  // A presence answer: who is in the room now, and who of them is away.
  present(users, away) {
    for (const user of this.status.keys()) this.status.set(user, "offline");
    for (const user of users) this.status.set(user, away.includes(user) ? "away" : "online");
    this.render();
  }

  joined(user) {
    this.status.set(user, "online");
    this.render();
  }

  away(user) {
    if (this.status.has(user)) this.status.set(user, "away");
    this.render();
  }

  // A member who came back, or just wrote, is online.
  active(user) {
    if (this.status.get(user) === "online") return;
    this.status.set(user, "online");
    this.render();
  }

  left(user) {
    if (this.status.has(user)) this.status.set(user, "offline");
    this.render();
  }

  render() {
    const list = $("participants");
    clear(list);
    for (const [user, status] of [...this.status].sort()) {
      const item = el("li", "", user);
      item.dataset.user = user;
      item.append(el("span", `presence ${status}`, status));
      item.append(...this.extras(user));
      list.append(item);
    }
  }
}
