// The chat page: signs in, keeps one connection, and ties the rooms, the messages and the
// participants to what the broker sends.

import { Api, reason } from "./api.js";
import { Renewal, boot } from "./signin.js";
import { Client, storageOutbox } from "./client.js";
import { Messages } from "./messages.js";
import { Replies } from "./replies.js";
import { Receipts } from "./receipts.js";
import { Search } from "./search.js";
import { Notices } from "./notices.js";
import { Typing } from "./composing.js";
import { Moderation } from "./moderation.js";
import { Files } from "./files.js";
import { People, RoomList, directRoom, renderOnline, roomName } from "./rooms.js";
import { $ } from "./view.js";

const session = { user: null, token: null };
let api;
let client;
let messages;
let people;
let replies;
let roomList;
let receipts;
let typing;
let moderation;
let filesView;
let notices;
let current = sessionStorage.getItem("wsbroker.current");
let joined = new Set(JSON.parse(sessionStorage.getItem("wsbroker.rooms") || "[]"));
let older = null;
let loading = null; // frames of the room that arrive while its history loads

const MAX_CONTENT = 4096;

function wsUrl() {
  const url = new URL("/ws", location.href);
  url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
  return url.href;
}

// The page is the client library's first user: it reconnects, resumes every room, and delivers
// each chat once; the page shows what it says.
function start(config) {
  $("signin").hidden = true;
  $("chat").hidden = false;
  $("me").textContent = `signed in as ${session.user}`;
  api = new Api(session);
  const files = { render: (...args) => filesView?.render(...args) };
  messages = new Messages({ files, me: session.user, onDismiss: dismiss, onDelete: remove, onEdit: edit, onReact: react, onReply: (id, from, text) => replies.start(id, from, text), onThread: (id) => replies.open(current, id), onOlder: loadOlder, onReport: (id, from) => moderation.report(id, from) });
  replies = new Replies(api);
  people = new People((user) => moderation.extras(user));
  receipts = new Receipts(session.user);
  roomList = new RoomList({ api, me: session.user, onOpen: openRoom, current: () => current });
  new Search({ api, me: session.user, onOpen: openAt });
  notices = new Notices({ api, me: session.user });
  notices.load();
  const renewal = new Renewal(session);
  client = new Client({
    url: wsUrl(),
    user: session.token ? undefined : session.user,
    token: session.token ?? undefined,
    outboxStore: storageOutbox(sessionStorage, `wsbroker.outbox.${session.user}`),
    refreshToken: () => renewal.ask(),
  });
  client.on("state", showState);
  client.on("message", onMessage);
  client.on("acked", ({ id, seq }) => messages.acked(id, seq));
  client.on("failed", ({ id, code, message, until }) => {
    messages.failed(id, why(code, message));
    if (code === "muted") moderation.showMuted(until);
  });
  client.on("deleted", onDeleted);
  client.on("edited", onEdited);
  client.on("reaction", onReaction);
  client.on("presence", onPresence);
  typing = new Typing({ client, me: session.user, current: () => current });
  client.on("typing", ({ room }) => room === current && typing.show());
  client.on("reset", ({ room }) => room === current && openRoom(current));
  client.on("removed", ({ room }) => forget(room));
  // The user's own stream keeps the room list live: counts, newest messages, rooms gone.
  client.on("unread", (told) => roomList.unread(told));
  client.on("room_removed", ({ room }) => {
    forget(room);
    roomList.removed(room);
    if (room === current) closeRoom();
  });
  client.on("receipt", ({ room, user, seq }) => room === current && receipts.read(user, seq));
  filesView = new Files({ api, session, client, current: () => current });
  moderation = new Moderation({ api, client, me: session.user, current: () => current, onMessageDelete: (id, from) => remove(id, from) });
  moderation.onChange = () => people.render();
  moderation.onRank = (moderates) => {
    if (messages.moderates === moderates) return;
    messages.moderates = moderates;
    messages.refreshActions();
  };
  client.on("moderation", (event) => {
    moderation.told(event);
    if (event.room === current) loadPeople(current);
  });
  client.on("room_updated", ({ room, title, topic, slow_mode_ms: slow, archived }) => {
    if (room !== current) return;
    $("room-title").textContent = title || roomName(room, session.user);
    moderation.showSettings({ title, topic, slow_mode_ms: slow, archived_at: archived ? "yes" : null });
  });
  // A conversation someone opened with this user, or a room they were added to: listed at once,
  // and a direct one joined in the background so its messages arrive (and mark it unread).
  client.on("room_added", ({ room, type }) => {
    if (type === "direct" && !joined.has(room)) {
      client.join(room).then(() => remember(room), () => {});
    }
    roomList.refresh();
  });
  client.on("frame", (frame) => {
    if (frame.type === "system" && frame.data?.event === "token_expiring") renewal.show(frame.data.expires_at);
  });
  wireControls();
  for (const room of joined) client.join(room).catch(() => forget(room));
  client.connect();
  // A newcomer lands in the default room, as in any chat app, instead of an empty page.
  if (!current && joined.size === 0 && config.default_room) current = config.default_room;
  if (current) openRoom(current);
  // Users who share no room with this one send no presence events here (until the user-level
  // stream lands): the Online list asks for them now and then; the rest follows events.
  setInterval(refreshOnline, 10000);
  // Typing or coming back to the page shows the person is there (queries do not), at most every 10 s.
  let told = 0;
  const here = () => {
    if (Date.now() - told < 10000) return;
    told = Date.now();
    client.active();
  };
  $("message").addEventListener("input", here);
  $("message").addEventListener("input", () => typing.typed());
  document.addEventListener("visibilitychange", () => document.visibilityState === "visible" && here());
}

// Who of the open room's members is there and who is away, once on opening it (a query, so it keeps
// nobody present); presence events keep it up to date after that.
async function refreshPresence() {
  if (!current || client.state !== "live") return;
  const room = current;
  const presence = await client.presence(room).catch(() => null);
  if (presence && room === current) people.present(presence.users, presence.away);
}

// "live" only once the rooms are joined again (the library says so), so a chat is never refused
// `not_member` on the way back.
function showState({ state, retryInMs }) {
  const status = $("connection");
  const text = { connecting: "connecting…", joining: "joining rooms…", live: "live", closed: "closed" }[state];
  const seconds = Math.ceil(retryInMs / 1000);
  status.textContent = text || (seconds > 0 ? `reconnecting in ${seconds} s` : "reconnecting…");
  status.className = state === "live" ? "state live" : "state down";
  if (state === "live") {
    roomList.refresh();
    refreshOnline();
  }
}

// A reason a person can act on, for a chat the broker will not take.
function why(code, message) {
  if (code === "content_too_long") return "too long: shorten it and send again";
  if (code === "not_member") return "you are not in this room any more";
  if (code === "forbidden") return `not allowed: ${message}`;
  return `${code}: ${message}`;
}

function remember(room) {
  joined.add(room);
  sessionStorage.setItem("wsbroker.rooms", JSON.stringify([...joined]));
}

function forget(room) {
  joined.delete(room);
  sessionStorage.setItem("wsbroker.rooms", JSON.stringify([...joined]));
}

// What is on show of `room` is read: the broker keeps it (unread counts everywhere), and the room
// list shows its counts again once it has. At once on opening a room, half a second after a
// message otherwise (a burst is one read).
let readTimer = null;
function markRead(room, now = false) {
  clearTimeout(readTimer);
  const send = () => {
    const since = room && client.rooms().get(room);
    if (!since?.seq || document.visibilityState !== "visible") return;
    // The broker's `unread` event (count 0) updates the room list, here and on other devices.
    client.read(room, since.seq).catch(() => {});
  };
  if (now) send();
  else readTimer = setTimeout(send, 500);
}

async function refreshOnline() {
  if (client.state !== "live") return;
  const result = await api.online().catch(() => ({ ok: false }));
  if (result.ok) renderOnline(result.answer.users, session.user, (user) => openRoom(directRoom(session.user, user)));
}

let opening = 0; // the latest openRoom: an earlier one still loading gives way to it

async function openRoom(room) {
  const mine = ++opening;
  try {
    await client.join(room);
  } catch (error) {
    $("create-error").textContent = `cannot join ${room}: ${error.code}: ${error.message}`;
    return;
  }
  if (mine !== opening) return;
  remember(room);
  sessionStorage.setItem("wsbroker.current", room);
  const again = room === current; // a reload of the room on show (after a reconnect or a reset)
  if (!again) typing.stopped();
  if (!again) moderation.showMuted(undefined);
  if (!again) replies.reset();
  current = room;
  roomList.opened(room);
  typing.show();
  loading = [];
  $("room-title").textContent = roomName(room, session.user);
  $("composer").hidden = false;
  $("room-actions").hidden = false;
  if (!again) messages.reset();
  if (!again) receipts.reset(null);
  const page = await api.history(room).catch(() => ({ ok: false }));
  if (mine !== opening) return;
  // A reload whose history cannot be read (no store) keeps what is on show.
  if (page.ok) {
    messages.reset();
    for (const message of page.answer.messages) messages.append(message, "sent");
    older = page.answer.next_before;
    // A resume after a drop starts after what is on show.
    const newest = page.answer.messages.at(-1);
    if (newest) client.seen(room, newest);
  }
  // Chats of this room still on their way (sent before a reload or while offline).
  for (const chat of client.outbox.chats.values()) {
    if (chat.room === room) messages.append(own(chat.id, chat.data), "pending");
  }
  const arrived = loading;
  loading = null;
  for (const { type, event, frame } of arrived) {
    if (type === "deleted") onDeleted(event);
    else if (type === "edited") onEdited(event);
    else if (type === "reaction") onReaction(event);
    else onMessage(frame);
  }
  await loadPeople(room);
  const seen = await api.receipts(room).catch(() => ({ ok: false }));
  if (room === current) receipts.reset(seen.ok ? seen.answer.receipts : null);
  markRead(room, true);
  roomList.render();
  // The composer takes the keys, unless the user started a search while the room loaded (taking
  // the focus then would send the rest of the query into the composer).
  if (!document.activeElement?.closest("#search-form")) $("message").focus();
}

// A search result: its room, with older pages loaded until the message is on show (at most 20),
// scrolled to and marked.
async function openAt(room, id) {
  await openRoom(room);
  for (let pages = 0; current === room && !messages.byId(id) && older && pages < 20; pages += 1) {
    await loadOlder();
  }
  const item = current === room && messages.byId(id);
  if (!item) return;
  for (const marked of document.querySelectorAll("#messages li.found")) marked.classList.remove("found");
  item.classList.add("found");
  item.scrollIntoView({ block: "center" });
}

async function loadPeople(room) {
  const result = await api.participants(room).catch(() => ({ ok: false }));
  if (room !== current) return;
  const participants = result.ok ? result.answer.participants : [];
  await moderation.load(room, participants);
  if (room !== current) return;
  people.reset(participants.map((p) => p.user));
  await refreshPresence();
}

async function loadOlder() {
  if (!older || !current) return;
  const cursor = older;
  older = null;
  const page = await api.history(current, cursor).catch(() => ({ ok: false }));
  if (page.ok) {
    messages.prepend(page.answer.messages);
    receipts.render();
    older = page.answer.next_before;
  } else {
    older = cursor;
  }
}

function onMessage(frame) {
  // A chat with no room went to everyone (or to this user): a notice, not a room's message.
  if (!frame.room) return notices.show(frame);
  if (loading && frame.room === current) {
    loading.push({ type: "message", frame });
    return;
  }
  // Whoever just wrote is there, whatever the last presence answer said.
  if (frame.room === current && frame.from) people.active(frame.from);
  if (frame.room && frame.room !== current) roomList.arrived(frame.room);
  const mine = frame.from === session.user && client.outbox.chats.has(frame.id);
  if (frame.room !== current) return;
  const known = messages.byKey.has(messages.key(frame.from, frame.id));
  messages.append(frame, mine ? "pending" : "sent");
  receipts.render();
  if (!known && typeof frame.data?.reply_to === "string") messages.replied(frame.data.reply_to);
  markRead(frame.room);
}

// A deletion or an edit in the room being loaded waits for its history, like a message (one the
// history already shows changes nothing).
function onDeleted(deleted) {
  if (deleted.room !== current) return;
  if (loading) return loading.push({ type: "deleted", event: deleted });
  messages.deleted(deleted.id, deleted.from);
}

function onReaction(reaction) {
  if (reaction.room !== current) return;
  if (loading) return loading.push({ type: "reaction", event: reaction });
  const { id, author, user, emoji, added } = reaction;
  messages.reacted(id, author, user, emoji, added);
}

function onEdited(edited) {
  if (edited.room !== current) return;
  if (loading) return loading.push({ type: "edited", event: edited });
  messages.edited(edited.id, edited.from, edited.content, edited.at);
}

// One join/leave/away/back, or a coalesced batch of them.
function onPresence({ room, joined: came, away, back, left }) {
  if (room === current) came.forEach((user) => people.joined(user));
  if (room === current) away.forEach((user) => people.away(user));
  if (room === current) back.forEach((user) => people.active(user));
  if (room === current) left.forEach((user) => people.left(user));
  // A leave is a disconnect or a member who left the room: the participants say which.
  if (room === current && left.length > 0) loadPeople(room);
  if (came.length + left.length > 0) refreshOnline();
}

function own(id, data) {
  return { id, from: session.user, data, timestamp: new Date().toISOString() };
}

function send() {
  const box = $("message");
  const content = box.value;
  if (!content.trim() || !current) return;
  const length = [...content].length;
  if (length > MAX_CONTENT) {
    $("composer-error").textContent = `Too long: ${length} characters, at most ${MAX_CONTENT}.`;
    return;
  }
  $("composer-error").textContent = "";
  box.value = "";
  typing.stopped();
  const replyTo = replies.take();
  const data = replyTo ? { content, reply_to: replyTo } : { content };
  const id = client.send(current, data);
  messages.append(own(id, data), "pending");
  if (replyTo) messages.replied(replyTo);
  box.scrollIntoView({ block: "nearest" });
}

function dismiss(id) {
  messages.remove(id);
}

async function edit(id, content) {
  if ([...content].length > MAX_CONTENT) return messages.editFailed(id, why("content_too_long"));
  try {
    await client.edit(current, id, content);
  } catch (error) {
    messages.editFailed(id, why(error.code, error.message));
  }
}

async function react(id, author, emoji, remove) {
  try {
    await client.react(current, id, author, emoji, remove);
  } catch (error) {
    $("composer-error").textContent = `not reacted: ${why(error.code, error.message)}`;
  }
}

async function remove(id, from = session.user) {
  try {
    await client.delete(current, id, from);
  } catch (error) {
    messages.deleteFailed(id, `${error.code}: ${error.message}`);
  }
}

// No room on show (the user left it, or was removed from it).
function closeRoom() {
  sessionStorage.removeItem("wsbroker.current");
  current = null;
  messages.reset();
  receipts.reset(null);
  people.reset([]);
  $("room-title").textContent = "Pick a room";
  $("composer").hidden = true;
  $("room-actions").hidden = true;
  roomList.render();
}

function wireControls() {
  $("composer").addEventListener("submit", (event) => {
    event.preventDefault();
    send();
  });
  $("message").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey) {
      event.preventDefault();
      send();
    }
  });
  $("leave").addEventListener("click", async () => {
    if (!current) return;
    const room = current;
    // No longer a participant (its connections leave the room at once), and not rejoined later.
    await api.leave(room).catch(() => {});
    await client.leave(room).catch(() => {});
    forget(room);
    if (room === current) closeRoom();
    roomList.refresh();
  });
  $("create-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const name = $("create-name").value.trim();
    if (!name) return;
    const result = await api.createRoom(name, $("create-type").value).catch(() => ({ ok: false, status: 0, answer: {} }));
    // A room of that name exists already (409), or the server keeps no rooms (404, run without a
    // store): join it by name (a public one lets anyone in).
    if (!result.ok && result.status !== 409 && result.status !== 404) {
      $("create-error").textContent = reason(result);
      return;
    }
    $("create-error").textContent = "";
    $("create-name").value = "";
    openRoom(name);
  });
}

boot(session, start);
