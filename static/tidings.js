/**
 * Tidings browser client: live tables over Server-Sent Events with a long-poll fallback,
 * one connection per browser shared by its tabs, and optimistic writes with an offline
 * queue. One ES module, no build step, no dependencies.
 *
 *   import { connect } from "/static/tidings.js";
 *   const feed = connect({ topics: ["sales_logs"] });
 *   const sales = feed.table("sales_logs");
 *   sales.on("change", () => render(sales.rows));
 *   feed.write("sales_logs", "insert", { bread_type_id: 1, quantity: 2, ... });
 */

const BACKOFF_BASE_MS = 500;
const BACKOFF_CAP_MS = 30_000;
// Failed stream attempts within FAILURE_WINDOW_MS that make the client poll instead.
const FAILURES_BEFORE_POLLING = 3;
const FAILURE_WINDOW_MS = 60_000;
// A stream that has not said `ready` by then is being buffered by something in between.
const READY_TIMEOUT_MS = 10_000;
const PROBE_FIRST_MS = 5_000;
const PROBE_CAP_MS = 60_000;
const LONG_POLL_SECONDS = 25;
const HIDDEN_PAUSE_MS = 60_000;
const VISIBLE_PING_MS = 15_000;
const BATCH_SIZE = 500;

/** Return a full-jitter exponential backoff delay in milliseconds. */
export function backoff(attempt, base = BACKOFF_BASE_MS, cap = BACKOFF_CAP_MS) {
  return Math.random() * Math.min(cap, base * 2 ** attempt);
}

/** Return `fn` limited to one call per `ms`, with the latest arguments kept for the trailing call. */
export function throttle(fn, ms) {
  let last = 0;
  let timer = null;
  let args = null;
  return (...latest) => {
    args = latest;
    const wait = last + ms - Date.now();
    if (wait <= 0 && timer === null) {
      last = Date.now();
      fn(...args);
    } else if (timer === null) {
      timer = setTimeout(() => {
        timer = null;
        last = Date.now();
        fn(...args);
      }, Math.max(wait, 0));
    }
  };
}

const frameQueue = new Map();
let frameScheduled = false;

function runFrame() {
  frameScheduled = false;
  const jobs = [...frameQueue.values()];
  frameQueue.clear();
  for (const job of jobs) {
    try {
      job();
    } catch (error) {
      reportError(error);
    }
  }
}

/** Run `fn` once in the next animation frame, however often it is asked for under one `key`. */
export function frame(key, fn) {
  frameQueue.set(key, fn);
  if (frameScheduled) return;
  frameScheduled = true;
  // Hidden tabs get no animation frames; the timer keeps their state current anyway.
  const fallback = setTimeout(runFrame, 100);
  requestAnimationFrame(() => {
    clearTimeout(fallback);
    if (frameScheduled) runFrame();
  });
}

function reportError(error) {
  console.error("tidings: a handler failed", error);
}

/** Split a `text/event-stream` body into blocks, calling `onBlock({event, data, id})`. */
export class SseParser {
  constructor(onBlock) {
    this.onBlock = onBlock;
    this.buffer = "";
    this.block = { event: "", data: null, id: null };
  }

  push(text) {
    this.buffer += text;
    const lines = this.buffer.split(/\r\n|\r|\n/);
    // A trailing "\r" may be half of "\r\n": keep it for the next chunk.
    this.buffer = lines.pop();
    if (this.buffer === "" && text.endsWith("\r")) this.buffer = "\r";
    for (const line of lines) this.line(line);
  }

  line(line) {
    if (line === "" || line === "\r") {
      const block = this.block;
      this.block = { event: "", data: null, id: null };
      if (block.data !== null || block.id !== null) this.onBlock(block);
      return;
    }
    if (line.startsWith(":")) return;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event") this.block.event = value;
    else if (field === "data") this.block.data = this.block.data === null ? value : `${this.block.data}\n${value}`;
    else if (field === "id") this.block.id = value;
  }
}

function compareText(value, text) {
  const other = typeof value === "number" ? Number(text) : typeof value === "boolean" ? text === "true" : text;
  return value < other ? -1 : value > other ? 1 : 0;
}

/** Tell whether a row passes one PostgREST-style test such as `gte.5` or `in.(1,2)`. */
export function testFilter(row, column, expression) {
  const dot = expression.indexOf(".");
  const op = expression.slice(0, dot);
  const text = expression.slice(dot + 1);
  const value = row == null ? undefined : row[column];
  if (op === "is") return text === "null" ? value == null : value === (text === "true");
  if (value == null) return false;
  if (op === "in") return text.slice(1, -1).split(",").some((item) => compareText(value, item.trim()) === 0);
  const order = compareText(value, text);
  return { eq: order === 0, neq: order !== 0, lt: order < 0, lte: order <= 0, gt: order > 0, gte: order >= 0 }[op] ?? false;
}

/** Tell whether a row passes every test of a filter `{column: "op.value" | ["op.value", ...]}`. */
export function matches(row, filter = {}) {
  if (row == null) return false;
  return Object.entries(filter).every(([column, tests]) =>
    [].concat(tests).every((expression) => testFilter(row, column, expression)),
  );
}

function hash(text) {
  let h = 5381;
  for (let i = 0; i < text.length; i++) h = ((h << 5) + h + text.charCodeAt(i)) | 0;
  return (h >>> 0).toString(36);
}

function newKey() {
  return crypto.randomUUID ? crypto.randomUUID() : `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`;
}

/** An error a write ends with: `code` is the server's error code, `body` its full answer. */
export class WriteError extends Error {
  constructor(status, body) {
    super(body?.message || `The server answered ${status}.`);
    this.status = status;
    this.code = body?.error || "error";
    this.body = body;
  }
}

/** A write waiting for the network, kept in IndexedDB so it survives a reload. */
class Outbox {
  constructor(name) {
    this.memory = [];
    this.nextSeq = 1;
    this.opened = new Promise((resolve) => {
      if (typeof indexedDB === "undefined") return resolve(null);
      const request = indexedDB.open(name, 1);
      request.onupgradeneeded = () => request.result.createObjectStore("ops", { keyPath: "seq", autoIncrement: true });
      request.onsuccess = () => resolve(request.result);
      request.onerror = () => resolve(null);
    });
  }

  async run(mode, work) {
    const db = await this.opened;
    if (db === null) return work(null);
    return new Promise((resolve, reject) => {
      const tx = db.transaction("ops", mode);
      const result = work(tx.objectStore("ops"));
      tx.oncomplete = () => resolve(result.result ?? result);
      tx.onerror = () => reject(tx.error);
    });
  }

  /** Append an op and return it with its sequence number. */
  async add(op) {
    if ((await this.opened) === null) {
      this.memory.push({ seq: this.nextSeq++, op });
      return;
    }
    await this.run("readwrite", (store) => store.add({ op }));
  }

  /** Return every queued entry, oldest first. */
  async all() {
    if ((await this.opened) === null) return [...this.memory];
    return this.run("readonly", (store) => store.getAll());
  }

  /** Drop entries by sequence number. */
  async remove(seqs) {
    if ((await this.opened) === null) {
      this.memory = this.memory.filter((entry) => !seqs.includes(entry.seq));
      return;
    }
    await this.run("readwrite", (store) => {
      for (const seq of seqs) store.delete(seq);
      return {};
    });
  }
}

/** The network side, run by the leader tab only: SSE with its own retry policy, or long poll. */
class Transport {
  constructor(feed) {
    this.feed = feed;
    this.generation = 0;
    this.running = false;
    this.failures = [];
    this.buffered = false;
    this.everLive = false;
    this.streams = new Set();
    this.pollController = null;
    this.wakeUp = () => {};
  }

  start() {
    if (this.running) return;
    this.running = true;
    const generation = ++this.generation;
    this.loop(generation).finally(() => {
      if (this.generation === generation) this.running = false;
    });
  }

  stop(state) {
    this.generation++;
    this.running = false;
    this.interrupt();
    if (state) this.feed._setState(state, null);
  }

  /** Drop the current connection; the loop decides what comes next. */
  interrupt() {
    for (const stream of [...this.streams]) stream.close("interrupted");
    this.pollController?.abort();
    this.wake();
  }

  wake() {
    this.wakeUp();
  }

  sleep(ms) {
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, ms);
      this.wakeUp = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }

  shouldPoll() {
    const now = Date.now();
    this.failures = this.failures.filter((at) => now - at < FAILURE_WINDOW_MS);
    return this.buffered || this.failures.length >= FAILURES_BEFORE_POLLING;
  }

  async loop(generation) {
    const current = () => this.generation === generation;
    let attempt = 0;
    while (current()) {
      if (!navigator.onLine) {
        this.feed._setState("offline", null);
        await this.sleep(PROBE_CAP_MS);
        attempt = 0;
        continue;
      }
      let stream;
      if (this.shouldPoll()) {
        stream = await this.pollUntilStreamWorks(current);
        if (!stream) continue;
      } else {
        this.feed._setState(this.everLive ? "reconnecting" : "connecting", null);
        stream = this.open();
        try {
          await stream.ready;
        } catch (error) {
          if (!current()) break;
          // Going offline is not the stream's fault: only real failures count towards polling.
          if (navigator.onLine) this.failures.push(Date.now());
          this.feed._emit("error", { source: "stream", message: error.message });
          await this.sleep(backoff(attempt++));
          continue;
        }
      }
      if (!current()) {
        stream.close("stopped");
        break;
      }
      attempt = 0;
      this.failures = [];
      this.buffered = false;
      this.everLive = true;
      this.feed._setState("live", "stream");
      await stream.done;
      if (!current()) break;
      // Not live while waiting out the backoff: the stream is already gone.
      this.feed._setState("reconnecting", null);
      await this.sleep(backoff(attempt++));
    }
  }

  /** Open one stream from the feed's cursor; `ready` settles on `event: ready` or failure. */
  open() {
    const feed = this.feed;
    const controller = new AbortController();
    let ended = false;
    let isReady = false;
    let watchdog = null;
    let settleReady;
    let failReady;
    let finish;
    const ready = new Promise((resolve, reject) => {
      settleReady = resolve;
      failReady = reject;
    });
    ready.catch(() => {});
    const done = new Promise((resolve) => {
      finish = resolve;
    });
    const handle = { ready, done, close: (reason) => end(reason) };
    const end = (reason) => {
      if (ended) return;
      ended = true;
      clearTimeout(watchdog);
      clearTimeout(readyTimer);
      controller.abort();
      this.streams.delete(handle);
      if (!isReady) failReady(new Error(`The stream ended before it was ready: ${reason}.`));
      finish(reason);
    };
    const readyTimer = setTimeout(() => {
      this.buffered = true;
      end("no ready event within 10 s (buffered by a proxy?)");
    }, READY_TIMEOUT_MS);
    const touch = () => {
      clearTimeout(watchdog);
      watchdog = setTimeout(() => end("stale: no bytes for 2.5 heartbeats"), feed.heartbeatMs * 2.5);
    };
    const parser = new SseParser((block) => {
      if (ended) return;
      if (block.event === "change") feed._receive(JSON.parse(block.data));
      else if (block.event === "reset") feed._reset(JSON.parse(block.data));
      else if (block.event === "ready") {
        feed._advance(JSON.parse(block.data).cursor);
        isReady = true;
        clearTimeout(readyTimer);
        settleReady(handle);
      } else if (block.data === null && block.id !== null) feed._advance(Number(block.id));
    });
    this.streams.add(handle);
    fetch(feed._url("/stream", { cursor: feed.cursor }), {
      signal: controller.signal,
      cache: "no-store",
      headers: { Accept: "text/event-stream" },
    })
      .then(async (response) => {
        if (!response.ok || !response.body) {
          const body = await response.json().catch(() => null);
          throw new Error(body?.message || `HTTP ${response.status}`);
        }
        touch();
        const reader = response.body.getReader();
        const decoder = new TextDecoder();
        for (;;) {
          const { done: eof, value } = await reader.read();
          if (eof || ended) break;
          touch();
          parser.push(decoder.decode(value, { stream: true }));
        }
        end("closed by the server");
      })
      .catch((error) => end(error.message || String(error)));
    return handle;
  }

  /** Long-poll until a probe stream reaches `ready`; return that stream (or null when interrupted). */
  async pollUntilStreamWorks(current) {
    const feed = this.feed;
    const controller = new AbortController();
    this.pollController = controller;
    feed._setState("polling", "poll");
    let probes = 0;
    let probeTimer = null;
    let found = null;
    const probe = async () => {
      if (controller.signal.aborted || !current()) return;
      const stream = this.open();
      try {
        found = await stream.ready;
        controller.abort();
      } catch {
        probes++;
        schedule();
      }
    };
    const schedule = () => {
      probeTimer = setTimeout(probe, Math.min(PROBE_CAP_MS, PROBE_FIRST_MS * 2 ** probes) * (0.5 + Math.random() / 2));
    };
    schedule();
    let failures = 0;
    while (!controller.signal.aborted && current()) {
      try {
        const response = await fetch(feed._url("/api/changes", { cursor: feed.cursor, wait: LONG_POLL_SECONDS }), {
          signal: controller.signal,
          cache: "no-store",
        });
        const body = await response.json();
        if (response.status === 410) {
          feed._reset(body.reset);
          continue;
        }
        if (!response.ok) throw new Error(body.message || `HTTP ${response.status}`);
        for (const event of body.events) feed._receive(event);
        feed._advance(body.cursor);
        failures = 0;
        feed._setState("polling", "poll");
      } catch (error) {
        if (controller.signal.aborted) break;
        feed._setState(navigator.onLine ? "reconnecting" : "offline", null);
        feed._emit("error", { source: "poll", message: error.message });
        await Promise.race([this.sleep(backoff(failures++)), new Promise((r) => controller.signal.addEventListener("abort", r))]);
      }
    }
    clearTimeout(probeTimer);
    if (this.pollController === controller) this.pollController = null;
    return found;
  }
}

/** Rows of one table: a snapshot with events applied, pending writes laid over them. */
export class LiveTable {
  constructor(feed, name, options = {}) {
    this.feed = feed;
    this.name = name;
    this.filter = options.filter ?? feed.filters[name] ?? {};
    this.order = options.order ?? "id.asc";
    this.limit = options.limit ?? null;
    this.select = options.select ?? null;
    this.base = new Map();
    this.gone = new Map();
    this.cursor = 0;
    this.loading = null;
    this.buffer = [];
    this.cache = null;
    this.handlers = new Set();
    this.loaded = false;
    this.ready = this.load();
  }

  /** Reload the snapshot; events arriving meanwhile are held and applied after it. */
  load() {
    const query = { order: this.order };
    for (const [column, tests] of Object.entries(this.filter)) query[column] = [].concat(tests);
    if (this.limit) query.limit = this.limit;
    if (this.select) query.select = this.select.join(",");
    this.loading = (async () => {
      await this.feed.started;
      for (let attempt = 0; ; attempt++) {
        try {
          const response = await fetch(this.feed._path(`/api/${this.name}`, query), { cache: "no-store" });
          const body = await response.json();
          if (!response.ok) throw new WriteError(response.status, body);
          this.base = new Map(body.rows.map((row) => [row.id, row]));
          this.gone.clear();
          this.cursor = body.cursor;
          break;
        } catch (error) {
          this.feed._emit("error", { source: "snapshot", table: this.name, message: error.message });
          await new Promise((resolve) => setTimeout(resolve, backoff(attempt)));
        }
      }
      const held = this.buffer;
      this.buffer = [];
      this.loading = null;
      this.loaded = true;
      for (const event of held) this._apply(event);
      this._changed();
      return this;
    })();
    return this.loading;
  }

  /** Apply one event; duplicates and stale versions of a row are ignored. */
  _apply(event) {
    if (event.topic !== this.name) return;
    if (this.loading) {
      this.buffer.push(event);
      return;
    }
    if (event.id <= this.cursor) return;
    const have = this.base.get(event.pk);
    const seen = Math.max(have?.version ?? 0, this.gone.get(event.pk) ?? 0);
    if (event.op === "DELETE") {
      if (!have || event.version < have.version) return;
      this.base.delete(event.pk);
      this.gone.set(event.pk, event.version);
    } else {
      if (event.version <= seen) return;
      const row = { ...(have ?? {}), ...event.row };
      if (matches(row, this.filter)) this.base.set(event.pk, row);
      else {
        this.base.delete(event.pk);
        this.gone.set(event.pk, event.version);
      }
    }
    this._changed();
  }

  _changed() {
    this.cache = null;
    if (this.handlers.size) frame(this, () => this._notify());
  }

  _notify() {
    for (const handler of this.handlers) {
      try {
        handler(this);
      } catch (error) {
        reportError(error);
        this.feed._emit("error", { source: "handler", message: error.message, error });
      }
    }
  }

  /** Call `fn(table)` after changes, at most once per animation frame. */
  on(type, fn) {
    if (type !== "change") throw new Error('A table only emits "change".');
    this.handlers.add(fn);
    if (this.loaded) frame(this, () => this._notify());
    return () => this.handlers.delete(fn);
  }

  /** The rows as they should be shown: server state with this browser's pending writes applied. */
  get rows() {
    if (this.cache) return this.cache;
    const rows = new Map(this.base);
    for (const op of this.feed.writes.pendingFor(this.name)) {
      if (op.op === "insert") rows.set(`pending:${op.key}`, { ...op.row, id: op.row.id ?? null, _pending: op.key });
      else if (op.op === "update" && rows.has(op.id)) rows.set(op.id, { ...rows.get(op.id), ...op.row, _pending: op.key });
      else if (op.op === "delete") rows.delete(op.id);
    }
    const [column, direction] = this.order.split(".");
    const sign = direction === "desc" ? -1 : 1;
    const sorted = [...rows.values()]
      .filter((row) => row._pending || matches(row, this.filter))
      .sort((a, b) => {
        const x = a[column] ?? Infinity;
        const y = b[column] ?? Infinity;
        return x < y ? -sign : x > y ? sign : 0;
      });
    this.cache = this.limit ? sorted.slice(0, this.limit) : sorted;
    return this.cache;
  }

  /** Return one row by id, pending changes included. */
  get(id) {
    return this.rows.find((row) => row.id === id);
  }
}

/** Optimistic writes: pending state, acknowledgement, confirmation, rollback and the offline queue. */
class Writes {
  constructor(feed) {
    this.feed = feed;
    this.pending = [];
    this.outbox = new Outbox(`tidings-outbox:${feed.scope}`);
    this.flushing = false;
    this.flushAgain = false;
    this.retryTimer = null;
    this.retries = 0;
    this.restored = this.restore();
  }

  pendingFor(table) {
    return this.pending.filter((op) => op.table === table);
  }

  /** Put writes queued before a reload (or by another tab) back as pending. */
  async restore() {
    for (const entry of await this.outbox.all()) this._track(this._fromWire(entry.op), "queued");
  }

  _fromWire(wire) {
    const op = { POST: "insert", PATCH: "update", DELETE: "delete" }[wire.method];
    return { key: wire.key, table: wire.table, op, id: wire.id ?? null, row: wire.row ?? {}, ifMatch: wire.if_match ?? null };
  }

  _toWire(op) {
    const method = { insert: "POST", update: "PATCH", delete: "DELETE" }[op.op];
    const wire = { method, table: op.table, key: op.key };
    if (op.op !== "insert") wire.id = op.id;
    if (op.op !== "delete") wire.row = op.row;
    if (op.ifMatch != null) wire.if_match = op.ifMatch;
    return wire;
  }

  _track(op, state) {
    if (this.pending.some((other) => other.key === op.key)) return;
    op.state = state;
    this.pending.push(op);
    this._changed(op.table);
  }

  _changed(table) {
    this.feed.tables.get(table)?.forEach((t) => t._changed());
    this.feed._emit("pending", { count: this.pending.length });
  }

  /** Apply a write optimistically and send it; the promise settles when it is confirmed or refused. */
  write(table, op, row, options = {}) {
    op = { insert: "insert", update: "update", delete: "delete", POST: "insert", PATCH: "update", DELETE: "delete" }[op];
    if (!op) throw new Error("op must be insert, update or delete.");
    const { id, version, updated_at: _managed, _pending, ...values } = row;
    if (op !== "insert" && id == null) throw new Error(`${op} needs the row's id.`);
    const ifMatch = options.ifMatch === false ? null : (options.ifMatch ?? version ?? null);
    const pending = { key: options.key ?? newKey(), table, op, id: id ?? null, row: values, ifMatch };
    const promise = new Promise((resolve, reject) => {
      pending.resolve = resolve;
      pending.reject = reject;
    });
    promise.key = pending.key;
    this._track(pending, "sending");
    this._send(pending);
    return promise;
  }

  async _send(op) {
    const queued = (await this.outbox.all()).length > 0;
    if (queued || !navigator.onLine || this.feed.status.state === "offline") return this._enqueue(op);
    const path = op.op === "insert" ? `/api/${op.table}` : `/api/${op.table}/${op.id}`;
    const headers = { "Idempotency-Key": op.key };
    if (op.op !== "delete") headers["Content-Type"] = "application/json";
    if (op.ifMatch != null) headers["If-Match"] = `"${op.ifMatch}"`;
    let response;
    let body;
    try {
      response = await fetch(this.feed._path(path), {
        method: { insert: "POST", update: "PATCH", delete: "DELETE" }[op.op],
        headers,
        body: op.op === "delete" ? undefined : JSON.stringify(op.row),
      });
      body = await response.json();
    } catch {
      return this._enqueue(op);
    }
    if (response.status >= 500 || response.status === 429 || response.status === 408) return this._enqueue(op);
    this.settle(op.key, response.status, body);
  }

  async _enqueue(op) {
    op.state = "queued";
    await this.outbox.add(this._toWire(op));
    this._changed(op.table);
    this.feed._broadcast({ type: "queued", op: this._toWire(op) });
    this.flush();
  }

  /** Send the queued writes in order through POST /api/batch (the leader tab does this). */
  async flush() {
    const feed = this.feed;
    if (!feed.leader || !navigator.onLine || !["live", "polling"].includes(feed.status.state)) return;
    if (this.flushing) {
      this.flushAgain = true;
      return;
    }
    this.flushing = true;
    clearTimeout(this.retryTimer);
    try {
      const entries = (await this.outbox.all()).slice(0, BATCH_SIZE);
      if (!entries.length) return;
      const response = await fetch(feed._path("/api/batch"), {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ ops: entries.map((entry) => entry.op) }),
      });
      if (!response.ok) throw new Error(`batch answered ${response.status}`);
      const { results } = await response.json();
      const applied = [];
      for (const [i, result] of results.entries()) {
        // A server-side failure stops the batch here so later writes keep their order.
        if (result.status >= 500 || result.status === 429) break;
        applied.push(entries[i]);
      }
      await this.outbox.remove(applied.map((entry) => entry.seq));
      for (const entry of applied) {
        const result = results[entries.indexOf(entry)];
        feed._broadcast({ type: "result", key: entry.op.key, status: result.status, body: result.body });
        this.settle(entry.op.key, result.status, result.body);
      }
      this.retries = 0;
      if (applied.length < entries.length) throw new Error("the server could not apply every write");
      if (entries.length === BATCH_SIZE) this.flushAgain = true;
    } catch (error) {
      feed._emit("error", { source: "flush", message: error.message });
      this.retryTimer = setTimeout(() => this.flush(), backoff(this.retries++));
    } finally {
      this.flushing = false;
      if (this.flushAgain) {
        this.flushAgain = false;
        this.flush();
      }
    }
  }

  /** Handle the server's answer to a write, wherever it was sent from. */
  settle(key, status, body) {
    const op = this.pending.find((item) => item.key === key);
    if (!op) return;
    if (status >= 200 && status < 300) {
      op.state = "acknowledged";
      op.event = body?.event ?? 0;
      if (body?.row) {
        op.row = { ...op.row, ...body.row };
        op.id = body.row.id;
      }
      if (op.event <= this.feed.cursor) this._confirm(op, body?.row ?? null);
      return;
    }
    this._drop(op);
    const error = new WriteError(status, body);
    if (status === 412 && body?.error === "version_conflict") {
      const theirs = body.current;
      const mine = { ...theirs, ...op.row, id: op.id };
      op.reject?.(Object.assign(error, { mine, theirs }));
      this.feed._emit("conflict", {
        table: op.table,
        op: op.op,
        key,
        mine,
        theirs,
        error,
        retry: () => this.write(op.table, op.op, { ...op.row, id: op.id, version: theirs.version }),
      });
      return;
    }
    op.reject?.(error);
    this.feed._emit("rollback", { table: op.table, op: op.op, key, row: op.row, id: op.id, error });
  }

  /** Confirm acknowledged writes once the feed has passed their event. */
  observe(event) {
    for (const op of [...this.pending]) {
      const carried = event && event.mutation === op.key && event.topic === op.table;
      if (carried || (op.state === "acknowledged" && op.event <= this.feed.cursor)) {
        this._confirm(op, carried ? event.row : op.row);
      }
    }
  }

  _confirm(op, row) {
    this._drop(op);
    op.resolve?.(row);
    this.feed._emit("confirmed", { table: op.table, op: op.op, key: op.key, row });
  }

  _drop(op) {
    this.pending = this.pending.filter((item) => item !== op);
    this._changed(op.table);
  }
}

/** A subscription shared by this browser's tabs: events, live tables and writes. */
export class Feed {
  constructor(options = {}) {
    this.base = options.url ?? "";
    this.topics = [...(options.topics ?? [])];
    if (!this.topics.length) throw new Error("connect() needs topics.");
    this.filters = options.filters ?? {};
    this.selects = options.select ?? {};
    this.heartbeatMs = (options.heartbeat ?? 15) * 1000;
    this.hiddenPauseMs = options.hiddenPause ?? HIDDEN_PAUSE_MS;
    this.scope = hash(JSON.stringify([location.origin, this.base, this.topics, this.filters, this.selects]));
    this.tabId = newKey();
    this.handlers = new Map();
    this.tables = new Map();
    this.leader = false;
    this.status = { state: "connecting", transport: null, lastEventAt: null, lag: null, leader: false, cursor: 0 };
    this.cursorKey = `tidings:cursor:${this.scope}`;
    const stored = Number(sessionStorage.getItem(this.cursorKey));
    this.cursor = Number.isFinite(stored) && stored > 0 ? stored : 0;
    this.transport = new Transport(this);
    this.writes = new Writes(this);
    this.started = this.cursor ? Promise.resolve(this.cursor) : this._fetchHead();
    this._share(options.share !== false);
    this._watchNetwork();
  }

  /** Build a URL for this feed's subscription. */
  _url(path, extra = {}) {
    const query = { topics: this.topics.join(","), ...extra };
    for (const [topic, filter] of Object.entries(this.filters)) {
      for (const [column, tests] of Object.entries(filter)) query[`${topic}.${column}`] = [].concat(tests);
    }
    for (const [topic, columns] of Object.entries(this.selects)) query[`${topic}.select`] = columns.join(",");
    return this._path(path, query);
  }

  _path(path, query = {}) {
    const params = new URLSearchParams();
    for (const [key, value] of Object.entries(query)) {
      if (value == null) continue;
      for (const item of [].concat(value)) params.append(key, item);
    }
    const text = params.toString();
    return `${this.base}${path}${text ? `?${text}` : ""}`;
  }

  async _fetchHead() {
    for (let attempt = 0; ; attempt++) {
      try {
        const response = await fetch(this._url("/api/changes", { wait: 0, limit: 1 }), { cache: "no-store" });
        const body = await response.json();
        if (!response.ok) throw new WriteError(response.status, body);
        this._advance(body.cursor);
        return this.cursor;
      } catch (error) {
        this._emit("error", { source: "start", message: error.message });
        await new Promise((resolve) => setTimeout(resolve, backoff(attempt)));
      }
    }
  }

  // Sharing one connection between tabs

  _share(share) {
    const canShare = share && typeof BroadcastChannel !== "undefined" && navigator.locks;
    if (!canShare) {
      this._lead();
      return;
    }
    this.channel = new BroadcastChannel(`tidings:${this.scope}`);
    this.channel.onmessage = (message) => this._onMessage(message.data);
    navigator.locks.request(`tidings:leader:${this.scope}`, () => {
      this._lead();
      return new Promise(() => {});
    });
    this._broadcast({ type: "hello" });
    this._visibilityPings();
  }

  _broadcast(message) {
    this.channel?.postMessage(message);
  }

  async _lead() {
    this.leader = true;
    this.status = { ...this.status, leader: true };
    await this.started;
    await this.writes.restored;
    this.transport.start();
    this._watchVisibility();
  }

  _onMessage(message) {
    switch (message.type) {
      case "event":
        if (!this.leader) this._accept(message.event);
        break;
      case "cursor":
        if (!this.leader) this._advance(message.cursor);
        break;
      case "reset":
        if (!this.leader) this._applyReset(message.reset);
        break;
      case "status":
        if (!this.leader) this._setState(message.state, message.transport, false);
        break;
      case "hello":
        if (this.leader) this._broadcast({ type: "status", state: this.status.state, transport: this.status.transport });
        break;
      case "queued":
        this.writes._track(this.writes._fromWire(message.op), "queued");
        if (this.leader) this.writes.flush();
        break;
      case "result":
        this.writes.settle(message.key, message.status, message.body);
        break;
      case "visible":
        this.followerSeenAt = Date.now();
        if (this.leader && this.status.state === "paused") this.transport.start();
        break;
    }
  }

  _visibilityPings() {
    const ping = () => {
      if (document.visibilityState === "visible") this._broadcast({ type: "visible" });
    };
    document.addEventListener("visibilitychange", ping);
    setInterval(ping, VISIBLE_PING_MS);
  }

  // Network and visibility

  _watchNetwork() {
    addEventListener("offline", () => {
      if (this.leader) this.transport.interrupt();
    });
    addEventListener("online", () => {
      if (this.leader) this.transport.wake();
    });
  }

  /** Close the stream after a while hidden (when no other tab is visible); resume when shown. */
  _watchVisibility() {
    let hiddenSince = document.hidden ? Date.now() : null;
    document.addEventListener("visibilitychange", () => {
      hiddenSince = document.hidden ? Date.now() : null;
      if (!document.hidden && this.status.state === "paused") this.transport.start();
    });
    setInterval(() => {
      const othersVisible = Date.now() - (this.followerSeenAt ?? 0) < VISIBLE_PING_MS * 2;
      if (hiddenSince && Date.now() - hiddenSince >= this.hiddenPauseMs && !othersVisible && this.status.state !== "paused") {
        this.transport.stop("paused");
      }
    }, 5_000);
  }

  // Events in

  /** Take an event from the network (leader): pass it to the other tabs, then apply it here. */
  _receive(event) {
    if (event.id <= this.cursor) return;
    this._broadcast({ type: "event", event });
    this._accept(event);
  }

  _accept(event) {
    if (event.id <= this.cursor) return;
    this._setCursor(event.id);
    const now = Date.now();
    this.status = { ...this.status, lastEventAt: now, lag: event.at ? Math.max(0, now - Date.parse(event.at)) : null };
    for (const tables of this.tables.values()) for (const table of tables) table._apply(event);
    this.writes.observe(event);
    const op = event.op.toLowerCase();
    for (const type of ["change", op]) {
      this._emit(type, event);
      this._emit(`${type}:${event.topic}`, event);
    }
  }

  _advance(cursor) {
    if (!(cursor > this.cursor)) return;
    this._setCursor(cursor);
    if (this.leader) this._broadcast({ type: "cursor", cursor });
    this.writes.observe(null);
  }

  _setCursor(cursor) {
    this.cursor = cursor;
    this.status = { ...this.status, cursor };
    sessionStorage.setItem(this.cursorKey, String(cursor));
  }

  _reset(reset) {
    this._broadcast({ type: "reset", reset });
    this._applyReset(reset);
  }

  /** Continue from the reset's cursor and reload every table's snapshot. */
  _applyReset(reset) {
    this.cursor = 0;
    this._setCursor(reset.cursor);
    for (const tables of this.tables.values()) for (const table of tables) table.ready = table.load();
    this._emit("reset", reset);
  }

  _setState(state, transport, announce = true) {
    const changed = state !== this.status.state || transport !== this.status.transport;
    this.status = { ...this.status, state, transport, leader: this.leader };
    if (!changed) return;
    if (announce && this.leader) this._broadcast({ type: "status", state, transport });
    this._emit("status", this.status);
    if (this.leader && (state === "live" || state === "polling")) this.writes.flush();
  }

  _emit(type, payload) {
    for (const handler of this.handlers.get(type) ?? []) {
      try {
        handler(payload);
      } catch (error) {
        reportError(error);
        if (type !== "error") this._emit("error", { source: "handler", type, message: error.message, error });
      }
    }
  }

  // Public API

  /**
   * Call `fn` for `insert`, `update`, `delete`, `change` (all three, and published events),
   * `publish`, `reset`, `status`, `pending`, `confirmed`, `rollback`, `conflict` or `error`.
   * `"insert:sales_logs"` narrows an event type to one topic. Returns a function that unsubscribes.
   */
  on(type, fn) {
    if (!this.handlers.has(type)) this.handlers.set(type, new Set());
    this.handlers.get(type).add(fn);
    return () => this.handlers.get(type).delete(fn);
  }

  /** Return a live table: its snapshot, kept current by events, with pending writes laid over. */
  table(name, options = {}) {
    if (!this.topics.includes(name)) throw new Error(`${name} is not among this feed's topics.`);
    const table = new LiveTable(this, name, options);
    if (!this.tables.has(name)) this.tables.set(name, new Set());
    this.tables.get(name).add(table);
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
    return (await this.writes.outbox.all()).length;
  }

  /** Stop receiving in this tab (another tab takes the connection over if this one led). */
  close() {
    this.transport.stop("offline");
    this.channel?.close();
  }
}

/** Open (or join) this browser's shared connection for a subscription. */
export function connect(options) {
  return new Feed(options);
}
