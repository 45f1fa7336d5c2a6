/** The network side, run by the leader tab only: SSE with its own retry policy, or long poll. */

import { needsSignIn, retryAfter } from "./http.js";
import { openStream } from "./stream.js";
import { backoff } from "./timing.js";

// Failed stream attempts within FAILURE_WINDOW_MS that make the client poll instead.
const FAILURES_BEFORE_POLLING = 3;
const FAILURE_WINDOW_MS = 60_000;
const PROBE_FIRST_MS = 5_000;
const PROBE_CAP_MS = 60_000;
const LONG_POLL_SECONDS = 25;

/**
 * Keeps a feed connected. `sink` is what it serves: `heartbeatMs`, `cursor`, `url(path, query)`
 * (the subscription's URL), `access()` (resolves to the credential's query), `receive(event)`,
 * `reset(reset)`, `advance(cursor)`, `setState(state, transport)`, `error({source, message})`,
 * `throttled(source, ms)` (the server asked to wait) and `signedOut(reason)`, which answers true when the credential was renewed (connect again
 * at once) and otherwise stops this transport.
 */
export class Transport {
  constructor(sink) {
    this.sink = sink;
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
    if (state) this.sink.setState(state, null);
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
    const sink = this.sink;
    const current = () => this.generation === generation;
    let attempt = 0;
    while (current()) {
      if (!navigator.onLine) {
        sink.setState("offline", null);
        await this.sleep(PROBE_CAP_MS);
        attempt = 0;
        continue;
      }
      let stream;
      if (this.shouldPoll()) {
        stream = await this.pollUntilStreamWorks(current);
        if (!stream) continue;
      } else {
        sink.setState(this.everLive ? "reconnecting" : "connecting", null);
        try {
          stream = await this.open();
          await stream.ready;
        } catch (error) {
          if (!current()) break;
          if (stream?.signedOut || error.signedOut) {
            if (sink.signedOut(stream?.signedOut ?? error.signedOut)) continue;
            break;
          }
          if (stream?.buffered) this.buffered = true;
          sink.error({ source: "stream", message: error.message });
          const wait = stream?.retryAfter ?? error.retryAfter;
          if (wait != null) {
            // Asked to wait (429, 503): the stream works, so this is no reason to poll.
            sink.throttled("stream", wait);
            await this.sleep(wait);
            continue;
          }
          // Going offline is not the stream's fault: only real failures count towards polling.
          if (navigator.onLine) this.failures.push(Date.now());
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
      sink.setState("live", "stream");
      await stream.done;
      if (!current()) break;
      if (stream.signedOut) {
        if (sink.signedOut(stream.signedOut)) continue;
        break;
      }
      // Not live while waiting out the backoff: the stream is already gone.
      sink.setState("reconnecting", null);
      // A stream the server let go comes back when it asked, to whichever node takes it.
      await this.sleep(stream.retryMs ?? backoff(attempt++));
    }
  }

  /** Resolve to the credential's query; a refusal to renew it rejects with `signedOut` set. */
  async access() {
    try {
      return await this.sink.access();
    } catch (error) {
      if (needsSignIn(error.status, error.body)) error.signedOut = "unauthenticated";
      throw error;
    }
  }

  /** Open one stream from the sink's cursor, tracked until it ends. */
  async open() {
    const sink = this.sink;
    const query = await this.access();
    const stream = openStream(sink.url("/stream", { cursor: sink.cursor, ...query }), sink.heartbeatMs, {
      change: (event) => sink.receive(event),
      reset: (reset) => sink.reset(reset),
      cursor: (cursor) => sink.advance(cursor),
    });
    this.streams.add(stream);
    stream.done.then(() => this.streams.delete(stream));
    return stream;
  }

  /** Long-poll until a probe stream reaches `ready`; return that stream (or null when interrupted). */
  async pollUntilStreamWorks(current) {
    const sink = this.sink;
    const controller = new AbortController();
    this.pollController = controller;
    sink.setState("polling", "poll");
    let probes = 0;
    let probeTimer = null;
    let found = null;
    const probe = async () => {
      if (controller.signal.aborted || !current()) return;
      try {
        const stream = await this.open();
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
        const query = await this.access();
        const response = await fetch(sink.url("/api/changes", { cursor: sink.cursor, wait: LONG_POLL_SECONDS, ...query }), {
          signal: controller.signal,
          cache: "no-store",
        });
        const body = await response.json();
        if (needsSignIn(response.status, body)) {
          throw Object.assign(new Error(body.message), { signedOut: body.details?.reason ?? "unauthenticated" });
        }
        if (response.status === 410) {
          sink.reset(body.reset);
          continue;
        }
        const wait = retryAfter(response);
        if (wait != null) {
          sink.throttled("poll", wait);
          await Promise.race([this.sleep(wait), new Promise((r) => controller.signal.addEventListener("abort", r))]);
          continue;
        }
        if (!response.ok) throw new Error(body.message || `HTTP ${response.status}`);
        for (const event of body.events) sink.receive(event);
        sink.advance(body.cursor);
        failures = 0;
        sink.setState("polling", "poll");
      } catch (error) {
        if (controller.signal.aborted) break;
        if (error.signedOut) {
          if (sink.signedOut(error.signedOut)) continue;
          break;
        }
        sink.setState(navigator.onLine ? "reconnecting" : "offline", null);
        sink.error({ source: "poll", message: error.message });
        await Promise.race([this.sleep(backoff(failures++)), new Promise((r) => controller.signal.addEventListener("abort", r))]);
      }
    }
    clearTimeout(probeTimer);
    if (this.pollController === controller) this.pollController = null;
    return found;
  }
}
