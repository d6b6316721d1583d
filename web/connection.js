// One WebSocket to the broker: connects, reconnects with backoff, and matches replies to requests.
// Events: "state" ({state, retryIn}), "open" (live again: re-join rooms), "frame" (every frame).

const MAX_BACKOFF_S = 30;
const REQUEST_TIMEOUT_MS = 10000;

export class Connection extends EventTarget {
  constructor(urlFor) {
    super();
    this.urlFor = urlFor;
    this.socket = null;
    this.attempt = 0;
    this.waiting = new Map();
    this.stopped = false;
  }

  start() {
    this.stopped = false;
    this.open();
  }

  stop() {
    this.stopped = true;
    if (this.socket) this.socket.close(1000);
  }

  setState(state, retryIn) {
    this.state = state;
    this.dispatchEvent(new CustomEvent("state", { detail: { state, retryIn } }));
  }

  open() {
    this.setState(this.attempt === 0 ? "connecting" : "reconnecting", 0);
    const socket = new WebSocket(this.urlFor());
    this.socket = socket;
    socket.addEventListener("open", () => {
      this.attempt = 0;
      this.setState("live");
      this.dispatchEvent(new Event("open"));
    });
    socket.addEventListener("message", (event) => this.onFrame(event.data));
    socket.addEventListener("close", () => this.onClose(socket));
  }

  onFrame(text) {
    let frame;
    try {
      frame = JSON.parse(text);
    } catch {
      return;
    }
    const pending = frame.id !== undefined && this.waiting.get(frame.id);
    const answers = ["ack", "error", "history", "presence", "pong"].includes(frame.type);
    if (pending && answers) {
      this.waiting.delete(frame.id);
      pending.resolve(frame);
    }
    this.dispatchEvent(new CustomEvent("frame", { detail: frame }));
  }

  onClose(socket) {
    if (socket !== this.socket) return;
    for (const [id, pending] of this.waiting) {
      pending.resolve({ type: "error", id, data: { code: "disconnected", message: "the connection dropped" } });
    }
    this.waiting.clear();
    if (this.stopped) {
      this.setState("closed");
      return;
    }
    this.attempt += 1;
    const delay = Math.min(MAX_BACKOFF_S, 2 ** (this.attempt - 1));
    this.countdown(delay);
  }

  countdown(seconds) {
    this.setState("reconnecting", seconds);
    if (seconds <= 0) {
      this.open();
      return;
    }
    setTimeout(() => this.countdown(seconds - 1), 1000);
  }

  isLive() {
    return this.socket !== null && this.socket.readyState === WebSocket.OPEN;
  }

  send(frame) {
    if (!this.isLive()) return false;
    this.socket.send(JSON.stringify(frame));
    return true;
  }

  // Sends a frame with an id and resolves with its reply (ack, error, history, presence, pong).
  request(frame) {
    const id = frame.id ?? crypto.randomUUID();
    const withId = { ...frame, id };
    return new Promise((resolve) => {
      if (!this.send(withId)) {
        resolve({ type: "error", id, data: { code: "disconnected", message: "not connected" } });
        return;
      }
      this.waiting.set(id, { resolve });
      setTimeout(() => {
        if (this.waiting.delete(id)) {
          resolve({ type: "error", id, data: { code: "timeout", message: "no answer" } });
        }
      }, REQUEST_TIMEOUT_MS);
    });
  }
}
