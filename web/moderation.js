// Moderation on the page: the actions a room's owner and moderators have on a participant (mute,
// kick, ban, each with a duration and a reason), the room's settings and its reports, "report"
// and "block" for everyone, and "you are muted until ..." in place of failing each send.

import { $, el, button, clear, clock } from "./view.js";

const RANK = { member: 1, moderator: 2, owner: 3 };
const DURATIONS = [["600", "10 minutes"], ["3600", "1 hour"], ["86400", "1 day"], ["", "until lifted"]];

function enc(part) {
  return encodeURIComponent(part);
}

// Asks the person for a reason (and, for a mute or ban, a duration) in the page's small form;
// resolves with { reason, duration } or null when cancelled.
function ask(title, { duration = false } = {}) {
  const form = $("ask-form");
  $("ask-title").textContent = title;
  $("ask-duration-row").hidden = !duration;
  $("ask-reason").value = "";
  form.hidden = false;
  $("ask-reason").focus();
  return new Promise((resolve) => {
    const done = (answer) => {
      form.hidden = true;
      form.onsubmit = null;
      $("ask-cancel").onclick = null;
      resolve(answer);
    };
    form.onsubmit = (event) => {
      event.preventDefault();
      const seconds = $("ask-duration").value;
      const reason = $("ask-reason").value.trim();
      done({ reason: reason || undefined, duration: seconds ? Number(seconds) : undefined });
    };
    $("ask-cancel").onclick = () => done(null);
  });
}

export class Moderation {
  constructor({ api, client, me, current, onMessageDelete }) {
    Object.assign(this, { api, client, me, current, onMessageDelete });
    this.roles = new Map();
    this.muted = new Map(); // user -> until (null: until lifted), in the open room
    this.settings = null;
    const select = $("ask-duration");
    for (const [value, label] of DURATIONS) select.append(Object.assign(el("option", "", label), { value }));
    $("moderate").addEventListener("click", () => this.togglePanel());
    $("settings-form").addEventListener("submit", (event) => {
      event.preventDefault();
      this.saveSettings();
    });
    $("archive").addEventListener("click", () => this.archive());
  }

  rank(user = this.me) {
    return RANK[this.roles.get(user)] ?? 0;
  }

  // A room opened: who has which role, its settings, and (for its moderators) who is muted.
  async load(room, participants) {
    this.roles = new Map(participants.map((p) => [p.user, p.role]));
    this.muted = new Map();
    if (room !== this.loaded) $("moderation").hidden = true;
    this.loaded = room;
    $("moderate").hidden = this.rank() < RANK.moderator;
    this.onRank?.(this.rank() >= RANK.moderator);
    const settings = await this.api.call("GET", `rooms/${enc(room)}/settings`).catch(() => ({ ok: false }));
    if (room !== this.current()) return;
    this.showSettings(settings.ok ? settings.answer : null);
    if (this.rank() >= RANK.moderator) await this.loadMutes(room);
  }

  async loadMutes(room) {
    const mutes = await this.api.call("GET", `rooms/${enc(room)}/mutes`).catch(() => ({ ok: false }));
    if (room !== this.current() || !mutes.ok) return;
    this.muted = new Map(mutes.answer.items.map((m) => [m.user, m.until]));
  }

  // The title (or the room's name) and topic on show; archived rooms take nothing.
  showSettings(settings) {
    this.settings = settings;
    $("room-topic").textContent = settings?.topic ?? "";
    if (settings?.title) $("room-title").textContent = settings.title;
    const archived = Boolean(settings?.archived_at);
    $("archived").hidden = !archived;
    if (archived) $("composer").hidden = true;
  }

  // What the participant list shows beside `user`: its role and, for those who may, actions.
  extras(user) {
    const items = [];
    const role = this.roles.get(user);
    if (role && role !== "member") items.push(el("span", "role", role));
    if (this.muted.has(user)) items.push(el("span", "role muted", "muted"));
    if (user === this.me) return items;
    const room = this.current();
    if (this.rank() >= RANK.moderator && this.rank() > this.rank(user)) {
      if (this.muted.has(user)) items.push(button(`Unmute ${user}`, () => this.act("unmute", room, user)));
      else items.push(button(`Mute ${user}`, () => this.act("mute", room, user)));
      items.push(button(`Kick ${user}`, () => this.act("kick", room, user)));
      items.push(button(`Ban ${user}`, () => this.act("ban", room, user)));
    }
    items.push(button(`Block ${user}`, () => this.block(user)));
    return items;
  }

  async act(action, room, user) {
    let data = { user };
    if (action !== "unmute") {
      const answer = await ask(`${action} ${user}`, { duration: action !== "kick" });
      if (!answer) return;
      data = { user, ...answer };
      if (action === "kick") delete data.duration;
    }
    try {
      await this.client.moderate(action, room, data);
      $("moderation-error").textContent = "";
      if (action === "mute") this.muted.set(user, data.duration ? "timed" : null);
      if (action === "unmute") this.muted.delete(user);
    } catch (error) {
      $("moderation-error").textContent = `${action} ${user}: ${error.code}: ${error.message}`;
    }
    this.onChange?.();
  }

  async block(user) {
    const result = await this.api.call("POST", `users/${enc(this.me)}/blocks`, { body: { user } });
    $("moderation-error").textContent = result.ok || result.status === 409 ? `blocked ${user}` : `block ${user}: HTTP ${result.status}`;
  }

  // "Report" on someone else's message.
  async report(id, from) {
    const answer = await ask(`report ${from}'s message`);
    if (!answer?.reason) return;
    try {
      await this.client.moderate("report", this.current(), { id, from, reason: answer.reason });
      $("moderation-error").textContent = "reported: the room's moderators will look at it";
    } catch (error) {
      $("moderation-error").textContent = `not reported: ${error.code}: ${error.message}`;
    }
  }

  // What a moderator did to this user, or told the moderators.
  told(event) {
    const room = this.current();
    if (event.user === this.me && event.room === room) {
      if (event.action === "mute") this.showMuted(event.until, event.reason);
      if (event.action === "unmute" || event.action === "mute_ended") this.showMuted(undefined);
      if (event.action === "set_role") this.roles.set(this.me, event.role);
    }
    if (event.action === "ban" && event.user === this.me) {
      $("moderation-error").textContent = `you were banned from ${event.room}${event.reason ? `: ${event.reason}` : ""}`;
    }
    if (event.action === "report" && event.room === room && !$("moderation").hidden) this.loadReports(room);
    if (event.action === "mute_ended" && event.room === room) this.muted.delete(event.user);
  }

  // A chat refused `muted`: the banner says until when, and the composer waits.
  showMuted(until, reason) {
    const banner = $("muted");
    if (until === undefined) {
      banner.hidden = true;
      $("send").disabled = false;
      return;
    }
    const when = until ? `until ${clock(until)}` : "until a moderator lifts it";
    banner.textContent = `You are muted in this room ${when}${reason ? ` (${reason})` : ""}.`;
    banner.hidden = false;
    $("send").disabled = true;
    if (until) setTimeout(() => this.showMuted(undefined), Math.max(0, Date.parse(until) - Date.now()));
  }

  async togglePanel() {
    const panel = $("moderation");
    panel.hidden = !panel.hidden;
    if (panel.hidden) return;
    const owner = this.rank() >= RANK.owner;
    $("settings-form").hidden = !owner;
    $("settings-title").value = this.settings?.title ?? "";
    $("settings-topic").value = this.settings?.topic ?? "";
    $("settings-slow").value = String(Math.round((this.settings?.slow_mode_ms ?? 0) / 1000));
    await this.loadReports(this.current());
  }

  async loadReports(room) {
    const result = await this.api.call("GET", `rooms/${enc(room)}/reports`).catch(() => ({ ok: false }));
    const list = $("reports");
    clear(list);
    if (!result.ok) return list.append(el("li", "", "reports cannot be read now"));
    if (result.answer.items.length === 0) list.append(el("li", "", "no open reports"));
    for (const report of result.answer.items) {
      const item = el("li", "report", `${report.reporter} reported ${report.from}'s message ${report.message}: ${report.reason}`);
      item.append(button("Delete message", () => this.onMessageDelete(report.message, report.from)));
      item.append(button("Resolve", () => this.resolve(room, report.id)));
      list.append(item);
    }
  }

  async resolve(room, id) {
    await this.api.call("POST", `rooms/${enc(room)}/reports/${id}/resolve`, { body: { resolution: "handled" } });
    await this.loadReports(room);
  }

  async saveSettings() {
    const room = this.current();
    const body = {
      title: $("settings-title").value.trim() || null,
      topic: $("settings-topic").value.trim() || null,
      slow_mode_ms: Math.max(0, Number($("settings-slow").value) || 0) * 1000,
    };
    const result = await this.api.call("PATCH", `rooms/${enc(room)}/settings`, { body });
    $("moderation-error").textContent = result.ok ? "settings saved" : `not saved: ${result.answer?.error?.message ?? result.status}`;
  }

  async archive() {
    const result = await this.api.call("POST", `rooms/${enc(this.current())}/archive`);
    $("moderation-error").textContent = result.ok ? "archived" : `not archived: ${result.answer?.error?.message ?? result.status}`;
  }
}
