// A small typed-by-convention event emitter: `on(event, handler)` returns its own `off`.
// A handler that throws does not stop the others; its error is rethrown on a fresh task.

export class Emitter {
  #handlers = new Map();

  on(event, handler) {
    if (!this.#handlers.has(event)) this.#handlers.set(event, new Set());
    this.#handlers.get(event).add(handler);
    return () => this.off(event, handler);
  }

  off(event, handler) {
    this.#handlers.get(event)?.delete(handler);
  }

  emit(event, detail) {
    for (const handler of [...(this.#handlers.get(event) ?? [])]) {
      try {
        handler(detail);
      } catch (error) {
        setTimeout(() => {
          throw error;
        });
      }
    }
  }
}
