// Replies and threads on the page: the "Replying to ..." bar above the message box, and the
// thread panel that lists a message's replies (read over REST).

import { $, clear, el } from "./view.js";

export class Replies {
  #to = null; // { id, from } of the message the next chat answers

  constructor(api) {
    this.api = api;
    $("replying-cancel").addEventListener("click", () => this.cancel());
    $("thread-close").addEventListener("click", () => ($("thread").hidden = true));
  }

  /** The next chat answers message `id` by `from` (its text shown in the bar). */
  start(id, from, text) {
    this.#to = { id, from };
    $("replying-text").textContent = `Replying to ${from}: ${text.length > 80 ? `${text.slice(0, 79)}…` : text}`;
    $("replying").hidden = false;
    $("message").focus();
  }

  cancel() {
    this.#to = null;
    $("replying").hidden = true;
  }

  /** The id the next chat replies to, if any; the bar closes. */
  take() {
    const to = this.#to;
    this.cancel();
    return to?.id ?? null;
  }

  /** Opens the thread of message `id` of `room`: its replies, oldest first. */
  async open(room, id) {
    const result = await this.api.thread(room, id).catch(() => ({ ok: false }));
    const list = $("thread-messages");
    clear(list);
    $("thread-title").textContent = "Thread";
    if (!result.ok) {
      list.append(el("li", "error", "the thread cannot be read now"));
    } else {
      for (const reply of result.answer.messages) {
        const item = el("li", "");
        item.append(el("span", "from", reply.from), el("span", "text", reply.data?.content ?? ""));
        list.append(item);
      }
    }
    $("thread").hidden = false;
  }

  /** Another room is opened: nothing of this one's replies stays. */
  reset() {
    this.cancel();
    $("thread").hidden = true;
  }
}
