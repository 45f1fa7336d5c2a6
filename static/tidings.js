/**
 * Tidings browser client: live tables over Server-Sent Events with a long-poll fallback,
 * one connection per browser shared by its tabs, and optimistic writes with an offline
 * queue. ES modules under /static/tidings/, no build step, no dependencies.
 *
 *   import { connect } from "/static/tidings.js";
 *   const feed = connect({ topics: ["sales_logs"] });
 *   const sales = feed.table("sales_logs");
 *   sales.on("change", () => render(sales.rows));
 *   feed.write("sales_logs", "insert", { bread_type_id: 1, quantity: 2, ... });
 */

export { ApiError, FilterError, WriteError } from "./tidings/errors.js";
export { connect, Feed } from "./tidings/feed.js";
export { matches } from "./tidings/filters.js";
export { SseParser } from "./tidings/sse.js";
export { LiveTable } from "./tidings/table.js";
export { backoff, frame, throttle } from "./tidings/timing.js";
