/** What a feed asks the server for: topics, their filters, projections and priorities, as URLs. */

import { parseFilter } from "./filters.js";
import { buildUrl } from "./http.js";

// What a subscriber that falls behind keeps exact longest (the server's `<topic>.priority`).
const PRIORITIES = ["high", "normal", "low"];

function hash(text) {
  let h = 5381;
  for (let i = 0; i < text.length; i++) h = ((h << 5) + h + text.charCodeAt(i)) | 0;
  return (h >>> 0).toString(36);
}

export class Subscription {
  /** Check `connect()`'s options; a filter the server would refuse throws its FilterError. */
  constructor(options) {
    this.base = options.url ?? "";
    this.topics = [...(options.topics ?? [])];
    if (!this.topics.length) throw new Error("connect() needs topics.");
    this.filters = options.filters ?? {};
    this.selects = options.select ?? {};
    this.priorities = options.priority ?? {};
    for (const [topic, priority] of Object.entries(this.priorities)) {
      if (!PRIORITIES.includes(priority)) throw new Error(`${topic} priority must be ${PRIORITIES.join(", ")}.`);
    }
    for (const filter of Object.values(this.filters)) parseFilter(filter);
    // Tabs with the same scope share one connection.
    this.scope = hash(JSON.stringify([location.origin, this.base, this.topics, this.filters, this.selects, this.priorities]));
  }

  /** Return a URL on this feed's server, outside the subscription. */
  path(path, query = {}) {
    return buildUrl(this.base, path, query);
  }

  /** Return a URL carrying the subscription (`/stream`, `/api/changes`). */
  url(path, extra = {}) {
    const query = { topics: this.topics.join(","), ...extra };
    for (const [topic, filter] of Object.entries(this.filters)) {
      for (const [column, tests] of Object.entries(filter)) query[`${topic}.${column}`] = [].concat(tests);
    }
    for (const [topic, columns] of Object.entries(this.selects)) query[`${topic}.select`] = columns.join(",");
    for (const [topic, priority] of Object.entries(this.priorities)) query[`${topic}.priority`] = priority;
    return this.path(path, query);
  }

  /** Type every filter by the tables' descriptions, throwing the FilterError of a misfit. */
  check(describe) {
    for (const [topic, filter] of Object.entries(this.filters)) parseFilter(filter, describe(topic));
  }
}
