// Who is typing in each room, as its `typing` frames tell it: a single change (`user`/`typing`) or
// a coalesced batch (`started`/`stopped`). The broker tells a stop for every start (the typer
// stopped, went quiet for its timeout, left or went away), so nothing here expires by itself.

export class Typers {
  #rooms = new Map(); // room -> Set(user)

  /** Applies a typing frame; returns the change as { room, started, stopped, typing }. */
  apply(frame) {
    const data = frame.data ?? {};
    if (!frame.room) return null;
    const batch = data.event === "batch";
    const started = batch ? data.started ?? [] : data.typing ? [data.user] : [];
    const stopped = batch ? data.stopped ?? [] : data.typing === false ? [data.user] : [];
    if (!this.#rooms.has(frame.room)) this.#rooms.set(frame.room, new Set());
    const room = this.#rooms.get(frame.room);
    for (const user of started) room.add(user);
    for (const user of stopped) room.delete(user);
    return { room: frame.room, started, stopped, typing: this.of(frame.room) };
  }

  /** Who is typing in `room`, sorted. */
  of(room) {
    return [...(this.#rooms.get(room) ?? [])].sort();
  }

  forget(room) {
    this.#rooms.delete(room);
  }
}
