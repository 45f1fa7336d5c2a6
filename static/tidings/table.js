/** Rows of one table: a snapshot with events applied, pending writes laid over them. */

import { reportError } from "./errors.js";
import { parseFilter } from "./filters.js";
import { frame } from "./timing.js";

/**
 * A live table. `host` is what it needs of its feed: `ready` (resolves to `describe(name)`,
 * the table descriptions by name), `path(path, query)`, `read(url, onError)` (a JSON answer,
 * retried until final and waiting out a sign-in), `emit(type, payload)` and `pendingFor(name)`. A filter the server would refuse throws its FilterError here, or
 * rejects `ready` once the column types show it.
 */
export class LiveTable {
  constructor(host, name, options = {}) {
    this.host = host;
    this.name = name;
    this.filter = options.filter ?? {};
    parseFilter(this.filter);
    this.conditions = null;
    this.order = options.order ?? "id.asc";
    this.limit = options.limit ?? null;
    this.select = options.select ?? null;
    this.base = new Map();
    this.gone = new Map();
    this.cursor = 0;
    this.loading = null;
    this.refused = null;
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
      try {
        const describe = await this.host.ready;
        this.conditions = parseFilter(this.filter, describe(this.name));
        const body = await this.host.read(this.host.path(`/api/${this.name}`, query), (error) =>
          this.host.emit("error", { source: "snapshot", table: this.name, message: error.message }),
        );
        this.base = new Map(body.rows.map((row) => [row.id, row]));
        this.gone.clear();
        this.cursor = body.cursor;
      } catch (error) {
        this.refused = error;
        this.buffer = [];
        this.loading = null;
        throw error;
      }
      const held = this.buffer;
      this.buffer = [];
      this.loading = null;
      this.loaded = true;
      for (const event of held) this.apply(event);
      this.changed();
      return this;
    })();
    // Refusals reach whoever awaits `ready`; nobody awaiting is not an unhandled error.
    this.loading.catch(() => {});
    return this.loading;
  }

  passes(row) {
    return this.conditions === null || this.conditions.every((condition) => condition.test(row));
  }

  /** Apply one event; duplicates and stale versions of a row are ignored. */
  apply(event) {
    if (event.topic !== this.name || this.refused) return;
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
      if (this.passes(row)) this.base.set(event.pk, row);
      else {
        this.base.delete(event.pk);
        this.gone.set(event.pk, event.version);
      }
    }
    this.changed();
  }

  /** Note that the rows changed (events or pending writes); handlers run in the next frame. */
  changed() {
    this.cache = null;
    if (this.handlers.size) frame(this, () => this.notify());
  }

  notify() {
    for (const handler of this.handlers) {
      try {
        handler(this);
      } catch (error) {
        reportError(error);
        this.host.emit("error", { source: "handler", message: error.message, error });
      }
    }
  }

  /** Call `fn(table)` after changes, at most once per animation frame. */
  on(type, fn) {
    if (type !== "change") throw new Error('A table only emits "change".');
    this.handlers.add(fn);
    if (this.loaded) frame(this, () => this.notify());
    return () => this.handlers.delete(fn);
  }

  /** The rows as they should be shown: server state with this browser's pending writes applied. */
  get rows() {
    if (this.cache) return this.cache;
    const rows = new Map(this.base);
    for (const op of this.host.pendingFor(this.name)) {
      if (op.op === "insert") rows.set(`pending:${op.key}`, { ...op.row, id: op.row.id ?? null, _pending: op.key });
      else if (op.op === "update" && rows.has(op.id)) rows.set(op.id, { ...rows.get(op.id), ...op.row, _pending: op.key });
      else if (op.op === "delete") rows.delete(op.id);
    }
    const [column, direction] = this.order.split(".");
    const sign = direction === "desc" ? -1 : 1;
    const sorted = [...rows.values()]
      .filter((row) => row._pending || this.passes(row))
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
