/** One Server-Sent Events stream read with fetch, so heartbeats can be watched. */

import { needsSignIn, retryAfter } from "./http.js";
import { SseParser } from "./sse.js";

// A stream that has not said `ready` by then is being buffered by something in between.
const READY_TIMEOUT_MS = 10_000;

/**
 * Open a stream at `url`, passing its blocks to `on.change(event)`, `on.reset(reset)` and
 * `on.cursor(cursor)`. Return `{ready, done, close(reason), buffered, signedOut}`: `ready`
 * settles on `event: ready` or failure, `done` when the stream ends, `buffered` tells whether
 * it failed for want of a `ready` in time, `signedOut` is the reason its credential ended
 * (`auth-expired`'s `expired|revoked|logged_out`, or `unauthenticated` for a 401),
 * `retryAfter` the wait in ms a refusal's Retry-After asks for (429, 503), and `retryMs` the
 * wait a `retry:` after `ready` asks for: the server let the stream go (it stops, or sheds
 * streams to other nodes) and spreads its clients' returns.
 * No bytes for 2.5 heartbeats ends it.
 */
export function openStream(url, heartbeatMs, on) {
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
  const handle = { ready, done, close: (reason) => end(reason), buffered: false, signedOut: null, retryAfter: null, retryMs: null };
  const end = (reason) => {
    if (ended) return;
    ended = true;
    clearTimeout(watchdog);
    clearTimeout(readyTimer);
    controller.abort();
    if (!isReady) failReady(new Error(`The stream ended before it was ready: ${reason}.`));
    finish(reason);
  };
  const readyTimer = setTimeout(() => {
    handle.buffered = true;
    end("no ready event within 10 s (buffered by a proxy?)");
  }, READY_TIMEOUT_MS);
  const touch = () => {
    clearTimeout(watchdog);
    watchdog = setTimeout(() => end("stale: no bytes for 2.5 heartbeats"), heartbeatMs * 2.5);
  };
  const parser = new SseParser((block) => {
    if (ended) return;
    if (block.retry !== null && isReady) handle.retryMs = block.retry;
    if (block.event === "change") on.change(JSON.parse(block.data));
    else if (block.event === "reset") on.reset(JSON.parse(block.data));
    else if (block.event === "auth-expired") {
      if (block.id !== null) on.cursor(Number(block.id));
      handle.signedOut = JSON.parse(block.data).reason;
      end(`signed out: ${handle.signedOut}`);
    } else if (block.event === "ready") {
      on.cursor(JSON.parse(block.data).cursor);
      isReady = true;
      clearTimeout(readyTimer);
      settleReady(handle);
    } else if (block.data === null && block.id !== null) on.cursor(Number(block.id));
  });
  fetch(url, { signal: controller.signal, cache: "no-store", headers: { Accept: "text/event-stream" } })
    .then(async (response) => {
      if (!response.ok || !response.body) {
        const body = await response.json().catch(() => null);
        if (needsSignIn(response.status, body)) handle.signedOut = "unauthenticated";
        handle.retryAfter = retryAfter(response);
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
