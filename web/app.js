// The chat page: signs in, keeps one connection, and ties the rooms, the messages and the
// participants to what the broker sends.

import { Api, reason } from "./api.js";
import { Connection } from "./connection.js";
import { Messages } from "./messages.js";
import { People, directRoom, renderOnline, renderRooms } from "./rooms.js";
import { $, clock } from "./view.js";

const session = { user: null, token: null };
const outgoing = new Map(); // id -> { room, content }: the user's messages not yet acked
let config = { auth: false };
let api;
let connection;
let messages;
let people;
let current = sessionStorage.getItem("wsbroker.current");
let joined = new Set(JSON.parse(sessionStorage.getItem("wsbroker.rooms") || "[]"));
let older = null;
let loading = null; // frames of the room that arrive while its history loads
const streams = new Map(); // room -> { seq, epoch } of the last room message seen, for resuming

// Notes the newest place in a room's stream this page has seen.
function seen(message) {
  if (!message.room || typeof message.seq !== "number") return;
  const known = streams.get(message.room);
  if (!known || known.epoch !== message.epoch || message.seq > known.seq) {
    streams.set(message.room, { seq: message.seq, epoch: message.epoch });
  }
}

function showSigninError(text) {
  $("signin-error").textContent = text;
  $("connection").textContent = text;
  $("connection").className = "state down";
}

// The `sub` of a JWT, for showing who is signed in (the broker verifies the token, not the page).
function subjectOf(token) {
  try {
    const payload = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(atob(payload)).sub || "?";
  } catch {
    return "?";
  }
}

async function boot() {
  config = await (await fetch("/web/config.json")).json();
  const token = new URLSearchParams(location.search).get("token") || sessionStorage.getItem("wsbroker.token");
  const name = sessionStorage.getItem("wsbroker.user");
  $("signin-name-row").hidden = config.auth;
  $("signin-token-row").hidden = !config.auth;
  $("signin-form").addEventListener("submit", (event) => {
    event.preventDefault();
    signIn();
  });
  if (config.auth && token) {
    $("signin-token").value = token;
    signIn();
  } else if (config.auth) {
    showSigninError("This server needs a token to sign in: paste one, or open the page with ?token=");
  } else if (name) {
    $("signin-name").value = name;
    signIn();
  }
}

async function signIn() {
  $("signin-error").textContent = "";
  if (config.auth) {
    const token = $("signin-token").value.trim();
    if (!token) return showSigninError("No token: this server needs one to sign in.");
    session.token = token;
    // Checked before connecting: a refused WebSocket does not say why.
    const check = await new Api(session).rooms();
    if (check.status === 401) {
      session.token = null;
      return showSigninError("The server refused this token (expired or not valid): paste another.");
    }
    session.user = subjectOf(token);
    sessionStorage.setItem("wsbroker.token", token);
  } else {
    const name = $("signin-name").value.trim();
    if (!name) return showSigninError("Enter a name.");
    session.user = name;
    sessionStorage.setItem("wsbroker.user", name);
  }
  start();
}

function wsUrl() {
  const url = new URL("/ws", location.href);
  url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
  if (session.token) url.searchParams.set("token", session.token);
  else url.searchParams.set("user", session.user);
  return url.href;
}

function start() {
  $("signin").hidden = true;
  $("chat").hidden = false;
  $("me").textContent = `signed in as ${session.user}`;
  api = new Api(session);
  messages = new Messages({ me: session.user, onRetry: resend, onDelete: remove, onOlder: loadOlder });
  people = new People();
  connection = new Connection(wsUrl);
  connection.addEventListener("state", (event) => showState(event.detail));
  connection.addEventListener("open", onLive);
  connection.addEventListener("frame", (event) => onFrame(event.detail));
  wireControls();
  connection.start();
  setInterval(refreshOnline, 10000);
}

// "live" only once the rooms are joined again: a chat sent before its room's join is acked
// would be refused `not_member`.
function showState({ state, retryIn }) {
  const status = $("connection");
  const text = { connecting: "connecting…", live: "joining rooms…", closed: "closed" }[state];
  status.textContent = text || (retryIn > 0 ? `reconnecting in ${retryIn} s` : "reconnecting…");
  status.className = "state down";
}

// Connected (again): every room of this page is resumed where the page left it (the broker sends
// what was missed), or reloaded when it cannot be.
async function onLive() {
  for (const room of joined) {
    const since = streams.get(room);
    const reply = since
      ? await connection.request({ type: "join", room, data: { since } })
      : await connection.request({ type: "join", room });
    const recovered = since && reply.type === "ack" && reply.data && reply.data.recovered;
    if (room === current && !recovered) await openRoom(current);
  }
  if (connection.isLive()) {
    $("connection").textContent = "live";
    $("connection").className = "state live";
  }
  refreshRooms();
  refreshOnline();
}

async function refreshRooms() {
  const result = await api.rooms();
  if (result.ok) renderRooms(result.answer.rooms, current, openRoom);
}

async function refreshOnline() {
  if (!connection.isLive()) return;
  const result = await api.online();
  if (result.ok) renderOnline(result.answer.users, session.user, (user) => openRoom(directRoom(session.user, user)));
}

async function openRoom(room) {
  const reply = await connection.request({ type: "join", room });
  if (reply.type === "error") {
    $("create-error").textContent = `cannot join ${room}: ${reply.data.code}: ${reply.data.message}`;
    return;
  }
  joined.add(room);
  sessionStorage.setItem("wsbroker.rooms", JSON.stringify([...joined]));
  sessionStorage.setItem("wsbroker.current", room);
  current = room;
  loading = [];
  $("room-title").textContent = room;
  $("composer").hidden = false;
  $("room-actions").hidden = false;
  messages.reset();
  const page = await api.history(room);
  if (page.ok) {
    for (const message of page.answer.messages) {
      messages.append(message, "sent");
      seen(message);
    }
    older = page.answer.next_before;
  }
  const arrived = loading;
  loading = null;
  for (const frame of arrived) onFrame(frame);
  await loadPeople(room);
  refreshRooms();
  $("message").focus();
}

async function loadPeople(room) {
  const result = await api.participants(room);
  people.reset(result.ok ? result.answer.participants.map((p) => p.user) : []);
  const presence = await connection.request({ type: "presence", room });
  if (presence.type === "presence" && room === current) people.present(presence.data.users, presence.data.away);
}

async function loadOlder() {
  if (!older || !current) return;
  const cursor = older;
  older = null;
  const page = await api.history(current, cursor);
  if (page.ok) {
    messages.prepend(page.answer.messages);
    older = page.answer.next_before;
  } else {
    older = cursor;
  }
}

function onFrame(frame) {
  if (loading && frame.room === current) {
    loading.push(frame);
    return;
  }
  const mine = frame.id !== undefined && outgoing.has(frame.id);
  switch (frame.type) {
    case "chat":
    case "notification":
      seen(frame);
      if (frame.room === current) messages.append(frame, mine && frame.from === session.user ? "pending" : "sent");
      break;
    case "ack":
      if (mine) {
        outgoing.delete(frame.id);
        messages.acked(frame.id);
      }
      break;
    case "error":
      if (mine) messages.failed(frame.id, frame.data.code);
      break;
    case "presence": {
      // One join/leave, or a coalesced batch of them.
      const data = frame.data || {};
      const joined = data.event === "batch" ? data.joined : data.status === "join" ? [data.user] : [];
      const left = data.event === "batch" ? data.left : data.status === "leave" ? [data.user] : [];
      if (frame.room === current) joined.forEach((user) => people.joined(user));
      if (frame.room === current) left.forEach((user) => people.left(user));
      if (joined.length + left.length > 0) refreshOnline();
      break;
    }
    case "message_deleted":
      if (frame.room === current) messages.deleted(frame.data.id, frame.data.from);
      break;
    case "system":
      if (frame.data && frame.data.event === "token_expiring") showExpiry(frame.data.expires_at);
      break;
  }
}

function send() {
  const box = $("message");
  const content = box.value;
  if (!content.trim() || !current) return;
  box.value = "";
  const id = crypto.randomUUID();
  outgoing.set(id, { room: current, content });
  messages.append({ id, from: session.user, data: { content }, timestamp: new Date().toISOString() }, "pending");
  transmit(id);
}

function transmit(id) {
  const { room, content } = outgoing.get(id);
  if (!connection.send({ type: "chat", room, id, data: { content } })) messages.failed(id, "disconnected");
}

function resend(id) {
  if (!outgoing.has(id)) outgoing.set(id, { room: current, content: messages.content(id) });
  messages.pending(id);
  transmit(id);
}

async function remove(id) {
  const reply = await connection.request({ type: "delete", room: current, data: { id, from: session.user } });
  if (reply.type === "error") messages.failed(id, reply.data.code);
}

function showExpiry(expiresAt) {
  $("expiry-text").textContent = `Your session ends at ${clock(expiresAt)}: paste a new token to stay signed in.`;
  $("expiry").hidden = false;
}

async function renew() {
  const token = $("expiry-token").value.trim();
  if (!token) return;
  const reply = await connection.request({ type: "refresh", data: { token } });
  if (reply.type === "ack") {
    session.token = token;
    sessionStorage.setItem("wsbroker.token", token);
    $("expiry").hidden = true;
    $("expiry-token").value = "";
  } else {
    $("expiry-text").textContent = `The new token was refused: ${reply.data.message}`;
  }
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
    await connection.request({ type: "leave", room: current });
    joined.delete(current);
    sessionStorage.setItem("wsbroker.rooms", JSON.stringify([...joined]));
    sessionStorage.removeItem("wsbroker.current");
    current = null;
    messages.reset();
    people.reset([]);
    $("room-title").textContent = "Pick a room";
    $("composer").hidden = true;
    $("room-actions").hidden = true;
    refreshRooms();
  });
  $("create-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const name = $("create-name").value.trim();
    if (!name) return;
    const result = await api.createRoom(name, $("create-type").value);
    if (!result.ok) {
      $("create-error").textContent = reason(result);
      return;
    }
    $("create-error").textContent = "";
    $("create-name").value = "";
    openRoom(name);
  });
  $("expiry-send").addEventListener("click", renew);
}

boot();
