// The work a client owes the broker, in the order it was asked for: chats not acked yet (kept until
// their ack, whatever happens to the connection) and other operations not answered yet. A chat is
// resent with its own id after a reconnect, so the broker's dedup delivers it once.

/** Keeps the unacked chats in `storage` (for example `sessionStorage`) under `key`. */
export function storageOutbox(storage, key = "wsbroker.outbox") {
  return {
    load: () => {
      try {
        return JSON.parse(storage.getItem(key) ?? "[]");
      } catch {
        return [];
      }
    },
    save: (chats) => storage.setItem(key, JSON.stringify(chats)),
  };
}

export class Outbox {
  #store;
  #next = 0;
  /** Chats by id: { id, room, data, order }. */
  chats = new Map();
  /** Operations waiting to be sent or answered: { frame, order, resolve, reject, sent }. */
  operations = [];

  constructor(store) {
    this.#store = store ?? null;
    for (const chat of this.#store?.load() ?? []) {
      this.chats.set(chat.id, { id: chat.id, room: chat.room, data: chat.data, order: this.#next++ });
    }
  }

  addChat(id, room, data) {
    this.chats.set(id, { id, room, data, order: this.#next++ });
    this.#save();
  }

  removeChat(id) {
    const chat = this.chats.get(id);
    if (chat && this.chats.delete(id)) this.#save();
    return chat;
  }

  addOperation(frame, resolve, reject) {
    const operation = { frame, order: this.#next++, resolve, reject, sent: false };
    this.operations.push(operation);
    return operation;
  }

  removeOperation(operation) {
    this.operations = this.operations.filter((waiting) => waiting !== operation);
  }

  /** Everything owed, in the order it was asked for: [{ chat } | { operation }]. */
  inOrder() {
    const chats = [...this.chats.values()].map((chat) => ({ chat, order: chat.order }));
    const operations = this.operations.map((operation) => ({ operation, order: operation.order }));
    return [...chats, ...operations].sort((a, b) => a.order - b.order);
  }

  #save() {
    this.#store?.save([...this.chats.values()].map(({ id, room, data }) => ({ id, room, data })));
  }
}
