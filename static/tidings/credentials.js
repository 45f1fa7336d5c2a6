/** What the feed's requests carry to be allowed: the CSRF token of writes, and stream tokens. */

import { getJson } from "./http.js";

// A stream token is renewed this long before it expires (or at 4/5 of a short life).
const RENEW_AHEAD_MS = 30_000;

function pageToken() {
  return document.querySelector('meta[name="csrf-token"]')?.content || null;
}

/**
 * `options.csrfToken` (else the page's `<meta name="csrf-token">`) goes on every write; a
 * token the server no longer takes (the browser signed in again elsewhere) is renewed from
 * `GET /api/auth/me`, and the page's meta follows it. With `options.streamToken` the stream
 * and the poll carry `?access_token=`, renewed ahead of its `expires_at`: `true` asks
 * `POST /api/auth/stream-token` for it, a function is called for `{token, expires_at}` (an
 * error with `status` 401 from it signs the feed out).
 */
export class Credentials {
  constructor(options, path) {
    this.csrf = options.csrfToken ?? null;
    const given = options.streamToken;
    this.source = typeof given === "function" ? given : given === true ? () => this.#mint() : null;
    this.useStreamToken = this.source !== null;
    this.path = path;
    this.token = null;
    this.renewal = null;
    this.timer = null;
    this.checking = null;
    this.used = null;
  }

  /** Return the headers a write must carry. */
  writeHeaders() {
    const token = this.csrf ?? pageToken();
    return token ? { "X-CSRF-Token": token } : {};
  }

  /** Take the CSRF token of a new session. */
  signedIn(csrfToken) {
    if (csrfToken) this.adopt(csrfToken);
    this.forget();
  }

  adopt(csrfToken) {
    this.csrf = csrfToken;
    document.querySelector('meta[name="csrf-token"]')?.setAttribute("content", csrfToken);
  }

  /** Resolve to whether the browser is still signed in, taking its session's CSRF token. */
  recheck() {
    this.checking ??= getJson(this.path("/api/auth/me"))
      .then((body) => {
        if (body.csrf_token) this.adopt(body.csrf_token);
        return Boolean(body.csrf_token);
      })
      .catch((error) => (error.status === 401 ? false : Promise.reject(error)))
      .finally(() => {
        this.checking = null;
      });
    return this.checking;
  }

  /** The server ended a stream's token as expired: drop it, unless it was renewed already. */
  expired() {
    if (this.token?.value === this.used) this.forget();
  }

  /** Drop the stream token (its session ended). */
  forget() {
    clearTimeout(this.timer);
    this.token = null;
    this.renewal = null;
  }

  /** Resolve to the query a stream or poll adds: `{access_token}`, or nothing. */
  async streamQuery() {
    if (!this.useStreamToken) return {};
    if (!this.token || this.token.renewAt <= Date.now()) await this.renew();
    this.used = this.token.value;
    return { access_token: this.used };
  }

  renew() {
    this.renewal ??= this.#fetch().finally(() => {
      this.renewal = null;
    });
    return this.renewal;
  }

  async #mint() {
    const ask = () => getJson(this.path("/api/auth/stream-token"), { method: "POST", headers: this.writeHeaders() });
    try {
      return await ask();
    } catch (error) {
      if (error.code !== "csrf_failed" || !(await this.recheck())) throw error;
      return ask();
    }
  }

  async #fetch() {
    const body = await this.source();
    const life = Date.parse(body.expires_at) - Date.now();
    const renewAt = Date.now() + Math.max(0, Math.min(life - RENEW_AHEAD_MS, (life * 4) / 5));
    this.token = { value: body.token, renewAt };
    clearTimeout(this.timer);
    // Fetched ahead, so the reconnect at expiry does not wait for it.
    this.timer = setTimeout(() => this.renew().catch(() => {}), Math.max(0, renewAt - Date.now()));
  }
}
