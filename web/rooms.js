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
  constructor() {
    this.status = new Map();
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
      list.append(item);
    }
  }
}
