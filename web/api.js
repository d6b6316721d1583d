// The REST API, as the signed-in user: a token in the Authorization header, or ?user= with
// authentication off.

export class Api {
  constructor(session) {
    this.session = session;
  }

  url(path, params = {}) {
    const url = new URL(`/api/v1/chat/${path}`, location.origin);
    if (!this.session.token) url.searchParams.set("user", this.session.user);
    for (const [name, value] of Object.entries(params)) {
      if (value !== undefined && value !== null) url.searchParams.set(name, value);
    }
    return url;
  }

  async call(method, path, { params, body } = {}) {
    const headers = {};
    if (this.session.token) headers.Authorization = `Bearer ${this.session.token}`;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch(this.url(path, params), {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await response.text();
    const answer = text ? JSON.parse(text) : {};
    return { ok: response.ok, status: response.status, answer };
  }

  rooms() {
    return this.call("GET", "rooms", { params: { limit: 100 } });
  }

  createRoom(name, type) {
    return this.call("POST", "rooms", { body: { name, type } });
  }

  thread(room, id) {
    return this.call("GET", `rooms/${encodeURIComponent(room)}/messages/${encodeURIComponent(id)}/thread`, { params: { limit: 100 } });
  }

  history(room, before, limit = 100) {
    return this.call("GET", `rooms/${encodeURIComponent(room)}/messages`, { params: { limit, before } });
  }

  // Stops being a participant of `room` (the page's "Leave room").
  leave(room) {
    const user = encodeURIComponent(this.session.user);
    return this.call("DELETE", `rooms/${encodeURIComponent(room)}/participants/${user}`);
  }

  search(q) {
    return this.call("GET", "search", { params: { q, limit: 20 } });
  }

  receipts(room) {
    return this.call("GET", `rooms/${encodeURIComponent(room)}/receipts`);
  }

  participants(room) {
    return this.call("GET", `rooms/${encodeURIComponent(room)}/participants`);
  }

  online() {
    return this.call("GET", "online");
  }
}

// Why an API answer failed, for a person.
export function reason(result) {
  const error = result.answer && result.answer.error;
  return error ? `${error.code}: ${error.message}` : `HTTP ${result.status}`;
}
