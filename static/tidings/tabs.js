/** This browser's tabs: one leader holds the connection (Web Locks), all talk over BroadcastChannel. */

const VISIBLE_PING_MS = 15_000;
const HIDDEN_CHECK_MS = 5_000;

/**
 * The tabs sharing one subscription (`scope`). `on.lead()` runs when this tab becomes the
 * leader (at once when it cannot share), `on.message(message)` for what other tabs send.
 */
export class Tabs {
  constructor(scope, share, on) {
    this.othersSeenAt = 0;
    this.channel = null;
    const canShare = share && typeof BroadcastChannel !== "undefined" && navigator.locks;
    if (!canShare) {
      on.lead();
      return;
    }
    this.channel = new BroadcastChannel(`tidings:${scope}`);
    this.channel.onmessage = ({ data }) => {
      if (data.type === "visible") this.othersSeenAt = Date.now();
      on.message(data);
    };
    navigator.locks.request(`tidings:leader:${scope}`, () => {
      on.lead();
      return new Promise(() => {});
    });
    this.broadcast({ type: "hello" });
    this.pingWhileVisible();
  }

  /** Send a message to the other tabs. */
  broadcast(message) {
    this.channel?.postMessage(message);
  }

  close() {
    this.channel?.close();
  }

  /** Tell the leader, now and then, that this tab is visible. */
  pingWhileVisible() {
    const ping = () => {
      if (document.visibilityState === "visible") this.broadcast({ type: "visible" });
    };
    document.addEventListener("visibilitychange", ping);
    setInterval(ping, VISIBLE_PING_MS);
  }

  /** Tell whether another tab said lately that it is visible. */
  othersVisible() {
    return Date.now() - this.othersSeenAt < VISIBLE_PING_MS * 2;
  }

  /**
   * Call `on.pause()` once this tab has been hidden for `pauseAfterMs` with no other tab
   * visible, and `on.show()` whenever it is shown again; `on.paused()` tells the current state.
   */
  watchVisibility(pauseAfterMs, on) {
    let hiddenSince = document.hidden ? Date.now() : null;
    document.addEventListener("visibilitychange", () => {
      hiddenSince = document.hidden ? Date.now() : null;
      if (!document.hidden) on.show();
    });
    setInterval(() => {
      if (hiddenSince && Date.now() - hiddenSince >= pauseAfterMs && !this.othersVisible() && !on.paused()) on.pause();
    }, HIDDEN_CHECK_MS);
  }
}
