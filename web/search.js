// The search box: the broker's full-text search over the rooms this user may read; a result opens
// its room at that message.

import { $, el, button, clear, clock } from "./view.js";
import { roomName } from "./rooms.js";

export class Search {
  constructor({ api, me, onOpen }) {
    Object.assign(this, { api, me, onOpen });
    $("search-form").addEventListener("submit", (event) => {
      event.preventDefault();
      this.run($("search-query").value.trim());
    });
  }

  async run(q) {
    const list = $("search-results");
    clear(list);
    list.hidden = !q;
    if (!q) return;
    const result = await this.api.search(q).catch(() => ({ ok: false, answer: {} }));
    if (!result.ok) {
      list.append(el("li", "error", result.answer?.error?.message ?? "search failed"));
      return;
    }
    if (result.answer.messages.length === 0) list.append(el("li", "", "nothing found"));
    for (const message of result.answer.messages) {
      const item = el("li", "result");
      const text = typeof message.data?.content === "string" ? message.data.content : "";
      const where = `${roomName(message.room, this.me)} · ${message.from} · ${clock(message.timestamp)}`;
      item.append(button(text.length > 80 ? `${text.slice(0, 79)}…` : text, () => this.onOpen(message.room, message.id), "link"));
      item.append(el("span", "where", where));
      list.append(item);
    }
  }
}
