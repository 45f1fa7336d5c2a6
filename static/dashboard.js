// The bakery dashboard: live stock, KPIs, feeds, forms, notifications, presence and conflicts,
// all drawn from live tables of one shared Tidings connection.
import { bindSignIn } from "./signin.js";
import { connect, frame, throttle } from "./tidings.js";

const config = JSON.parse(document.getElementById("dashboard-config").textContent);
const SHIFTS = ["morning", "afternoon", "night"];
const PRESENCE_TTL_MS = 75_000;
const PRESENCE_EVERY_MS = 30_000;
const today = { created_at: `gte.${config.dayStart}` };
// What the signed-in user may do (the server enforces it; the page only offers it).
const role = config.user.role;
const may = { record: role !== "viewer", editBreads: role === "admin" || role === "manager" };

const feed = connect({
  topics: config.topics,
  filters: { sales_logs: today, production_logs: today },
  // Stock changes with every sale: a page that falls behind needs each bread's latest only.
  priority: { bread_types: "low" },
  heartbeat: config.heartbeat,
});
// Handy in the console, and how the browser tests reach the client.
window.tidings = feed;

const breads = feed.table("bread_types", { order: "name.asc" });
const sales = feed.table("sales_logs");
const production = feed.table("production_logs");
const feedback = feed.table("shift_feedback", { order: "id.desc", limit: 8 });
const notifications = feed.table("notifications", { order: "id.desc", limit: 30 });
const audit = feed.table("audit_logs", { order: "id.desc", limit: 30 });

// Marks the page once every snapshot is in (tests and scripts wait for it).
Promise.all([breads, sales, production, feedback, notifications, audit].map((t) => t.ready)).then(() => {
  document.documentElement.dataset.loaded = "true";
});

const $ = (selector) => document.querySelector(selector);
const money = new Intl.NumberFormat(undefined, { style: "currency", currency: "EUR" });
const clock = (iso) => (iso ? new Date(iso).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" }) : "now");

function escape(text) {
  return String(text ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}

/** Update a list in place: items keep their element (and focus) unless their content changed. */
function renderList(list, items, keyOf, htmlOf, empty = "Nothing yet.") {
  const existing = new Map([...list.children].map((li) => [li.dataset.key, li]));
  const wanted = [];
  for (const item of items) {
    const key = String(keyOf(item));
    const html = htmlOf(item);
    let li = existing.get(key);
    if (!li) {
      li = document.createElement("li");
      li.dataset.key = key;
    }
    if (li.dataset.html !== html) {
      li.innerHTML = html;
      li.dataset.html = html;
    }
    li.classList.toggle("is-pending", Boolean(item._pending));
    wanted.push(li);
  }
  for (const [key, li] of existing) if (!wanted.includes(li) && key !== "empty") li.remove();
  wanted.forEach((li, i) => {
    if (list.children[i] !== li) list.insertBefore(li, list.children[i] ?? null);
  });
  const placeholder = list.querySelector('[data-key="empty"]');
  if (!items.length && !placeholder) list.insertAdjacentHTML("beforeend", `<li data-key="empty" class="muted">${escape(empty)}</li>`);
  if (items.length && placeholder) placeholder.remove();
}

function toast(message, level = "info") {
  const item = document.createElement("div");
  item.className = `toast ${level}`;
  item.textContent = message;
  $("#toasts").append(item);
  setTimeout(() => item.remove(), 6000);
}

// Only the forms this user may use

for (const form of ["#sale-form", "#feedback-form"]) $(form).hidden = !may.record;
$("#sale-form").closest("section").hidden = !may.record;
$("#mark-all").hidden = !may.record;

// Stock and KPIs

function stockByBread() {
  const totals = new Map(breads.rows.map((b) => [b.id, { baked: 0, sold: 0 }]));
  for (const row of production.rows) totals.get(row.bread_type_id) && (totals.get(row.bread_type_id).baked += row.quantity);
  for (const row of sales.rows) totals.get(row.bread_type_id) && (totals.get(row.bread_type_id).sold += row.quantity);
  return totals;
}

function renderStock() {
  const totals = stockByBread();
  const body = $("#stock-rows");
  const rows = breads.rows.map((bread) => {
    const { baked, sold } = totals.get(bread.id) ?? { baked: 0, sold: 0 };
    const left = baked - sold;
    const level = left <= 0 ? "out" : left < config.lowStock ? "low" : "ok";
    const share = baked ? Math.max(0, Math.min(100, (left / baked) * 100)) : 0;
    return `<tr data-bread="${bread.id}" class="${bread._pending ? "is-pending" : ""} ${bread.active ? "" : "inactive"}">
      <th scope="row">${escape(bread.name)}${bread.active ? "" : ' <span class="tag">off sale</span>'}</th>
      <td class="num">${money.format(bread.price)}</td>
      <td class="num baked">${baked}</td>
      <td class="num sold">${sold}</td>
      <td class="num"><span class="left ${level}">${left}</span><span class="bar" aria-hidden="true"><span data-share="${share}"></span></span></td>
      <td class="num">${may.editBreads ? `<button type="button" class="ghost small edit" data-id="${bread.id}" aria-label="Edit ${escape(bread.name)}">Edit</button>` : ""}</td>
    </tr>`;
  });
  const html = rows.join("") || '<tr><td colspan="6" class="muted">No bread types yet.</td></tr>';
  if (body.dataset.html !== html) {
    const focused = document.activeElement?.closest?.("button.edit")?.dataset.id;
    body.innerHTML = html;
    body.dataset.html = html;
    // Through the CSSOM: the page's Content-Security-Policy refuses inline style attributes.
    for (const bar of body.querySelectorAll("[data-share]")) bar.style.width = `${bar.dataset.share}%`;
    if (focused) body.querySelector(`button.edit[data-id="${focused}"]`)?.focus();
  }
  renderForms();
}

function computeKpis() {
  let revenue = 0;
  let units = 0;
  for (const row of sales.rows) {
    revenue += row.quantity * row.unit_price;
    units += row.quantity;
  }
  const baked = production.rows.reduce((sum, row) => sum + row.quantity, 0);
  $("#kpi-revenue").textContent = money.format(revenue);
  $("#kpi-units").textContent = String(units);
  $("#kpi-baked").textContent = String(baked);
  $("#kpi-stock").textContent = String(baked - units);
}
// Revenue and totals scan every sale of the day: at most four times a second.
const renderKpis = throttle(() => frame("kpis", computeKpis), 250);

function renderForms() {
  const options = breads.rows
    .filter((b) => b.active && b.id != null)
    .map((b) => `<option value="${b.id}">${escape(b.name)} · ${money.format(b.price)}</option>`)
    .join("");
  for (const select of [$("#sale-bread"), $("#production-bread")]) {
    if (select.dataset.html === options) continue;
    const value = select.value;
    select.innerHTML = options;
    select.dataset.html = options;
    if (value) select.value = value;
  }
}

const breadName = (id) => breads.rows.find((b) => b.id === id)?.name ?? `Bread #${id}`;

function renderSales() {
  const latest = sales.rows.slice(-15).reverse();
  renderList($("#sales"), latest, (r) => r._pending ?? r.id, (r) =>
    `<span class="what"><strong>${r.quantity} × ${escape(breadName(r.bread_type_id))}</strong> <span class="amount">${money.format(r.quantity * r.unit_price)}</span></span>
     <span class="meta">${escape(r.shift)} · ${escape(r.recorded_by)} · ${r._pending ? '<span class="tag pending">pending</span>' : clock(r.created_at)}</span>`,
  "No sales yet today.");
}

for (const table of [breads, sales, production]) {
  table.on("change", () => {
    frame("stock", renderStock);
    renderKpis();
  });
}
sales.on("change", renderSales);
breads.on("change", renderSales);

// Notifications

function renderNotifications() {
  const rows = notifications.rows;
  renderList($("#notifications"), rows, (r) => r._pending ?? r.id, (r) =>
    `<span class="what ${r.read ? "" : "unread"}"><span class="level ${escape(r.level)}">${escape(r.level)}</span><strong>${escape(r.title)}</strong> ${escape(r.body)}</span>
     <span class="meta">${clock(r.updated_at)}${r.read || !may.record ? "" : ` · <button type="button" class="link mark-read" data-id="${r.id}">Mark read</button>`}</span>`,
  "No notifications.");
  const unread = rows.filter((r) => !r.read).length;
  $("#unread").hidden = unread === 0;
  $("#unread").textContent = `${unread} unread`;
}
notifications.on("change", renderNotifications);

function markRead(row) {
  feed.write("notifications", "update", { id: row.id, version: row.version, read: true }).catch(() => {});
}
$("#notifications").addEventListener("click", (event) => {
  const button = event.target.closest(".mark-read");
  if (!button) return;
  const row = notifications.get(Number(button.dataset.id));
  if (row) markRead(row);
});
$("#mark-all").addEventListener("click", () => notifications.rows.filter((r) => !r.read && r.id != null).forEach(markRead));

function renderDesktopButton() {
  const button = $("#desktop");
  if (!("Notification" in window)) {
    button.hidden = true;
    return;
  }
  button.textContent = Notification.permission === "granted" ? "Desktop alerts on" : "Enable desktop alerts";
  button.disabled = Notification.permission !== "default";
}
$("#desktop").addEventListener("click", () => Notification.requestPermission().then(renderDesktopButton));
renderDesktopButton();

feed.on("insert:notifications", (event) => {
  // Only fresh news: a reload replays events the user has already seen.
  if (Date.now() - Date.parse(event.at) > 60_000) return;
  const { title, body, level } = event.row;
  if (level === "warning" || level === "error") toast(`${title}. ${body}`, level);
  if ("Notification" in window && Notification.permission === "granted" && document.hidden) {
    new Notification(title, { body, tag: `tidings-${event.pk}` });
  }
});

// Feedback and audit log

const stars = (mood) => "★".repeat(mood) + "☆".repeat(5 - mood);
feedback.on("change", () =>
  renderList($("#feedback"), feedback.rows, (r) => r._pending ?? r.id, (r) =>
    `<span class="what"><span class="stars" aria-label="mood ${r.mood} of 5">${stars(r.mood)}</span> ${escape(r.note)}</span>
     <span class="meta">${escape(r.shift)} · ${escape(r.recorded_by)}${r._pending ? ' · <span class="tag pending">pending</span>' : ""}</span>`,
  "No feedback yet."),
);

audit.on("change", () =>
  renderList($("#audit"), audit.rows, (r) => r.id, (r) =>
    `<span class="meta">${clock(r.updated_at)}</span> <span class="what"><strong>${escape(r.actor)}</strong> ${escape(r.summary)}</span>`,
  "Nothing recorded yet."),
);

// Forms

function shiftNow() {
  const hour = new Date().getHours();
  return hour < 12 ? "morning" : hour < 18 ? "afternoon" : "night";
}
for (const select of document.querySelectorAll("select.shift")) {
  select.innerHTML = SHIFTS.map((s) => `<option value="${s}">${s}</option>`).join("");
  select.value = shiftNow();
}

function report(what) {
  return (error) => {
    if (error.code !== "version_conflict") toast(`${what} was not saved: ${error.message}`, "error");
  };
}

$("#sale-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const bread = breads.get(Number($("#sale-bread").value));
  if (!bread) return;
  feed
    .write("sales_logs", "insert", {
      bread_type_id: bread.id,
      quantity: Number($("#sale-qty").value),
      unit_price: bread.price,
      shift: $("#sale-shift").value,
    })
    .catch(report("The sale"));
});

$("#production-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const id = Number($("#production-bread").value);
  if (!id) return;
  feed
    .write("production_logs", "insert", {
      bread_type_id: id,
      quantity: Number($("#production-qty").value),
      shift: $("#production-shift").value,
    })
    .catch(report("The batch"));
});

$("#feedback-form").addEventListener("submit", (event) => {
  event.preventDefault();
  feed
    .write("shift_feedback", "insert", {
      shift: $("#feedback-shift").value,
      mood: Number($("#feedback-mood").value),
      note: $("#feedback-note").value.trim(),
    })
    .catch(report("The feedback"));
  $("#feedback-note").value = "";
});

// Editing a bread, and what happens when someone else got there first

let editing = null;
$("#stock-rows").addEventListener("click", (event) => {
  const button = event.target.closest("button.edit");
  if (!button) return;
  editing = breads.get(Number(button.dataset.id));
  if (!editing) return;
  $("#edit-name").value = editing.name;
  $("#edit-price").value = editing.price.toFixed(2);
  $("#edit-active").checked = editing.active;
  $("#edit-version").textContent = `Editing version ${editing.version}.`;
  $("#edit-dialog").returnValue = "";
  $("#edit-dialog").showModal();
});
$("#edit-dialog").addEventListener("close", () => {
  const base = editing;
  editing = null;
  if ($("#edit-dialog").returnValue !== "save" || !base) return;
  feed
    .write("bread_types", "update", {
      id: base.id,
      // The version the form was opened with: a change made since then is a conflict.
      version: base.version,
      name: $("#edit-name").value.trim(),
      price: Number($("#edit-price").value),
      active: $("#edit-active").checked,
    })
    .catch(report("The bread"));
});

let conflict = null;
feed.on("conflict", (details) => {
  conflict = details;
  const fields = Object.keys(details.mine).filter((k) => !["id", "version", "updated_at", "_pending"].includes(k));
  $("#conflict-rows").innerHTML = fields
    .map((k) => {
      const differs = String(details.mine[k]) !== String(details.theirs[k]);
      return `<tr class="${differs ? "differs" : ""}"><th scope="row">${escape(k)}</th><td class="mine">${escape(details.mine[k])}</td><td class="theirs">${escape(details.theirs[k])}</td></tr>`;
    })
    .join("");
  $("#conflict-text").textContent = `Your change to ${details.table.replace("_", " ")} #${details.theirs.id} was not saved: it is now at version ${details.theirs.version}. Choose which to keep.`;
  $("#conflict-dialog").returnValue = "";
  if (!$("#conflict-dialog").open) $("#conflict-dialog").showModal();
});
$("#conflict-dialog").addEventListener("close", () => {
  const choice = $("#conflict-dialog").returnValue;
  const current = conflict;
  conflict = null;
  if (choice === "mine" && current) current.retry().catch(report("Your version"));
});

// Connection state and pending writes

const LABELS = {
  live: "Live",
  connecting: "Connecting",
  reconnecting: "Connecting",
  polling: "Polling",
  offline: "Offline",
  paused: "Paused",
  "signed-out": "Signed out",
};
let throttledUntil = 0;
function renderStatus() {
  const { state, transport, lastEventAt, lag, leader } = feed.status;
  const indicator = $("#status");
  indicator.dataset.state = state;
  const wait = Math.ceil((throttledUntil - Date.now()) / 1000);
  indicator.querySelector(".label").textContent = wait > 0 ? `Rate limited, retrying in ${wait} s` : (LABELS[state] ?? state);
  const ago = lastEventAt ? `last event ${Math.round((Date.now() - lastEventAt) / 1000)} s ago` : "no events yet";
  const via = transport === "poll" ? "long polling" : transport === "stream" ? "event stream" : state;
  $("#connection-detail").textContent = `${via} · ${ago}${lag != null ? ` · lag ${lag} ms` : ""} · ${leader ? "this tab holds the connection" : "shared from another tab"}`;
  indicator.title = $("#connection-detail").textContent;
}
feed.on("status", renderStatus);
feed.on("throttled", ({ until }) => {
  throttledUntil = until;
  renderStatus();
});
setInterval(renderStatus, 1000);

// Signed out (session ended, logged out elsewhere, token revoked): sign in again in place;
// the feed keeps its cursor and queued writes and resumes once signed in.

const signInDialog = $("#signin-dialog");
signInDialog.addEventListener("cancel", (event) => event.preventDefault());
feed.on("status", ({ state }) => {
  if (state === "signed-out" && !signInDialog.open) signInDialog.showModal();
  if (state !== "signed-out" && signInDialog.open) signInDialog.close();
});
bindSignIn($("#signin-form"), ({ user, csrf_token }) => {
  // Someone else: their rows and rights differ, so load the page afresh.
  if (user.username !== config.user.username) return location.reload();
  signInDialog.close();
  feed.signedIn({ csrfToken: csrf_token });
});
renderStatus();

feed.on("pending", ({ count }) => {
  const badge = $("#pending");
  badge.hidden = count === 0;
  badge.textContent = `${count} pending`;
});
feed.on("rollback", ({ table, error }) => toast(`Change to ${table.replace("_", " ")} rolled back: ${error.message}`, "error"));
feed.on("reset", () => toast("Caught up from a fresh snapshot.", "info"));
feed.on("error", (error) => {
  if (error.source === "handler") toast(`A live-update handler failed: ${error.message}`, "error");
});

// Presence: the server says who is connected (a roster, then join and leave events); each
// tab adds whether it is here or away, and everyone answers a newcomer's hello.

const tab = { client: `tab-${Math.random().toString(36).slice(2, 10)}`, joined: false };
const viewers = new Map();
// Connected users by name, and the `since` of each one's last leave: events and the roster
// may arrive in any order, and a leave only ends the connection it names.
const online = new Map();
const left = new Map();

function joined(user) {
  if ((left.get(user.username) ?? "") >= user.since) return;
  if ((online.get(user.username)?.since ?? "") <= user.since) online.set(user.username, user);
}

function leave(user) {
  if ((left.get(user.username) ?? "") < user.since) left.set(user.username, user.since);
  if (online.get(user.username)?.since === user.since) online.delete(user.username);
}

function loadRoster() {
  return fetch("/api/presence")
    .then((response) => (response.ok ? response.json() : { users: [] }))
    .then(({ users }) => {
      for (const user of users) joined(user);
      frame("presence", renderPresence);
    })
    .catch(() => {});
}

function announce(state, hello = false) {
  return fetch("/presence", {
    method: "POST",
    headers: { ...feed.credentials.writeHeaders(), "Content-Type": "application/json" },
    body: JSON.stringify({ client: tab.client, state, hello }),
    keepalive: state === "gone",
  }).catch(() => {});
}

function renderPresence() {
  const cutoff = Date.now() - PRESENCE_TTL_MS;
  for (const [client, viewer] of viewers) if (viewer.seen < cutoff) viewers.delete(client);
  const names = new Map();
  for (const user of online.values()) {
    if (user.username !== config.user.username) names.set(user.username, { name: user.username, tabs: 0, here: false });
  }
  for (const viewer of viewers.values()) {
    const entry = names.get(viewer.name);
    if (!entry) continue;
    entry.tabs += 1;
    entry.here ||= viewer.state === "here";
  }
  // A user whose tabs have not said otherwise is viewing.
  for (const entry of names.values()) entry.here ||= entry.tabs === 0;
  const people = [...names.values()].sort((a, b) => a.name.localeCompare(b.name));
  renderList($("#presence"), people, (p) => p.name, (p) =>
    `<span class="avatar" aria-hidden="true">${escape(p.name.slice(0, 1).toUpperCase())}</span> ${escape(p.name)} <span class="meta">${p.here ? "viewing" : "away"}${p.tabs > 1 ? ` · ${p.tabs} tabs` : ""}</span>`,
  "Only you.");
  $("#presence-summary").textContent = `${people.length + 1} viewing`;
}

feed.on("change:presence", (event) => {
  const person = event.row;
  if (person?.state === "join" || person?.state === "leave") {
    const user = { ...person.user, since: person.since };
    (person.state === "join" ? joined : leave)(user);
    return frame("presence", renderPresence);
  }
  if (!person || person.client === tab.client || Date.now() - Date.parse(event.at) > PRESENCE_TTL_MS) return;
  if (person.state === "gone") viewers.delete(person.client);
  else viewers.set(person.client, { ...person, seen: Date.now() });
  if (person.hello) setTimeout(() => announce(document.hidden ? "away" : "here"), 200 + Math.random() * 1300);
  frame("presence", renderPresence);
});
// A reset skipped events: the roster is read again.
feed.on("reset", loadRoster);
feed.on("status", ({ state }) => {
  if (!tab.joined && (state === "live" || state === "polling")) {
    tab.joined = true;
    loadRoster();
    announce("here", true);
  }
});
setInterval(() => {
  if (tab.joined) announce(document.hidden ? "away" : "here");
  renderPresence();
}, PRESENCE_EVERY_MS);
document.addEventListener("visibilitychange", () => tab.joined && announce(document.hidden ? "away" : "here"));
addEventListener("pagehide", () => announce("gone"));
renderPresence();
