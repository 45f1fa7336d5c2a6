/** Reads from the server: URLs with repeated parameters, JSON answers, retries until final. */

import { ApiError, FilterError } from "./errors.js";
import { backoff, delay } from "./timing.js";

/** Return `base + path` with a query; array values repeat their parameter, nulls are left out. */
export function buildUrl(base, path, query = {}) {
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query)) {
    if (value == null) continue;
    for (const item of [].concat(value)) params.append(key, item);
  }
  const text = params.toString();
  return `${base}${path}${text ? `?${text}` : ""}`;
}

/** Fetch a JSON answer; a 400 throws a FilterError (the query was refused), other errors an ApiError. */
export async function getJson(url, init = {}) {
  const response = await fetch(url, { cache: "no-store", ...init });
  const body = await response.json();
  if (response.status === 400) throw new FilterError(400, body);
  if (!response.ok) throw Object.assign(new ApiError(response.status, body), { retryAfter: retryAfter(response) });
  return body;
}

/** Tell whether a refusal means the credential is gone: a 401, or a CSRF token of an ended session. */
export function needsSignIn(status, body) {
  return status === 401 || (status === 403 && body?.error === "csrf_failed");
}

/** Return how long a 429 or 503 asks to wait (its Retry-After, in ms), or null. */
export function retryAfter(response) {
  const seconds = Number(response.headers.get("Retry-After"));
  return [429, 503].includes(response.status) && Number.isFinite(seconds) && seconds >= 0 ? seconds * 1000 : null;
}

/** Tell whether asking again cannot help: the server refused the request itself. */
export function isFinal(error) {
  return error instanceof ApiError && error.status < 500 && error.status !== 408 && error.status !== 429;
}

/**
 * Run `work` until it succeeds or fails for good, reporting each failure and backing off
 * (for as long as a 429's or 503's Retry-After asks, when it does).
 */
export async function untilDone(work, onError) {
  for (let attempt = 0; ; attempt++) {
    try {
      return await work();
    } catch (error) {
      if (isFinal(error)) throw error;
      onError(error);
      await delay(error.retryAfter ?? backoff(attempt));
    }
  }
}
