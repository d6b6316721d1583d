// The client's rules about the broker's answers: which errors end a request, which frames answer
// one, how long to wait before connecting again, and the ids it makes.

/** Errors that end a chat or an operation: retrying cannot help. Any other code is retried. */
export const FINAL_CODES = new Set([
  "bad_request", "unknown_type", "content_too_long", "not_member", "forbidden", "unauthorized",
  "not_found", "conflict", "muted", "banned", "too_large", "quota_exceeded",
]);

/** The frame types that answer a request with an id. */
export const REPLIES = new Set(["ack", "error", "pong", "presence", "history"]);

/** The epoch of a resume from no known position: no stream has it (epochs are 12 hex digits). */
export const UNKNOWN_EPOCH = "unknown";

/** A resent operation whose first send may have landed: its "already so" answer is a success. */
export function alreadyDone(frame, code) {
  if (frame.type === "react") return code === (frame.data?.remove ? "not_found" : "conflict");
  return (frame.type === "delete" && code === "not_found") || (frame.type === "leave" && code === "not_member");
}

/** The wait before connection attempt `attempt`: exponential from `baseMs`, capped at `maxMs`,
 * with jitter (between half and all of the step). */
export function backoff(baseMs, maxMs, attempt) {
  const step = Math.min(maxMs, baseMs * 2 ** (attempt - 1));
  return Math.round(step / 2 + (Math.random() * step) / 2);
}

export function newId() {
  return globalThis.crypto.randomUUID();
}
