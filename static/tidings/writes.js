/** Optimistic writes: pending state, acknowledgement, confirmation, rollback and the offline queue. */

import { WriteError } from "./errors.js";
import { needsSignIn, retryAfter } from "./http.js";
import { Outbox } from "./outbox.js";
import { backoff, Pacer } from "./timing.js";

const BATCH_SIZE = 500;
// Writes a second this client sends at most: below the server's default of 20.
const WRITE_RATE = 10;
const METHODS = { insert: "POST", update: "PATCH", delete: "DELETE" };
const OPS = { insert: "insert", update: "update", delete: "delete", POST: "insert", PATCH: "update", DELETE: "delete" };

function newKey() {
  return crypto.randomUUID ? crypto.randomUUID() : `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`;
}

function fromWire(wire) {
  return { key: wire.key, table: wire.table, op: OPS[wire.method], id: wire.id ?? null, row: wire.row ?? {}, ifMatch: wire.if_match ?? null };
}

function toWire(op) {
  const wire = { method: METHODS[op.op], table: op.table, key: op.key };
  if (op.op !== "insert") wire.id = op.id;
  if (op.op !== "delete") wire.row = op.row;
  if (op.ifMatch != null) wire.if_match = op.ifMatch;
  return wire;
}

/**
 * The writes of one feed. `host` is what they need of it: `path(path)`, `cursor`, `state`,
 * `leader`, `headers()` (the credential's), `broadcast(message)` to the other tabs,
 * `emit(type, payload)`, `changed(table)` and `signedOut(reason)`. At most `rate` writes a
 * second leave (a token bucket); a 429 or 503 holds every write for its Retry-After.
 */
export class Writes {
  constructor(host, outboxName, rate = WRITE_RATE) {
    this.host = host;
    // Half a second's worth at once, so no second ever holds more than 1.5 × rate.
    this.pacer = new Pacer(rate, Math.max(1, rate / 2));
    this.batchSize = BATCH_SIZE;
    this.retryAt = 0;
    this.pending = [];
    this.outbox = new Outbox(outboxName);
    this.flushing = false;
    this.flushAgain = false;
    this.retryTimer = null;
    this.retries = 0;
    this.restored = this.restore();
  }

  pendingFor(table) {
    return this.pending.filter((op) => op.table === table);
  }

  /** Resolve to the number of writes waiting in the offline queue. */
  async queued() {
    return (await this.outbox.all()).length;
  }

  /** Put writes queued before a reload (or by another tab) back as pending. */
  async restore() {
    for (const entry of await this.outbox.all()) this.adopt(entry.op);
  }

  /** Show a write another tab queued (its wire form) as pending here. */
  adopt(wire) {
    this.track(fromWire(wire), "queued");
  }

  track(op, state) {
    if (this.pending.some((other) => other.key === op.key)) return;
    op.state = state;
    this.pending.push(op);
    this.changed(op.table);
  }

  changed(table) {
    this.host.changed(table);
    this.host.emit("pending", { count: this.pending.length });
  }

  /** Apply a write optimistically and send it; the promise settles when it is confirmed or refused. */
  write(table, op, row, options = {}) {
    op = OPS[op];
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
    this.track(pending, "sending");
    this.send(pending);
    return promise;
  }

  async send(op) {
    const queued = (await this.outbox.all()).length > 0;
    const held = ["offline", "signed-out"].includes(this.host.state) || Date.now() < this.retryAt;
    if (queued || held || !navigator.onLine) return this.enqueue(op);
    await this.pacer.take();
    const path = op.op === "insert" ? `/api/${op.table}` : `/api/${op.table}/${op.id}`;
    const headers = { ...this.host.headers(), "Idempotency-Key": op.key };
    if (op.op !== "delete") headers["Content-Type"] = "application/json";
    if (op.ifMatch != null) headers["If-Match"] = `"${op.ifMatch}"`;
    let response;
    let body;
    try {
      response = await fetch(this.host.path(path), {
        method: METHODS[op.op],
        headers,
        body: op.op === "delete" ? undefined : JSON.stringify(op.row),
      });
      body = await response.json();
    } catch {
      return this.enqueue(op);
    }
    if (needsSignIn(response.status, body)) {
      this.host.signedOut(body?.error === "csrf_failed" ? "csrf_failed" : "unauthenticated");
      return this.enqueue(op);
    }
    this.hold(response);
    if (response.status >= 500 || response.status === 429 || response.status === 408) return this.enqueue(op);
    this.settle(op.key, response.status, body);
  }

  /** Hold every write for a 429's or 503's Retry-After, and say so with `throttled`. */
  hold(response) {
    const wait = retryAfter(response);
    if (wait === null) return false;
    this.retryAt = Date.now() + wait;
    this.host.emit("throttled", { source: "write", retryAfter: wait / 1000, until: this.retryAt });
    return true;
  }

  async enqueue(op) {
    op.state = "queued";
    await this.outbox.add(toWire(op));
    this.changed(op.table);
    this.host.broadcast({ type: "queued", op: toWire(op) });
    this.flush();
  }

  /** Send the queued writes in order through POST /api/batch (the leader tab does this). */
  async flush() {
    const host = this.host;
    if (!host.leader || !navigator.onLine || !["live", "polling"].includes(host.state)) return;
    if (this.flushing) {
      this.flushAgain = true;
      return;
    }
    clearTimeout(this.retryTimer);
    const wait = this.retryAt - Date.now();
    if (wait > 0) {
      this.retryTimer = setTimeout(() => this.flush(), wait);
      return;
    }
    this.flushing = true;
    try {
      const entries = (await this.outbox.all()).slice(0, this.batchSize);
      if (!entries.length) return;
      await this.pacer.take(entries.length);
      const response = await fetch(host.path("/api/batch"), {
        method: "POST",
        headers: { ...host.headers(), "Content-Type": "application/json" },
        body: JSON.stringify({ ops: entries.map((entry) => entry.op) }),
      });
      const body = await response.json();
      if (needsSignIn(response.status, body)) {
        host.signedOut(body?.error === "csrf_failed" ? "csrf_failed" : "unauthenticated");
        return;
      }
      if (response.status === 400 && body.error === "batch_too_large") {
        // The server's write limit caps a batch: send smaller ones.
        this.batchSize = Math.max(1, body.details.max_ops);
        this.flushAgain = true;
        return;
      }
      if (this.hold(response)) {
        this.flushAgain = true;
        return;
      }
      if (!response.ok) throw new Error(`batch answered ${response.status}`);
      const { results } = body;
      const applied = [];
      for (const [i, result] of results.entries()) {
        // A server-side failure stops the batch here so later writes keep their order.
        if (result.status >= 500 || result.status === 429) break;
        applied.push(entries[i]);
      }
      await this.outbox.remove(applied.map((entry) => entry.seq));
      for (const entry of applied) {
        const result = results[entries.indexOf(entry)];
        host.broadcast({ type: "result", key: entry.op.key, status: result.status, body: result.body });
        this.settle(entry.op.key, result.status, result.body);
      }
      this.retries = 0;
      if (applied.length < entries.length) throw new Error("the server could not apply every write");
      if (entries.length === this.batchSize) this.flushAgain = true;
    } catch (error) {
      host.emit("error", { source: "flush", message: error.message });
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
      if (op.event <= this.host.cursor) this.confirm(op, body?.row ?? null);
      return;
    }
    this.drop(op);
    const error = new WriteError(status, body);
    if (status === 412 && body?.error === "version_conflict") {
      const theirs = body.current;
      const mine = { ...theirs, ...op.row, id: op.id };
      op.reject?.(Object.assign(error, { mine, theirs }));
      this.host.emit("conflict", {
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
    this.host.emit("rollback", { table: op.table, op: op.op, key, row: op.row, id: op.id, error });
  }

  /** Confirm acknowledged writes once the feed has passed their event. */
  observe(event) {
    for (const op of [...this.pending]) {
      const carried = event && event.mutation === op.key && event.topic === op.table;
      if (carried || (op.state === "acknowledged" && op.event <= this.host.cursor)) {
        this.confirm(op, carried ? event.row : op.row);
      }
    }
  }

  confirm(op, row) {
    this.drop(op);
    op.resolve?.(row);
    this.host.emit("confirmed", { table: op.table, op: op.op, key: op.key, row });
  }

  drop(op) {
    this.pending = this.pending.filter((item) => item !== op);
    this.changed(op.table);
  }
}
