// Signing in (a name, or a token when the server checks them) and renewing the token when the
// broker says it runs out. Owns the sign-in form and the expiry banner; the chat is app.js's.

import { Api } from "./api.js";
import { $, clock } from "./view.js";

function showSigninError(text) {
  $("signin-error").textContent = text;
  $("connection").textContent = text;
  $("connection").className = "state down";
}

// The `sub` of a JWT, for showing who is signed in (the broker verifies the token, not the page).
function subjectOf(token) {
  try {
    const payload = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(atob(payload)).sub || "?";
  } catch {
    return "?";
  }
}

/** Reads the server's config, then signs in (from the form, or at once with what the tab kept);
 * `start(config)` runs once signed in, with `session` filled. */
export async function boot(session, start) {
  const config = await (await fetch("/web/config.json")).json();
  const token = new URLSearchParams(location.search).get("token") || sessionStorage.getItem("wsbroker.token");
  const name = sessionStorage.getItem("wsbroker.user");
  $("signin-name-row").hidden = config.auth;
  $("signin-token-row").hidden = !config.auth;
  $("signin-form").addEventListener("submit", (event) => {
    event.preventDefault();
    signIn(session, config, start);
  });
  if (config.auth && token) {
    $("signin-token").value = token;
    signIn(session, config, start);
  } else if (config.auth) {
    showSigninError("This server needs a token to sign in: paste one, or open the page with ?token=");
  } else if (name) {
    $("signin-name").value = name;
    signIn(session, config, start);
  }
}

async function signIn(session, config, start) {
  $("signin-error").textContent = "";
  if (config.auth) {
    const token = $("signin-token").value.trim();
    if (!token) return showSigninError("No token: this server needs one to sign in.");
    session.token = token;
    // Checked before connecting: a refused WebSocket does not say why.
    const check = await new Api(session).rooms();
    if (check.status === 401) {
      session.token = null;
      return showSigninError("The server refused this token (expired or not valid): paste another.");
    }
    session.user = subjectOf(token);
    sessionStorage.setItem("wsbroker.token", token);
  } else {
    const name = $("signin-name").value.trim();
    if (!name) return showSigninError("Enter a name.");
    session.user = name;
    sessionStorage.setItem("wsbroker.user", name);
  }
  start(config);
}

/** The token renewal: the library asks for a new token (`ask`), the banner asks the person. */
export class Renewal {
  #answer = null;

  constructor(session) {
    this.session = session;
    $("expiry-send").addEventListener("click", () => this.#renew());
  }

  ask() {
    return new Promise((resolve) => {
      this.#answer = resolve;
    });
  }

  show(expiresAt) {
    $("expiry-text").textContent = `Your session ends at ${clock(expiresAt)}: paste a new token to stay signed in.`;
    $("expiry").hidden = false;
  }

  #renew() {
    const token = $("expiry-token").value.trim();
    if (!token || !this.#answer) return;
    this.#answer(token);
    this.#answer = null;
    this.session.token = token;
    sessionStorage.setItem("wsbroker.token", token);
    $("expiry").hidden = true;
    $("expiry-token").value = "";
  }
}
