/** The errors the client ends things with, and where a failing handler is reported. */

/** A refusal by the server: `status`, `code` (its error code), `details` and the whole `body`. */
export class ApiError extends Error {
  constructor(status, body) {
    super(body?.message || `The server answered ${status}.`);
    this.name = new.target.name;
    this.status = status;
    this.code = body?.error || "error";
    this.details = body?.details ?? {};
    this.body = body;
  }
}

/** An error a write ends with. */
export class WriteError extends ApiError {}

/** A filter or query the server refuses (or would): the code, message and details of its 400. */
export class FilterError extends ApiError {}

/** Report a handler that threw, without stopping the others. */
export function reportError(error) {
  console.error("tidings: a handler failed", error);
}
