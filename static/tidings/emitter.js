/** Named events with handlers that may throw without stopping the others. */

import { reportError } from "./errors.js";

export class Emitter {
  constructor() {
    this.handlers = new Map();
  }

  /** Call `fn(payload)` for each `type` emitted; return a function that unsubscribes. */
  on(type, fn) {
    if (!this.handlers.has(type)) this.handlers.set(type, new Set());
    this.handlers.get(type).add(fn);
    return () => this.handlers.get(type).delete(fn);
  }

  /** Call every handler of `type`; one that throws is reported, and as `error` too. */
  emit(type, payload) {
    for (const handler of this.handlers.get(type) ?? []) {
      try {
        handler(payload);
      } catch (error) {
        reportError(error);
        if (type !== "error") this.emit("error", { source: "handler", type, message: error.message, error });
      }
    }
  }
}
