/** When work runs: retry backoff, throttling, and once-per-animation-frame rendering. */

import { reportError } from "./errors.js";

const BACKOFF_BASE_MS = 500;
const BACKOFF_CAP_MS = 30_000;

/** Return a full-jitter exponential backoff delay in milliseconds. */
export function backoff(attempt, base = BACKOFF_BASE_MS, cap = BACKOFF_CAP_MS) {
  return Math.random() * Math.min(cap, base * 2 ** attempt);
}

/** Resolve after `ms`. */
export function delay(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
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

/** A token bucket: `take()` resolves when one of `rate` tokens a second (at most `burst` saved) is free. */
export class Pacer {
  constructor(rate, burst = rate) {
    this.rate = rate;
    this.burst = burst;
    this.tokens = burst;
    this.at = Date.now();
    this.queue = Promise.resolve();
  }

  refill() {
    const now = Date.now();
    this.tokens = Math.min(this.burst, this.tokens + ((now - this.at) / 1000) * this.rate);
    this.at = now;
  }

  /**
   * Resolve when `count` tokens are free, in the order asked. More than the burst goes into
   * debt that later takes wait out, so a big batch leaves at once but is paid for.
   */
  take(count = 1) {
    const turn = this.queue.then(async () => {
      const need = Math.min(count, this.burst);
      this.refill();
      if (this.tokens < need) await delay(((need - this.tokens) / this.rate) * 1000);
      this.refill();
      this.tokens -= count;
    });
    this.queue = turn;
    return turn;
  }
}
