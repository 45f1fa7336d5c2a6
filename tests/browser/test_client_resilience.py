"""The browser client in a real Chromium against a real gunicorn, where the network or the
page misbehaves: an expired or foreign cursor (reset), a stream that stops delivering bytes
(stale detection) and a hidden tab (pause and resume). Each ends agreeing with the database,
with every event received once."""

import json
import os
import signal
import socket
import threading
import time

import pytest
from playwright.sync_api import BrowserContext, Page

from tests.delivery_tools import changes, ids, sell, wait_for

from ..identities import sign_in_browser
from ..servers import http
from .conftest import sale, wait_state

pytestmark = pytest.mark.browser

TOPIC = "sales_logs"
HEARTBEAT_SECONDS = 1
# Slack on top of 2.5 heartbeats for timers and the round trip that reads the page's clock.
STALE_SLACK_MS = 500

# A bare page on the server's origin: one live table, and a record of what the client did.
CLIENT_PAGE = """<!doctype html>
<meta charset="utf-8"><title>Tidings client</title>
<p id="status" data-state="connecting"></p>
<script type="module">
  import { connect } from "/static/tidings.js";
  // When each stream was asked for, on the page's clock.
  const opened = [];
  const send = window.fetch;
  window.fetch = (url, ...rest) => {
    if (new URL(url, location.href).pathname === "/stream") opened.push(performance.now());
    return send(url, ...rest);
  };
  const feed = connect(%s);
  const table = feed.table("%s");
  const record = { opened, seen: [], resets: [], states: [], errors: [] };
  Object.assign(window, { tidings: feed, table, ...record });
  feed.on("change", (event) => seen.push(event.id));
  feed.on("error", ({ source, message }) => errors.push([source, message, performance.now()]));
  feed.on("reset", (reset) => resets.push(reset));
  feed.on("status", ({ state }) => {
    states.push([state, performance.now()]);
    document.querySelector("#status").dataset.state = state;
  });
  table.ready.then(() => { document.documentElement.dataset.loaded = "true"; });
</script>
"""


def open_client(context: BrowserContext, url: str, **options) -> Page:
    """Open the bare client page on the server's origin with these connect() options and
    wait until its table is loaded and its stream is live."""
    address = f"{url}/client-resilience"
    options = {"topics": [TOPIC], "heartbeat": HEARTBEAT_SECONDS, **options}
    html = CLIENT_PAGE % (json.dumps(options), TOPIC)
    context.route(address, lambda route: route.fulfill(body=html, content_type="text/html"))
    sign_in_browser(context, url)
    page = context.new_page()
    page.goto(address)
    page.wait_for_selector("html[data-loaded]", state="attached")
    wait_state(page, "live")
    return page


def snapshot(url: str) -> list[dict]:
    """Return the table as the server's snapshot has it, in the page's order."""
    response = http(url).get(f"{url}/api/{TOPIC}", params={"order": "id.asc"}, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()["rows"]


def page_rows(page: Page) -> list[dict]:
    """Return the page's live table rows."""
    return page.evaluate("table.rows")


def wait_agrees(page: Page, url: str) -> None:
    """Wait until the page's rows equal the server's snapshot."""
    wait_for(lambda: page_rows(page) == snapshot(url), 15, "the page to agree with the database")


def log_ids(url: str, cursor: int) -> list[int]:
    """Return the ids of the page's topic in the log after `cursor`."""
    return ids(changes(url, f"topics={TOPIC}", cursor))


def open_streams(url: str) -> int:
    """Return how many streams and long polls the server holds open."""
    return http(url).get(f"{url}/monitor.json", timeout=10).json()["connections"]["total"]


def states_since(page: Page, since_ms: float) -> list[tuple[str, float]]:
    """Return the client's status changes after a moment on the page's clock."""
    return [(state, at) for state, at in page.evaluate("states") if at >= since_ms]


def test_expired_cursor_resets_and_reloads_the_snapshot(seeded, start_server, context):
    # Retention keeps three events and runs twice a second, so a page away for a few
    # writes comes back with a cursor that fell out of the log.
    server = start_server(
        workers=1,
        HEARTBEAT_SECONDS=str(HEARTBEAT_SECONDS),
        RETENTION_EVENTS="3",
        PRUNE_SECONDS="0.5",
    )
    page = open_client(context, server.url)
    context.set_offline(True)
    wait_state(page, "offline")
    cursor = page.evaluate("tidings.cursor")
    for n in range(4):
        sale(server.url, bread_id=1 + n % 2, quantity=1, by="while-away")

    def expired() -> bool:
        query = {"topics": TOPIC, "cursor": cursor}
        return (
            server.http.get(f"{server.url}/api/changes", params=query, timeout=10).status_code
            == 410
        )

    wait_for(expired, 15, "retention to expire the page's cursor")
    assert page.evaluate("resets") == []

    context.set_offline(False)
    wait_state(page, "live")
    resets = page.evaluate("resets")
    assert [reset["reason"] for reset in resets] == ["expired"]
    assert resets[0]["cursor"] > cursor
    wait_agrees(page, server.url)

    # Live from the reset's cursor on: later writes arrive once, nothing before it replays.
    # (Their event ids come from the writes: retention soon prunes them from the log.)
    written = [sell(server.url, bread_type=3, shift=shift) for shift in ("morning", "night")]
    wait_agrees(page, server.url)
    assert page.evaluate("seen") == written


def test_cursor_from_another_epoch_resets(dashboard, context):
    page = open_client(context, dashboard.url)
    # A cursor newer than the log's head is what a browser keeps across a recreated database.
    page.evaluate("sessionStorage.setItem(tidings.cursorKey, String(tidings.cursor + 1000))")
    held = []
    context.route("**/stream?*", lambda route: held.append(route))
    page.reload()
    page.wait_for_selector("html[data-loaded]", state="attached")
    deadline = time.monotonic() + 10
    while not held and time.monotonic() < deadline:
        page.wait_for_timeout(50)
    assert len(held) == 1
    # Changed after the page's snapshot and before its stream: only a reload brings it.
    sale(dashboard.url, bread_id=2, quantity=2, by="between")
    context.unroute("**/stream?*")
    held[0].continue_()
    wait_state(page, "live")
    resets = page.evaluate("resets")
    assert [reset["reason"] for reset in resets] == ["epoch"]
    assert page.evaluate("tidings.cursor") >= resets[0]["cursor"]
    wait_agrees(page, dashboard.url)
    sale(dashboard.url, bread_id=2, quantity=1, by="after-epoch")
    wait_agrees(page, dashboard.url)
    assert page.evaluate("seen") == log_ids(dashboard.url, resets[0]["cursor"])


class FreezableProxy:
    """A loopback TCP proxy in front of a server that can stop passing bytes down the
    connections carrying a stream, as a dead route or a vanished NAT entry does: the
    sockets stay open, nothing arrives."""

    def __init__(self, upstream_port: int):
        self.upstream_port = upstream_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.pairs: list[dict] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            except OSError:
                return
            pair = {"sockets": (client, upstream), "stream": False, "frozen": False}
            with self.lock:
                self.pairs.append(pair)
            threading.Thread(target=self._pump, args=(pair, client, upstream), daemon=True).start()
            threading.Thread(target=self._pump, args=(pair, upstream, client), daemon=True).start()

    def _pump(self, pair: dict, source: socket.socket, sink: socket.socket) -> None:
        upward = source is pair["sockets"][0]
        try:
            while data := source.recv(65536):
                if upward and data.startswith(b"GET "):
                    pair["stream"] = data.startswith(b"GET /stream")
                if not pair["frozen"]:
                    sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in pair["sockets"]:
                sock.close()

    def freeze_streams(self) -> int:
        """Stop passing bytes on every connection carrying a stream; return how many."""
        with self.lock:
            streams = [pair for pair in self.pairs if pair["stream"]]
        for pair in streams:
            pair["frozen"] = True
        return len(streams)

    def close(self) -> None:
        """Stop accepting and drop every connection."""
        self.listener.close()
        with self.lock:
            for pair in self.pairs:
                for sock in pair["sockets"]:
                    sock.close()


@pytest.fixture
def proxy(dashboard):
    """A freezable proxy in front of the one-worker, 1 s heartbeat server."""
    front = FreezableProxy(dashboard.port)
    yield front
    front.close()


def test_a_stream_that_goes_silent_is_noticed_and_resumed(dashboard, proxy, context):
    page = open_client(context, proxy.url)
    start = page.evaluate("tidings.cursor")
    healthy_from = page.evaluate("performance.now()")
    # Heartbeats alone keep a quiet stream live: 3 s is more than 2.5 heartbeats.
    time.sleep(3 * HEARTBEAT_SECONDS)
    assert states_since(page, healthy_from) == []

    assert proxy.freeze_streams() == 1
    frozen_at = page.evaluate("performance.now()")
    # Written while the page hears nothing: they must come from the log on resume.
    for n in range(3):
        sale(dashboard.url, bread_id=1, quantity=1 + n, by="while-silent")
    wait_state(page, "reconnecting")
    wait_state(page, "live")
    changes_ = states_since(page, frozen_at)
    assert [state for state, _ in changes_] == ["reconnecting", "live"]
    noticed_after = changes_[0][1] - frozen_at
    assert noticed_after <= 2.5 * HEARTBEAT_SECONDS * 1000 + STALE_SLACK_MS
    assert page.evaluate("tidings.status.transport") == "stream"

    sale(dashboard.url, bread_id=2, quantity=1, by="after-silence")
    wait_agrees(page, dashboard.url)
    assert page.evaluate("seen") == log_ids(dashboard.url, start)
    assert page.evaluate("resets") == []


HIDDEN_PAUSE_MS = 1_000


def set_hidden(page: Page, hidden: bool) -> None:
    """Make the page report itself hidden or shown, and tell it, as switching tabs does
    (headless Chromium keeps every page visible, so the page is told directly)."""
    page.evaluate(
        """hidden => {
             Object.defineProperty(document, "hidden", { configurable: true, get: () => hidden });
             Object.defineProperty(document, "visibilityState",
               { configurable: true, get: () => (hidden ? "hidden" : "visible") });
             document.dispatchEvent(new Event("visibilitychange"));
           }""",
        hidden,
    )


def test_a_hidden_tab_closes_its_stream_and_resumes_from_its_cursor(dashboard, context):
    page = open_client(context, dashboard.url, hiddenPause=HIDDEN_PAUSE_MS)
    start = page.evaluate("tidings.cursor")
    sale(dashboard.url, bread_id=1, quantity=1, by="while-shown")
    wait_agrees(page, dashboard.url)
    wait_for(lambda: open_streams(dashboard.url) == 1, 10, "the server to count the stream")

    hidden_at = page.evaluate("performance.now()")
    set_hidden(page, True)
    wait_state(page, "paused")
    assert states_since(page, hidden_at)[0][1] - hidden_at >= HIDDEN_PAUSE_MS
    # The server sees the stream go (it notices at its next heartbeat).
    wait_for(lambda: open_streams(dashboard.url) == 0, 10, "the server to drop the stream")
    seen_while_hidden = page.evaluate("seen")
    for n in range(3):
        sale(dashboard.url, bread_id=4, quantity=1 + n, by="while-hidden")
    time.sleep(2 * HEARTBEAT_SECONDS)
    assert page.evaluate("seen") == seen_while_hidden
    assert page.evaluate("tidings.status.state") == "paused"

    set_hidden(page, False)
    wait_state(page, "live")
    wait_agrees(page, dashboard.url)
    assert page.evaluate("seen") == log_ids(dashboard.url, start)
    assert page.evaluate("resets") == []
    wait_for(lambda: open_streams(dashboard.url) == 1, 10, "the server to count one stream")


DRAIN_SECONDS = 1.5


def test_a_stream_let_go_by_a_reloaded_server_comes_back_after_its_retry(
    seeded, start_server, context
):
    server = start_server(
        workers=1, HEARTBEAT_SECONDS=str(HEARTBEAT_SECONDS), DRAIN_SECONDS=str(DRAIN_SECONDS)
    )
    page = open_client(context, server.url)
    # The parser hands the client a `retry:` with the block that carries it.
    block = page.evaluate(
        """async () => {
             const { SseParser } = await import("/static/tidings.js");
             let seen = null;
             new SseParser((block) => { seen = block; }).push("retry: 1234\\nid: 7\\n\\n");
             return seen;
           }"""
    )
    assert block == {"event": "", "data": None, "id": "7", "retry": 1234}
    start = page.evaluate("tidings.cursor")
    sale(server.url, bread_id=1, quantity=1, by="before-reload")
    wait_agrees(page, server.url)

    [old_worker] = server.worker_pids()
    reloaded_at = page.evaluate("performance.now()")
    os.kill(server.process.pid, signal.SIGHUP)
    wait_state(page, "reconnecting")
    wait_state(page, "live")
    changes_ = states_since(page, reloaded_at)
    assert [state for state, _ in changes_] == ["reconnecting", "live"], page.evaluate("errors")
    # It asks again within the drain the server spread its `retry:` over, not after a backoff
    # of its own (when the new worker answers is the machine's business).
    asked_at = next(at for at in page.evaluate("opened") if at >= reloaded_at)
    assert asked_at - changes_[0][1] <= DRAIN_SECONDS * 1000 + STALE_SLACK_MS
    wait_for(lambda: old_worker not in server.worker_pids(), 10, "the old worker to exit")

    sale(server.url, bread_id=2, quantity=1, by="after-reload")
    wait_agrees(page, server.url)
    assert page.evaluate("seen") == log_ids(server.url, start)
    assert page.evaluate("resets") == []
