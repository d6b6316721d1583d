// The open room's messages: history pages, live messages, the user's own as pending until acked
// (the client library resends them until they are), failures with a reason a person can act on,
// deletes, edits and reactions.

import { $, el, button, clear, clock, fullDate } from "./view.js";

export class Messages {
  constructor({ me, onDismiss, onDelete, onEdit, onReact, onReply, onThread, onOlder, onReport, files }) {
    this.me = me;
    this.files = files;
    this.onReact = onReact;
    this.onReply = onReply;
    this.onThread = onThread;
    this.onDismiss = onDismiss;
    this.onDelete = onDelete;
    this.onReport = onReport;
    this.onEdit = onEdit;
    this.onOlder = onOlder;
    this.list = $("messages");
    this.byKey = new Map();
    this.list.addEventListener("scroll", () => {
      if (this.list.scrollTop === 0) this.onOlder();
    });
  }

  key(from, id) {
    return `${from}\u0000${id}`;
  }

  reset() {
    clear(this.list);
    this.byKey.clear();
  }

  // The actions on show again (the user's rank in the room changed): sent messages only.
  refreshActions() {
    for (const item of this.byKey.values()) {
      if (item.classList.contains("sent")) this.setState(item, "sent");
    }
  }

  // A message as the server sent it (live or from history).
  render(message, state = "sent") {
    const item = el("li", state);
    item.dataset.id = message.id;
    item.dataset.day = new Date(message.timestamp).toDateString();
    item.dataset.from = message.from;
    if (typeof message.seq === "number") item.dataset.seq = message.seq;
    const time = el("time", "time", clock(message.timestamp));
    time.dateTime = message.timestamp;
    time.title = fullDate(message.timestamp);
    item.append(el("span", "from", message.from), time);
    const replyTo = message.data?.reply_to;
    if (typeof replyTo === "string") item.append(this.quote(replyTo, message.quote));
    const content = message.data && typeof message.data.content === "string" ? message.data.content : "";
    item.append(el("span", "text", content));
    this.files?.render(item, message.data?.attachments);
    if (message.edited_at) item.append(editedMark(message.edited_at));
    // emoji -> { count, mine }, from history; live reactions change it.
    item.reactions = new Map((message.reactions ?? []).map((r) => [r.emoji, { count: r.count, mine: r.mine }]));
    item.append(el("span", "reactions"));
    this.showReactions(item);
    item.replies = message.thread?.replies ?? 0;
    item.append(el("span", "replies"));
    this.showReplies(item);
    const status = el("span", "status");
    item.append(status);
    this.setState(item, state);
    return item;
  }

  setState(item, state, why) {
    item.classList.remove("pending", "sent", "failed");
    item.classList.add(state);
    const status = item.querySelector(".status");
    clear(status);
    if (state === "pending") status.textContent = "pending";
    if (state === "failed") {
      status.textContent = `not sent: ${why}`;
      status.append(button("Dismiss", () => this.onDismiss(item.dataset.id)));
    }
    if (state === "sent" && item.dataset.from === this.me && !item.classList.contains("deleted")) {
      status.textContent = "sent";
      status.append(button("Edit", () => this.startEdit(item)));
      status.append(button("Delete", () => this.onDelete(item.dataset.id)));
    }
    if (state === "sent" && !item.classList.contains("deleted")) {
      status.append(button("React", () => this.pick(item)));
      status.append(button("Reply", () => this.onReply(item.dataset.id, item.dataset.from, item.querySelector(".text").textContent)));
      if (this.onReport && item.dataset.from !== this.me) status.append(button("Report", () => this.onReport(item.dataset.id, item.dataset.from)));
      // The room's owners and moderators delete anyone's message.
      if (this.moderates && item.dataset.from !== this.me) status.append(button("Delete", () => this.onDelete(item.dataset.id, item.dataset.from)));
    }
  }

  // The message on show with `id`, whoever sent it (a reply names only the id).
  byId(id) {
    return [...this.byKey.values()].find((item) => item.dataset.id === id);
  }

  // "↪ alice: the start of what she wrote", from history's quote or the message on show; a
  // deleted one says so.
  quote(id, quoted) {
    const shown = this.byId(id);
    let text = "↪ a message not on show";
    if (quoted?.deleted || shown?.classList.contains("deleted")) text = "↪ a deleted message";
    else if (quoted) text = `↪ ${quoted.from}: ${quoted.content}`;
    else if (shown) text = `↪ ${shown.dataset.from}: ${shown.querySelector(".text").textContent}`;
    return el("span", "quote", text.length > 120 ? `${text.slice(0, 119)}…` : text);
  }

  // "N replies", which opens the thread.
  showReplies(item) {
    const row = item.querySelector(".replies");
    clear(row);
    if (item.replies > 0) {
      const label = item.replies === 1 ? "1 reply" : `${item.replies} replies`;
      row.append(button(label, () => this.onThread(item.dataset.id)));
    }
  }

  // A live reply to a message on show counts in its thread.
  replied(id) {
    const root = this.byId(id);
    if (!root) return;
    root.replies += 1;
    this.showReplies(root);
  }

  // A few emoji to react with, under the message; one click reacts and closes it.
  pick(item) {
    if (item.querySelector(".picker")) return item.querySelector(".picker").remove();
    const picker = el("span", "picker");
    for (const emoji of PICKS) {
      const choice = button(emoji, () => {
        picker.remove();
        if (!item.reactions.get(emoji)?.mine) this.onReact(item.dataset.id, item.dataset.from, emoji, false);
      });
      choice.setAttribute("aria-label", `React ${emoji}`);
      picker.append(choice);
    }
    item.querySelector(".status").after(picker);
  }

  // The message's reactions as chips: the count, marked when the user is among them; a click
  // adds or takes back the user's own.
  showReactions(item) {
    const row = item.querySelector(".reactions");
    clear(row);
    for (const [emoji, { count, mine }] of item.reactions) {
      const chip = button(`${emoji} ${count}`, () => this.onReact(item.dataset.id, item.dataset.from, emoji, mine));
      chip.className = mine ? "chip mine" : "chip";
      chip.setAttribute("aria-pressed", String(mine));
      row.append(chip);
    }
  }

  // A reaction added or taken back; the user's own is counted once however often it is told.
  reacted(id, author, user, emoji, added) {
    const item = this.byKey.get(this.key(author, id));
    if (!item || item.classList.contains("deleted")) return;
    const now = item.reactions.get(emoji) ?? { count: 0, mine: false };
    if (user === this.me && now.mine === added) return;
    const next = { count: now.count + (added ? 1 : -1), mine: user === this.me ? added : now.mine };
    if (next.count > 0) item.reactions.set(emoji, next);
    else item.reactions.delete(emoji);
    this.showReactions(item);
  }

  // The author's own message becomes a box with its content: Enter saves, Escape gives up.
  startEdit(item) {
    if (item.querySelector("input.edit")) return;
    const text = item.querySelector(".text");
    const box = document.createElement("input");
    box.className = "edit";
    box.value = text.textContent;
    box.setAttribute("aria-label", "Edit message");
    text.hidden = true;
    text.after(box);
    box.focus();
    const done = () => {
      box.remove();
      text.hidden = false;
    };
    box.addEventListener("keydown", (event) => {
      if (event.key === "Escape") done();
      if (event.key !== "Enter") return;
      const content = box.value;
      done();
      if (content !== text.textContent) this.onEdit(item.dataset.id, content);
    });
  }

  // An edit of a message shown here, by its author: the new content, marked edited.
  edited(id, from, content, at) {
    const item = this.byKey.get(this.key(from, id));
    if (!item || item.classList.contains("deleted")) return;
    item.querySelector(".text").textContent = content;
    item.querySelector(".edited")?.remove();
    item.querySelector(".text").after(editedMark(at));
  }

  // An edit the broker refused: the message stays as it was, with why.
  editFailed(id, why) {
    const item = this.byKey.get(this.key(this.me, id));
    if (item) item.querySelector(".status").prepend(`not edited: ${why} `);
  }

  // Shows a message once (a live copy of one already shown changes nothing: the ack decides).
  append(message, state) {
    const key = this.key(message.from, message.id);
    const known = this.byKey.get(key);
    if (known && typeof message.seq === "number") known.dataset.seq = message.seq;
    // The broker's copy of one's own chat describes its files (the pending one named their ids).
    if (known && !known.querySelector(".files")) this.files?.render(known, message.data?.attachments);
    if (known) return known;
    const item = this.render(message, state);
    this.byKey.set(key, item);
    const atBottom = this.list.scrollHeight - this.list.scrollTop - this.list.clientHeight < 40;
    this.list.append(item);
    this.markDays(item);
    if (atBottom || message.from === this.me) item.scrollIntoView({ block: "end" });
    return item;
  }

  // An older page (oldest first, as the API gives it), above what is shown, in its order.
  prepend(messages) {
    const before = this.list.scrollHeight;
    const first = this.list.firstChild;
    for (const message of messages) {
      const key = this.key(message.from, message.id);
      if (this.byKey.has(key)) continue;
      const item = this.render(message, "sent");
      this.byKey.set(key, item);
      this.list.insertBefore(item, first);
    }
    for (const item of this.list.children) this.markDays(item);
    this.list.scrollTop += this.list.scrollHeight - before;
  }

  acked(id, seq) {
    const item = this.byKey.get(this.key(this.me, id));
    if (item && typeof seq === "number") item.dataset.seq = seq;
    if (item) this.setState(item, "sent");
  }

  failed(id, why) {
    const item = this.byKey.get(this.key(this.me, id));
    if (item) this.setState(item, "failed", why);
  }

  remove(id) {
    const item = this.byKey.get(this.key(this.me, id));
    if (!item) return;
    this.byKey.delete(this.key(this.me, id));
    item.remove();
  }

  // A delete the broker refused: the message stays as it is, with why.
  deleteFailed(id, why) {
    const item = this.byKey.get(this.key(this.me, id));
    if (item) item.querySelector(".status").textContent = `not deleted: ${why}`;
  }

  // The first message of a day carries the day's date above it (the others, none).
  markDays(item) {
    const previous = item.previousElementSibling;
    const first = !previous || previous.dataset.day !== item.dataset.day;
    const line = item.querySelector(".day");
    if (first && !line) {
      const date = new Date(item.querySelector("time").dateTime);
      const day = el("span", "day", date.toLocaleDateString([], { dateStyle: "full" }));
      day.setAttribute("role", "separator");
      item.prepend(day);
    }
    if (!first && line) line.remove();
  }


  deleted(id, from) {
    const item = this.byKey.get(this.key(from, id));
    if (!item) return;
    item.classList.add("deleted");
    item.querySelector(".text").textContent = "message deleted";
    item.querySelector(".edited")?.remove();
    clear(item.querySelector(".reactions"));
    clear(item.querySelector(".status"));
  }
}

const PICKS = ["👍", "❤️", "😂", "🎉", "😮", "😢"];

// "(edited)", with the edit's full date on hover.
function editedMark(at) {
  const mark = el("span", "edited", "(edited)");
  mark.title = `edited ${fullDate(at)}`;
  return mark;
}
