// Read receipts of the open room (the broker keeps them for small rooms only): "seen by bob" under
// the newest message each other participant read, from GET .../receipts and then `receipt` events.

import { el } from "./view.js";

export class Receipts {
  constructor(me) {
    this.me = me;
    this.seqs = new Map(); // user -> the seq it read up to
  }

  // The room's receipts as the broker lists them (`null` in a room too large for them).
  reset(list) {
    this.seqs = new Map((list ?? []).map(({ user, seq }) => [user, seq]));
    this.render();
  }

  read(user, seq) {
    if ((this.seqs.get(user) ?? 0) >= seq) return;
    this.seqs.set(user, seq);
    this.render();
  }

  render() {
    for (const old of document.querySelectorAll("#messages .seen")) old.remove();
    const items = [...document.querySelectorAll("#messages li[data-seq]")];
    const seenAt = new Map(); // item -> users who read up to it
    for (const [user, seq] of this.seqs) {
      if (user === this.me || seq === 0) continue;
      const item = items.findLast((candidate) => Number(candidate.dataset.seq) <= seq);
      if (!item) continue;
      if (!seenAt.has(item)) seenAt.set(item, []);
      seenAt.get(item).push(user);
    }
    for (const [item, users] of seenAt) item.append(el("span", "seen", `seen by ${users.sort().join(", ")}`));
  }
}
