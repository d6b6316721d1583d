// Notices: the chats to everyone (an operator's announcement, over the REST API) and any other chat
// with no room, shown in a banner above the rooms: live as they come, and the newest of the stored
// ones for a user who was away when it went out. Dismissing one hides it for good in this browser.

import { $ } from "./view.js";

export class Notices {
  constructor({ api, me }) {
    this.api = api;
    this.key = `wsbroker.notice.dismissed.${me}`;
    this.shown = null;
    $("notice-dismiss").addEventListener("click", () => this.dismiss());
  }

  // The newest stored chat to everyone, unless dismissed before (busy until it is known).
  async load() {
    try {
      const page = await this.api.history("_global", undefined, 1);
      const newest = page.ok ? page.answer.messages.at(-1) : undefined;
      if (newest && !this.shown) this.show(newest);
    } catch {
      // Unreachable for now: the live ones still show.
    } finally {
      $("notice").setAttribute("aria-busy", "false");
    }
  }

  show(frame) {
    const id = `${frame.from}\u0000${frame.id}`;
    if (localStorage.getItem(this.key) === id) return;
    const content = typeof frame.data?.content === "string" ? frame.data.content : JSON.stringify(frame.data);
    this.shown = id;
    $("notice-text").textContent = `${frame.from}: ${content}`;
    $("notice").hidden = false;
  }

  dismiss() {
    if (this.shown) localStorage.setItem(this.key, this.shown);
    $("notice").hidden = true;
  }
}
