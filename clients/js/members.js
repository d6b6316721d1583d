// A room's members as its presence frames tell them: a single change (`user`/`status`), a
// coalesced batch (`joined`/`left`), or a `presence` query's answer (`users`/`away`).

export class Members {
  #present = new Map(); // room -> Map(user -> { away })

  /** Applies a presence frame; returns the change as { room, joined, left }, or null. */
  apply(frame) {
    const data = frame.data ?? {};
    if (!frame.room) return null;
    if (Array.isArray(data.users)) {
      const away = new Set(data.away ?? []);
      this.#present.set(frame.room, new Map(data.users.map((user) => [user, { away: away.has(user) }])));
      return { room: frame.room, joined: [], left: [], users: data.users };
    }
    const batch = data.event === "batch";
    const joined = batch ? data.joined ?? [] : data.status === "join" ? [data.user] : [];
    const left = batch ? data.left ?? [] : data.status === "leave" ? [data.user] : [];
    const room = this.#room(frame.room);
    for (const user of joined) room.set(user, { away: false });
    for (const user of left) room.delete(user);
    return { room: frame.room, joined, left };
  }

  /** The users in `room`, sorted. */
  of(room) {
    return [...(this.#present.get(room)?.keys() ?? [])].sort();
  }

  isAway(room, user) {
    return this.#present.get(room)?.get(user)?.away ?? false;
  }

  forget(room) {
    this.#present.delete(room);
  }

  #room(room) {
    if (!this.#present.has(room)) this.#present.set(room, new Map());
    return this.#present.get(room);
  }
}
