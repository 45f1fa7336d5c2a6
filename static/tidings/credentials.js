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
 * `GET /api/auth/me`, and the page's meta follows it;
 * with `options.streamToken` the stream and the poll carry `?access_token=` from
 * `POST /api/auth/stream-token`, renewed ahead of its `expires_at`.
 */
export class Credentials {
  constructor(options, path) {
    this.csrf = options.csrfToken ?? null;
    this.useStreamToken = options.streamToken === true;
    this.path = path;
    this.token = null;
    this.renewal = null;
    this.timer = null;
    this.checking = null;
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

  /** Drop the stream token (its session ended, or it expired). */
  forget() {
    clearTimeout(this.timer);
    this.token = null;
    this.renewal = null;
  }

  /** Resolve to the query a stream or poll adds: `{access_token}`, or nothing. */
  async streamQuery() {
    if (!this.useStreamToken) return {};
    if (!this.token || this.token.renewAt <= Date.now()) await this.renew();
    return { access_token: this.token.value };
  }

  renew() {
    this.renewal ??= this.#fetch().finally(() => {
      this.renewal = null;
    });
    return this.renewal;
  }

  async #fetch() {
    const ask = () => getJson(this.path("/api/auth/stream-token"), { method: "POST", headers: this.writeHeaders() });
    let body;
    try {
      body = await ask();
    } catch (error) {
      if (error.code !== "csrf_failed" || !(await this.recheck())) throw error;
      body = await ask();
    }
    const life = Date.parse(body.expires_at) - Date.now();
    const renewAt = Date.now() + Math.max(0, Math.min(life - RENEW_AHEAD_MS, (life * 4) / 5));
    this.token = { value: body.token, renewAt };
    clearTimeout(this.timer);
    // Fetched ahead, so the reconnect at expiry does not wait for it.
    this.timer = setTimeout(() => this.renew().catch(() => {}), Math.max(0, renewAt - Date.now()));
  }
}
