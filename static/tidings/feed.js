/** A subscription shared by this browser's tabs: events, live tables and writes. */

import { Credentials } from "./credentials.js";
import { Emitter } from "./emitter.js";
import { getJson, needsSignIn, untilDone } from "./http.js";
import { Subscription } from "./subscription.js";
import { LiveTable } from "./table.js";
import { Tabs } from "./tabs.js";
import { Transport } from "./transport.js";
import { Writes } from "./writes.js";

const HIDDEN_PAUSE_MS = 60_000;

export class Feed {
  #emitter = new Emitter();
  #tables = new Map();
  #subscription;
  #transport;
  #tabs;
  #tableHost;
  #signedInAgain = [];

  constructor(options = {}) {
    this.#subscription = new Subscription(options);
    this.credentials = new Credentials(options, (path) => this.#subscription.path(path));
    this.topics = this.#subscription.topics;
    this.heartbeatMs = (options.heartbeat ?? 15) * 1000;
    this.hiddenPauseMs = options.hiddenPause ?? HIDDEN_PAUSE_MS;
    this.scope = this.#subscription.scope;
    this.leader = false;
    this.status = { state: "connecting", transport: null, lastEventAt: null, lag: null, leader: false, cursor: 0 };
    this.cursorKey = `tidings:cursor:${this.scope}`;
    const stored = Number(sessionStorage.getItem(this.cursorKey));
    this.cursor = Number.isFinite(stored) && stored > 0 ? stored : 0;
    this.#transport = new Transport(this.#transportSink());
    this.writes = new Writes(this.#writesHost(), `tidings-outbox:${this.scope}`, options.writeRate);
    const described = this.#start();
    described.catch(() => {});
    this.ready = described.then(() => this);
    this.ready.catch((error) => this.#refuse(error));
    this.#tableHost = {
      ready: described,
      path: (path, query) => this.#subscription.path(path, query),
      read: (url, onError) => this.#read(() => getJson(url), onError),
      emit: (type, payload) => this.#emit(type, payload),
      pendingFor: (name) => this.writes.pendingFor(name),
    };
    this.#tabs = new Tabs(this.scope, options.share !== false, {
      lead: () => this.#lead(),
      message: (message) => this.#onMessage(message),
    });
    this.#watchNetwork();
  }

  #transportSink() {
    const feed = this;
    return {
      get heartbeatMs() {
        return feed.heartbeatMs;
      },
      get cursor() {
        return feed.cursor;
      },
      url: (path, query) => this.#subscription.url(path, query),
      access: () => this.credentials.streamQuery(),
      throttled: (source, ms) => this.#emit("throttled", { source, retryAfter: ms / 1000, until: Date.now() + ms }),
      signedOut: (reason) => this.#signOut(reason),
      receive: (event) => this.#receive(event),
      reset: (reset) => this.#reset(reset),
      advance: (cursor) => this.#advance(cursor),
      setState: (state, transport) => this.#setState(state, transport),
      error: (payload) => this.#emit("error", payload),
    };
  }

  #writesHost() {
    const feed = this;
    return {
      get cursor() {
        return feed.cursor;
      },
      get state() {
        return feed.status.state;
      },
      get leader() {
        return feed.leader;
      },
      path: (path) => this.#subscription.path(path),
      headers: () => this.credentials.writeHeaders(),
      signedOut: (reason) => this.#signOut(reason),
      broadcast: (message) => this.#tabs.broadcast(message),
      emit: (type, payload) => this.#emit(type, payload),
      changed: (table) => this.#tables.get(table)?.forEach((t) => t.changed()),
    };
  }

  /**
   * Learn the column types and let the server judge the subscription: resolve to
   * `describe(topic)` (a table's description, or null for a custom topic), or reject with
   * the FilterError of a refused filter.
   */
  async #start() {
    const onError = (error) => this.#emit("error", { source: "start", message: error.message });
    // Both at once; the head is asked first so that a refusal is the server's.
    const description = this.#read(() => getJson(this.#subscription.path("/api/tables")), onError);
    description.catch(() => {});
    const head = await this.#read(async () => {
      const query = { wait: 0, limit: 1, ...(await this.credentials.streamQuery()) };
      return getJson(this.#subscription.url("/api/changes", query));
    }, onError);
    const { tables } = await description;
    const described = new Map(tables.map((table) => [table.name, table]));
    const describe = (topic) => described.get(topic) ?? null;
    this.#subscription.check(describe);
    // A stored cursor resumes where this tab was; a new one starts at the head.
    if (!this.cursor) this.#advance(head.cursor);
    return describe;
  }

  /** Run `work` until done; a refused credential signs the feed out and waits for `signedIn()`. */
  async #read(work, onError) {
    for (;;) {
      try {
        return await untilDone(work, onError);
      } catch (error) {
        if (!needsSignIn(error.status, error.body)) throw error;
        this.#signOut("unauthenticated");
        await new Promise((resolve) => this.#signedInAgain.push(resolve));
      }
    }
  }

  /**
   * The credential ended: an expired stream token is renewed (answer true: connect again), a
   * stale CSRF token is renewed while the session lives (the queue is sent again); otherwise
   * stop, keeping the cursor and the queue, with status `signed-out` in every tab.
   */
  #signOut(reason, announce = true) {
    if (reason === "csrf_failed") {
      this.credentials.recheck().then(
        (signedIn) => (signedIn ? this.writes.flush() : this.#signOut("unauthenticated")),
        () => this.writes.flush(),
      );
      return false;
    }
    if (reason === "expired" && this.credentials.useStreamToken) {
      this.credentials.expired();
      return true;
    }
    this.credentials.forget();
    if (this.status.state === "signed-out") return false;
    // Before the leader's status, so that every tab hears the reason.
    if (announce) this.#tabs.broadcast({ type: "signed-out", reason });
    if (this.leader) this.#transport.stop("signed-out");
    else this.#setState("signed-out", null, false);
    this.#emit("signed-out", { reason });
    return false;
  }

  #refuse(error) {
    this.#setState("refused", null);
    this.#emit("error", { source: "refused", message: error.message, error });
  }

  // Sharing one connection between tabs

  async #lead() {
    this.leader = true;
    this.status = { ...this.status, leader: true };
    try {
      await this.#tableHost.ready;
    } catch {
      return;
    }
    await this.writes.restored;
    this.#transport.start();
    this.#tabs.watchVisibility(this.hiddenPauseMs, {
      show: () => {
        if (this.status.state === "paused") this.#transport.start();
      },
      // A signed-out feed stays so while hidden: it has no connection to pause.
      pause: () => this.status.state !== "signed-out" && this.#transport.stop("paused"),
      paused: () => this.status.state === "paused",
    });
  }

  #onMessage(message) {
    switch (message.type) {
      case "event":
        if (!this.leader) this.#accept(message.event);
        break;
      case "cursor":
        if (!this.leader) this.#advance(message.cursor);
        break;
      case "reset":
        if (!this.leader) this.#applyReset(message.reset);
        break;
      case "status":
        if (!this.leader) this.#setState(message.state, message.transport, false);
        break;
      case "hello":
        if (this.leader) this.#tabs.broadcast({ type: "status", state: this.status.state, transport: this.status.transport });
        break;
      case "queued":
        this.writes.adopt(message.op);
        if (this.leader) this.writes.flush();
        break;
      case "result":
        this.writes.settle(message.key, message.status, message.body);
        break;
      case "signed-out":
        this.#signOut(message.reason, false);
        break;
      case "signed-in":
        this.signedIn({ csrfToken: message.csrfToken }, false);
        break;
      case "visible":
        if (this.leader && this.status.state === "paused") this.#transport.start();
        break;
    }
  }

  #watchNetwork() {
    addEventListener("offline", () => {
      if (this.leader) this.#transport.interrupt();
    });
    addEventListener("online", () => {
      if (this.leader) this.#transport.wake();
    });
  }

  // Events in

  /** Take an event from the network (leader): pass it to the other tabs, then apply it here. */
  #receive(event) {
    if (event.id <= this.cursor) return;
    this.#tabs.broadcast({ type: "event", event });
    this.#accept(event);
  }

  #accept(event) {
    if (event.id <= this.cursor) return;
    this.#setCursor(event.id);
    const now = Date.now();
    this.status = { ...this.status, lastEventAt: now, lag: event.at ? Math.max(0, now - Date.parse(event.at)) : null };
    for (const tables of this.#tables.values()) for (const table of tables) table.apply(event);
    this.writes.observe(event);
    const op = event.op.toLowerCase();
    for (const type of ["change", op]) {
      this.#emit(type, event);
      this.#emit(`${type}:${event.topic}`, event);
    }
  }

  #advance(cursor) {
    if (!(cursor > this.cursor)) return;
    this.#setCursor(cursor);
    if (this.leader) this.#tabs.broadcast({ type: "cursor", cursor });
    this.writes.observe(null);
  }

  #setCursor(cursor) {
    this.cursor = cursor;
    this.status = { ...this.status, cursor };
    sessionStorage.setItem(this.cursorKey, String(cursor));
  }

  #reset(reset) {
    this.#tabs.broadcast({ type: "reset", reset });
    this.#applyReset(reset);
  }

  /** Continue from the reset's cursor and reload every table's snapshot. */
  #applyReset(reset) {
    this.cursor = 0;
    this.#setCursor(reset.cursor);
    for (const tables of this.#tables.values()) for (const table of tables) table.ready = table.load();
    this.#emit("reset", reset);
  }

  #setState(state, transport, announce = true) {
    const changed = state !== this.status.state || transport !== this.status.transport;
    this.status = { ...this.status, state, transport, leader: this.leader };
    if (!changed) return;
    if (announce && this.leader) this.#tabs.broadcast({ type: "status", state, transport });
    this.#emit("status", this.status);
    if (this.leader && (state === "live" || state === "polling")) this.writes.flush();
  }

  #emit(type, payload) {
    this.#emitter.emit(type, payload);
  }

  // Public API

  /**
   * Call `fn` for `insert`, `update`, `delete`, `change` (all three, and published events),
   * `publish`, `reset`, `status`, `pending`, `confirmed`, `rollback`, `conflict` or `error`.
   * `"insert:sales_logs"` narrows an event type to one topic. Returns a function that unsubscribes.
   */
  on(type, fn) {
    return this.#emitter.on(type, fn);
  }

  /** Return a live table: its snapshot, kept current by events, with pending writes laid over. */
  table(name, options = {}) {
    if (!this.topics.includes(name)) throw new Error(`${name} is not among this feed's topics.`);
    const filter = options.filter ?? this.#subscription.filters[name] ?? {};
    const table = new LiveTable(this.#tableHost, name, { ...options, filter });
    if (!this.#tables.has(name)) this.#tables.set(name, new Set());
    this.#tables.get(name).add(table);
    return table;
  }

  /** Insert, update or delete a row optimistically (see Writes.write). */
  write(table, op, row, options) {
    return this.writes.write(table, op, row, options);
  }

  /** The number of writes not yet confirmed (sending, queued or acknowledged). */
  get pending() {
    return this.writes.pending.length;
  }

  /** Resolve to the number of writes waiting in this browser's offline queue. */
  async queued() {
    return this.writes.queued();
  }

  /**
   * Resume after signing in again (`csrfToken`: the new session's, else the page's meta is
   * read again): from the cursor, nothing lost, and the offline queue is flushed. Every tab
   * of this browser follows.
   */
  signedIn({ csrfToken } = {}, announce = true) {
    this.credentials.signedIn(csrfToken);
    if (announce) this.#tabs.broadcast({ type: "signed-in", csrfToken });
    for (const resolve of this.#signedInAgain.splice(0)) resolve();
    if (this.status.state !== "signed-out") return;
    if (this.leader) this.#transport.start();
    else this.#setState("connecting", null, false);
  }

  /** Stop receiving in this tab (another tab takes the connection over if this one led). */
  close() {
    this.#transport.stop("offline");
    this.#tabs.close();
  }
}

/** Open (or join) this browser's shared connection; a filter the server would refuse throws its FilterError. */
export function connect(options) {
  return new Feed(options);
}
