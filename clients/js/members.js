// A room's members as its presence frames tell them: a single change (`user`/`status`: join,
// leave, away, back), a coalesced batch (`joined`/`away`/`back`/`left`), or a `presence` query's
// answer (`users`/`away`).

export class Members {
  #present = new Map(); // room -> Map(user -> { away })

  /** Applies a presence frame; returns the change as { room, joined, left, away, back }, or null. */
  apply(frame) {
    const data = frame.data ?? {};
    if (!frame.room) return null;
    if (Array.isArray(data.users)) {
      const away = new Set(data.away ?? []);
      this.#present.set(frame.room, new Map(data.users.map((user) => [user, { away: away.has(user) }])));
      return { room: frame.room, joined: [], left: [], away: [], back: [], users: data.users };
    }
    const batch = data.event === "batch";
    const listed = (list, status) => (batch ? data[list] ?? [] : data.status === status ? [data.user] : []);
    const change = {
      room: frame.room,
      joined: listed("joined", "join"),
      away: listed("away", "away"),
      back: listed("back", "back"),
      left: listed("left", "leave"),
    };
    const room = this.#room(frame.room);
    for (const user of change.joined) room.set(user, { away: false });
    for (const user of change.away) room.set(user, { away: true });
    for (const user of change.back) room.set(user, { away: false });
    for (const user of change.left) room.delete(user);
    return change;
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
