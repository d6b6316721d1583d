// The client library against a real broker: hangs, crashes and restarts with chats in flight, an
// offline delete, a stream that cannot be resumed, a token refresh, a reconnect storm.
// Run by scripts/test.sh: node --experimental-websocket --test tests/js/

import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import { after, test } from "node:test";

import { Client, storageOutbox } from "../../clients/js/index.js";
import { Broker, once } from "./broker.mjs";

const QUICK = { backoffMs: 50, maxBackoffMs: 500, pingIntervalMs: 200, answerTimeoutMs: 1000 };
const brokers = [];
const clients = [];
// Whatever a test left open (it failed half-way) is closed, so the run ends: a client left
// reconnecting would keep Node alive.
after(() => {
  clients.forEach((made) => made.close());
  return Promise.all(brokers.map((broker) => broker.stop()));
});

/** A client of the test's, closed after the run whatever happens. */
function track(made) {
  clients.push(made);
  return made;
}

async function broker(args) {
  const started = await Broker.start(args);
  brokers.push(started);
  return started;
}

async function client(broker, user, options = {}) {
  const made = track(new Client({ url: broker.url, user, ...QUICK, ...options }));
  made.connect();
  await once(made, "state", ({ state }) => state === "live");
  return made;
}

/** The contents of `room`'s chats `client` receives, in order, as they come. */
function received(client, room) {
  const contents = [];
  client.on("message", (frame) => frame.room === room && contents.push(frame.data.content));
  return contents;
}

/** A WebSocket constructor whose connections go where `gate.open` says: to the broker, or to a
 * port nobody listens on (a real refused connection); `gate.sockets` are the ones it made. */
function gated() {
  const gate = { open: true, sockets: [] };
  class Gated extends globalThis.WebSocket {
    constructor(url, ...rest) {
      super(gate.open ? url : "ws://127.0.0.1:1/ws", ...rest);
      gate.sockets.push(this);
    }
  }
  return { gate, Gated };
}

async function until(check, what) {
  const deadline = Date.now() + 15_000;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`not so within 15 s: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

test("chats sent while the broker hangs, is killed and restarts are each delivered once, in order", async () => {
  const server = await broker(["--rate-limit", "0"]);
  const alice = await client(server, "alice");
  const bob = await client(server, "bob");
  await alice.join("lobby");
  await bob.join("lobby");
  const got = received(bob, "lobby");
  const acked = [];
  alice.on("acked", ({ id }) => acked.push(id));
  const failed = [];
  alice.on("failed", (failure) => failed.push(failure));
  const sent = [];
  for (let i = 0; i < 5; i++) sent.push(alice.send("lobby", { content: `m${i}` }));
  await until(() => acked.length === 5, "the first five acked");
  server.hang();
  for (let i = 5; i < 10; i++) sent.push(alice.send("lobby", { content: `m${i}` }));
  await once(alice, "state", ({ state }) => state === "reconnecting");
  await server.kill();
  await server.restart();
  await until(() => acked.length === 10, "every chat acked");
  await until(() => got.length >= 10, "bob has every chat");
  assert.deepEqual(failed, []);
  assert.deepEqual([...acked].sort(), [...sent].sort(), "each chat acked once");
  assert.deepEqual(got, sent.map((_, i) => `m${i}`), "bob got each once, in order");
  const stored = (await server.history("lobby")).map((message) => message.data.content);
  assert.deepEqual(stored, got, "stored once each");
  assert.equal(alice.outbox.chats.size, 0);
  alice.close();
  bob.close();
});

test("a delete made while offline is sent on reconnect, never as a resend", async () => {
  const server = await broker();
  const alice = await client(server, "alice");
  await alice.join("lobby");
  const id = alice.send("lobby", { content: "to delete" });
  await once(alice, "acked", (ack) => ack.id === id);
  await server.kill();
  await once(alice, "state", ({ state }) => state === "reconnecting");
  const deleted = alice.delete("lobby", id, "alice");
  const told = once(alice, "deleted", (gone) => gone.id === id);
  await server.restart();
  await deleted;
  await told;
  assert.deepEqual(await server.history("lobby"), [], "deleted, and not sent again");
  alice.close();
});

test("a stream that cannot be resumed is told as a reset, with where it stands", async () => {
  const server = await broker(["--database-url", "none"]);
  const alice = await client(server, "alice");
  await alice.join("lobby");
  const id = alice.send("lobby", { content: "before" });
  await once(alice, "message", (frame) => frame.id === id);
  const before = alice.rooms().get("lobby");
  await server.kill();
  const reset = once(alice, "reset", (told) => told.room === "lobby");
  await server.restart();
  const told = await reset;
  assert.equal(told.reason, "epoch_changed");
  assert.notEqual(told.epoch, before.epoch, "a new stream");
  const next = alice.send("lobby", { content: "after" });
  const frame = await once(alice, "message", (message) => message.id === next);
  assert.equal(frame.seq, 1, "numbered in the new stream, and delivered");
  alice.close();
});

function token(secret, sub, seconds, claims = {}) {
  const part = (value) => Buffer.from(JSON.stringify(value)).toString("base64url");
  const payload = { sub, exp: Math.floor(Date.now() / 1000) + seconds, ...claims };
  const body = `${part({ alg: "HS256", typ: "JWT" })}.${part(payload)}`;
  return `${body}.${createHmac("sha256", secret).update(body).digest("base64url")}`;
}

test("a token about to expire is refreshed through the callback, on the same connection", async () => {
  const secret = "a-secret-for-the-js-tests-0123456789";
  const server = await broker(["--auth-enabled", "--jwt-secret", secret, "--jwt-leeway", "0s"]);
  let refreshed = 0;
  const refreshToken = async () => {
    refreshed += 1;
    return token(secret, "alice", 3600);
  };
  const expiresAt = Date.now() + 2000;
  const alice = await client(server, undefined, { token: token(secret, "alice", 2), refreshToken });
  const states = [];
  alice.on("state", ({ state }) => states.push(state));
  await alice.join("lobby");
  await until(() => refreshed === 1, "the callback was asked");
  // Past the first token's expiry: without the refresh the broker closes 4001 at this point.
  await new Promise((resolve) => setTimeout(resolve, expiresAt + 1000 - Date.now()));
  const id = alice.send("lobby", { content: "still here" });
  await once(alice, "acked", (ack) => ack.id === id);
  assert.deepEqual(states, [], "never dropped");
  alice.close();
});

test("500 clients dropped at once all come back and resume", async () => {
  const server = await broker(["--rate-limit", "0"]);
  const storm = [];
  for (let i = 0; i < 500; i++) {
    storm.push(track(new Client({ url: server.url, user: `u${i}`, ...QUICK, answerTimeoutMs: 5000, maxBackoffMs: 2000 })));
  }
  await Promise.all(storm.map(async (c) => {
    c.connect();
    await c.join("storm");
  }));
  const listener = storm[0];
  const got = received(listener, "storm");
  await server.kill();
  await server.restart();
  await until(() => storm.every((c) => c.state === "live"), "every client live again");
  const ids = storm.slice(1, 51).map((c, i) => c.send("storm", { content: `s${i}` }));
  await until(() => got.length === ids.length, "the listener got the 50 chats sent after the storm");
  assert.equal(new Set(got).size, ids.length, "each once");
  storm.forEach((c) => c.close());
});

test("a conversation someone opens with this user is told to it, and joining it delivers its messages", async () => {
  const server = await broker(["--rate-limit", "0"]);
  const alice = await client(server, "alice");
  const bob = await client(server, "bob");
  const added = once(bob, "room_added", (told) => told.room === "dm:alice:bob");
  await alice.join("dm:alice:bob");
  assert.deepEqual(await added, { room: "dm:alice:bob", type: "direct", by: "alice" });
  await bob.join("dm:alice:bob");
  const id = alice.send("dm:alice:bob", { content: "psst" });
  const frame = await once(bob, "message", (message) => message.id === id);
  assert.equal(frame.data.content, "psst");
  alice.close();
  bob.close();
});

test("a chat owed when its client goes away is sent by the next client on the same storage, once", async () => {
  const server = await broker(["--rate-limit", "0"]);
  const bob = await client(server, "bob");
  await bob.join("lobby");
  const got = received(bob, "lobby");
  const kept = new Map(); // a Storage, as sessionStorage is for the page
  const storage = { getItem: (key) => kept.get(key) ?? null, setItem: (key, value) => kept.set(key, value) };
  const first = await client(server, "alice", { outboxStore: storageOutbox(storage) });
  await first.join("lobby");
  await server.kill();
  await once(first, "state", ({ state }) => state === "reconnecting");
  const id = first.send("lobby", { content: "owed across a reload" });
  first.close(); // the page goes away with the chat unacked
  await server.restart();
  await until(() => bob.state === "live", "bob back in the room"); // he has no seq to resume from
  const second = track(new Client({ url: server.url, user: "alice", ...QUICK, outboxStore: storageOutbox(storage) }));
  assert.deepEqual([...second.outbox.chats.keys()], [id], "the chat is still owed");
  const acked = once(second, "acked", (ack) => ack.id === id);
  second.connect();
  await second.join("lobby");
  await acked;
  await until(() => got.includes("owed across a reload"), "bob got it");
  assert.equal(got.filter((content) => content === "owed across a reload").length, 1);
  assert.deepEqual(JSON.parse(kept.get("wsbroker.outbox")), [], "nothing owed any more");
  second.close();
  bob.close();
});

test("a member's away and back are told live and kept in the room's members", async () => {
  const server = await broker(["--away-after", "400ms", "--rate-limit", "0"]);
  const alice = await client(server, "alice");
  const bob = await client(server, "bob");
  await alice.join("r");
  await bob.join("r");
  await alice.presence("r");
  const changes = [];
  alice.on("presence", (change) => changes.push(change));
  // Alice keeps showing she is there; bob says nothing, and is told away without anyone asking.
  const keepActive = setInterval(() => alice.active(), 100);
  try {
    await until(() => alice.members.isAway("r", "bob"), "bob away");
    assert.equal(alice.members.isAway("r", "alice"), false);
    const back = once(alice, "presence", (change) => change.back.includes("bob"));
    bob.active();
    await back;
    assert.equal(alice.members.isAway("r", "bob"), false);
    assert.deepEqual(alice.members.of("r"), ["alice", "bob"]);
    const told = changes.flatMap((change) => [...change.away.map((u) => `${u} away`), ...change.back.map((u) => `${u} back`)]);
    assert.deepEqual(told.filter((line) => line.startsWith("bob")), ["bob away", "bob back"]);
  } finally {
    clearInterval(keepActive);
  }
  alice.close();
  bob.close();
});

test("an edit and a deletion made while a client cannot connect reach it once when it is back", async () => {
  const server = await broker(["--rate-limit", "0"]);
  const { gate, Gated } = gated();
  const alice = await client(server, "alice");
  const bob = await client(server, "bob", { WebSocket: Gated });
  await alice.join("r");
  await bob.join("r");
  const changes = [];
  bob.on("edited", ({ id, content, from }) => changes.push(`edited ${id} by ${from}: ${content}`));
  bob.on("deleted", ({ id, from }) => changes.push(`deleted ${id} of ${from}`));
  const got = received(bob, "r");
  const first = alice.send("r", { content: "helo" });
  const second = alice.send("r", { content: "oops" });
  await until(() => got.length === 2, "bob has both");
  gate.open = false;
  gate.sockets.at(-1).close();
  await once(bob, "state", ({ state }) => state === "reconnecting");
  await alice.edit("r", first, "hello");
  await alice.delete("r", second, "alice");
  const third = alice.send("r", { content: "still here" });
  await until(() => !alice.outbox.chats.has(third), "the third acked");
  gate.open = true;
  await until(() => got.length === 3, "bob is back and has the third");
  assert.deepEqual(changes, [`edited ${first} by alice: hello`, `deleted ${second} of alice`]);
  assert.deepEqual(got, ["helo", "oops", "still here"], "each message once, the changes in between");
  await assert.rejects(bob.edit("r", first, "not mine"), { code: "forbidden" });
  alice.close();
  bob.close();
});

test("a client that saw nothing of a room before a drop is told to reload it, and seen() makes it resume", async () => {
  const server = await broker(["--rate-limit", "0"]);
  const { gate, Gated } = gated();
  const alice = await client(server, "alice");
  const bob = await client(server, "bob", { WebSocket: Gated });
  await alice.join("quiet");
  await bob.join("quiet");
  const drop = async () => {
    gate.open = false;
    gate.sockets.at(-1).close();
    await once(bob, "state", ({ state }) => state === "reconnecting");
  };
  await drop();
  alice.send("quiet", { content: "while bob was away" });
  const reset = once(bob, "reset", (told) => told.room === "quiet");
  gate.open = true;
  const told = await reset;
  assert.equal(told.seq, 1, "where the stream stands: reload up to it");
  // Shown the history (as a page does), then dropped again: a resume from there, no reset.
  const [newest] = await server.history("quiet");
  bob.seen("quiet", newest);
  const resets = [];
  bob.on("reset", (reset) => resets.push(reset));
  const got = received(bob, "quiet");
  await until(() => bob.state === "live", "bob live");
  await drop();
  alice.send("quiet", { content: "second" });
  gate.open = true;
  await until(() => got.length === 1, "the second replayed");
  assert.deepEqual(got, ["second"]);
  assert.deepEqual(resets, []);
  alice.close();
  bob.close();
});

test("who is typing is kept per room from the broker's typing events", async () => {
  const server = await broker(["--rate-limit", "0", "--typing-coalesce", "0"]);
  const alice = await client(server, "alice");
  const bob = await client(server, "bob");
  await alice.join("r");
  await bob.join("r");
  const started = once(alice, "typing", (change) => change.typing.includes("bob"));
  bob.typing("r");
  await started;
  assert.deepEqual(alice.typers.of("r"), ["bob"]);
  const stopped = once(alice, "typing", (change) => change.stopped.includes("bob"));
  bob.typing("r", false);
  await stopped;
  assert.deepEqual(alice.typers.of("r"), []);
  alice.close();
  bob.close();
});

test("a reaction is told to the room, once per user, and a resent one is not an error", async () => {
  const server = await broker(["--rate-limit", "0"]);
  const alice = await client(server, "alice");
  const bob = await client(server, "bob");
  await alice.join("r");
  await bob.join("r");
  const id = alice.send("r", { content: "hi" });
  await until(() => !alice.outbox.chats.has(id), "acked");
  const told = once(alice, "reaction", (reaction) => reaction.id === id);
  await bob.react("r", id, "alice", "🎉");
  assert.deepEqual(await told, { room: "r", id, author: "alice", user: "bob", emoji: "🎉", added: true });
  await assert.rejects(bob.react("r", id, "alice", "🎉"), { code: "conflict" });
  await bob.react("r", id, "alice", "🎉", true);
  const [stored] = await server.history("r");
  assert.equal(stored.reactions, undefined, "taken back: none left");
  alice.close();
  bob.close();
});

test("the user's own stream tells a client its rooms' unread counts, receipts and removals without joining", async () => {
  const server = await broker(["--rate-limit", "0", "--unread-coalesce", "0"]);
  const alice = await client(server, "alice");
  const bob = await client(server, "bob");
  await alice.join("dm:alice:bob");
  await bob.join("dm:alice:bob");
  const phone = await client(server, "bob"); // joined to nothing
  const unread = once(phone, "unread", (told) => told.room === "dm:alice:bob" && told.unread === 1);
  const id = alice.send("dm:alice:bob", { content: "psst" });
  const told = await unread;
  assert.equal(told.lastMessage.id, id);
  assert.equal(told.lastSeq, 1);
  const receipt = once(alice, "receipt", (r) => r.room === "dm:alice:bob");
  const cleared = once(phone, "unread", (t) => t.room === "dm:alice:bob" && t.unread === 0);
  await bob.read("dm:alice:bob", 1);
  assert.deepEqual(await receipt, { room: "dm:alice:bob", user: "bob", seq: 1 });
  assert.equal((await cleared).lastRead, 1);

  const created = await fetch(`${server.http}/api/v1/chat/rooms?user=alice`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ name: "team", type: "private", members: ["bob"] }),
  });
  assert.equal(created.status, 201);
  const removed = once(phone, "room_removed", (r) => r.room === "team");
  const gone = await fetch(`${server.http}/api/v1/chat/rooms/team/participants/bob?user=alice`, { method: "DELETE" });
  assert.equal(gone.status, 204);
  assert.deepEqual(await removed, { room: "team", by: "alice" });
  for (const c of [alice, bob, phone]) c.close();
});

test("a moderator mutes and unmutes over the client, the muted user is told and its chat fails muted, an instance ban stops its client", async () => {
  const secret = "a-secret-for-the-js-tests-0123456789";
  const server = await broker(["--auth-enabled", "--jwt-secret", secret, "--rate-limit", "0"]);
  const as = (user, claims) => ({ token: token(secret, user, 3600, claims) });
  const olive = await client(server, undefined, as("olive", { role: "admin" }));
  const created = await fetch(`${server.http}/api/v1/chat/rooms`, {
    method: "POST",
    headers: { "Content-Type": "application/json", Authorization: `Bearer ${token(secret, "olive", 3600)}` },
    body: JSON.stringify({ name: "town", type: "public" }),
  });
  assert.equal(created.status, 201);
  const bob = await client(server, undefined, as("bob"));
  await olive.join("town");
  await bob.join("town");

  const told = once(bob, "moderation", (event) => event.action === "mute");
  await olive.moderate("mute", "town", { user: "bob", duration: 600, reason: "calm down" });
  const muted = await told;
  assert.equal(muted.room, "town");
  assert.equal(muted.by, "olive");
  assert.equal(muted.reason, "calm down");
  assert.ok(Date.parse(muted.until) > Date.now(), muted.until);
  const failed = once(bob, "failed", () => true);
  bob.send("town", { content: "let me speak" });
  assert.equal((await failed).code, "muted");
  await assert.rejects(bob.moderate("kick", "town", { user: "olive" }), (error) => error.code === "forbidden");

  await olive.moderate("unmute", "town", { user: "bob" });
  const id = bob.send("town", { content: "thanks" });
  await once(bob, "acked", (ack) => ack.id === id);

  const banned = once(bob, "state", ({ state }) => state === "banned");
  const ban = await fetch(`${server.http}/api/v1/chat/bans`, {
    method: "POST",
    headers: { "Content-Type": "application/json", Authorization: `Bearer ${token(secret, "olive", 3600, { role: "admin" })}` },
    body: JSON.stringify({ user: "bob" }),
  });
  assert.equal(ban.status, 204);
  await banned;
  assert.equal(bob.state, "banned", "it does not come back by itself");
  for (const c of [olive, bob]) c.close();
});
