// A real wsbroker process for the client library's tests: on a free loopback port, with its own
// SQLite file, stopped, hung (SIGSTOP), killed and restarted on the same port by the test.
// The binary is the debug build scripts/test.sh makes (WSBROKER_BIN overrides it).

import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

const BIN = process.env.WSBROKER_BIN ?? new URL("../../target/debug/wsbroker", import.meta.url).pathname;
const WAIT_MS = 10_000;

export async function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
    server.on("error", reject);
  });
}

export class Broker {
  /** `args`: more flags; a `--database-url` among them replaces the test's own SQLite file. */
  constructor(args = []) {
    this.args = args;
    this.dir = mkdtempSync(join(tmpdir(), "wsbroker-js-"));
    this.child = null;
  }

  static async start(args = []) {
    const broker = new Broker(args);
    broker.port = await freePort();
    await broker.restart();
    return broker;
  }

  get url() {
    return `ws://127.0.0.1:${this.port}/ws`;
  }

  get http() {
    return `http://127.0.0.1:${this.port}`;
  }

  /** Starts the broker (again) on the same port and file, and waits until it answers. */
  async restart() {
    const store = this.args.includes("--database-url") ? [] : ["--database-url", `sqlite://${this.dir}/chat.db`];
    const args = ["--listen", `127.0.0.1:${this.port}`, ...store, ...this.args];
    this.child = spawn(BIN, args, { stdio: ["ignore", "ignore", "inherit"] });
    this.child.on("error", (error) => {
      throw new Error(`cannot start ${BIN} (scripts/test.sh builds it): ${error.message}`);
    });
    const deadline = Date.now() + WAIT_MS;
    while (Date.now() < deadline) {
      try {
        if ((await fetch(`${this.http}/healthz`)).ok) return;
      } catch {
        // not listening yet
      }
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    throw new Error("the broker did not come up");
  }

  hang() {
    this.child.kill("SIGSTOP");
  }

  async kill() {
    const exited = new Promise((resolve) => this.child.once("exit", resolve));
    this.child.kill("SIGKILL");
    await exited;
  }

  async stop() {
    if (this.child && this.child.exitCode === null && this.child.signalCode === null) await this.kill();
    rmSync(this.dir, { recursive: true, force: true });
  }

  async history(room) {
    const answer = await (await fetch(`${this.http}/api/v1/chat/rooms/${room}/messages?limit=100`)).json();
    return answer.messages;
  }
}

/** Resolves once `event` is emitted by `emitter` with a detail `wanted` accepts. */
export function once(emitter, event, wanted = () => true, ms = WAIT_MS) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      off();
      reject(new Error(`no ${event} within ${ms} ms`));
    }, ms);
    const off = emitter.on(event, (detail) => {
      if (!wanted(detail)) return;
      clearTimeout(timer);
      off();
      resolve(detail);
    });
  });
}
