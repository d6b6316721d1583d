// "alice is typing…" for the open room, and telling the room this user types: at most every 2 s
// (the broker stops a typer quiet for 5 s); an emptied box, a sent message or another room stops it.

import { $ } from "./view.js";

export class Typing {
  constructor({ client, me, current }) {
    Object.assign(this, { client, me, current });
    this.since = 0;
  }

  // Who else is typing in the open room.
  show() {
    const others = this.client.typers.of(this.current()).filter((user) => user !== this.me);
    const names = others.length > 3 ? `${others.length} people` : others.join(" and ");
    $("typing").textContent = others.length === 0 ? "" : `${names} ${others.length === 1 ? "is" : "are"} typing…`;
  }

  typed() {
    if (!this.current()) return;
    if (!$("message").value) return this.stopped();
    if (Date.now() - this.since < 2000) return;
    this.since = Date.now();
    this.client.typing(this.current(), true);
  }

  stopped() {
    if (this.since === 0 || !this.current()) return;
    this.since = 0;
    this.client.typing(this.current(), false);
  }
}
