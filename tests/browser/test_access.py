"""The dashboard signed in, in a real Chromium: each role sees its rows and only the forms it
may use, a session that ends mid-stream shows the sign-in form and signing in again resumes
with nothing lost, stream tokens are renewed, and writes are paced under a tight limit."""

import json
import time
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from playwright.sync_api import BrowserContext, Page, expect

from identity.sessions import COOKIE

from ..identities import PASSWORD, make_user, sign_in_browser
from ..servers import http
from .conftest import SETTLE_MS, db_stock, page_stock, wait_state, wait_stock
from .test_dashboard import is_stream
from .test_filter_grammar import LIVE_PAGE

pytestmark = pytest.mark.browser

# The sign-in form must be up this soon after the session ends (the protocol's 5 s).
SIGNED_OUT_MS = 5_000


def open_as(context: BrowserContext, url: str, username: str) -> tuple[Page, dict]:
    """Sign in as a user, open the dashboard live; return the page and the login's body."""
    login = sign_in_browser(context, url, username)
    page = context.new_page()
    page.goto(url + "/")
    wait_state(page, "live")
    page.wait_for_selector("html[data-loaded]", state="attached")
    return page, login


def sale_in(url: str, store_id: int, quantity: int = 1) -> int:
    """Record a sale in a store as the admin; return its id."""
    row = {"bread_type_id": 1, "quantity": quantity, "unit_price": 6.5, "shift": "morning"}
    response = http(url).post(f"{url}/api/sales_logs", json={**row, "store_id": store_id})
    assert response.status_code == 201, response.text
    return response.json()["row"]["id"]


def sale_items(page: Page, sale_id: int):
    return page.locator(f'#sales li[data-key="{sale_id}"]')


def log_out(url: str, context: BrowserContext, login: dict) -> None:
    """End the browser's session from outside it, as another tab would."""
    cookie = next(c["value"] for c in context.cookies() if c["name"] == COOKIE)
    response = requests.post(
        f"{url}/api/auth/logout",
        cookies={COOKIE: cookie},
        headers={"X-CSRF-Token": login["csrf_token"]},
        timeout=10,
    )
    assert response.status_code in (200, 204), response.text


def test_sign_in_through_the_form_then_staff_see_only_their_store_live(dashboard, app, new_context):
    staff = make_user(app, "staff", store_id=1)
    context = new_context()
    page = context.new_page()
    page.goto(dashboard.url + "/")
    page.fill("#signin-username", staff.username)
    page.fill("#signin-password", PASSWORD)
    page.click("#signin-form button")
    expect(page.locator("#signin-form")).to_be_hidden()
    page.wait_for_selector("html[data-loaded]", state="attached")
    wait_state(page, "live")
    expect(page.locator("#whoami")).to_have_text(f"{staff.username} · staff · North")
    expect(page.locator("#who")).to_have_count(0)
    for form in ("#sale-form", "#production-form", "#feedback-form"):
        expect(page.locator(form)).to_be_visible()
    expect(page.locator("#stock-rows button.edit")).to_have_count(0)

    elsewhere = sale_in(dashboard.url, store_id=2)
    here = sale_in(dashboard.url, store_id=1)
    expect(sale_items(page, here)).to_have_count(1)
    # Events arrive in order: the other store's earlier sale would be here by now.
    expect(sale_items(page, elsewhere)).to_have_count(0)

    # The page's own write carries its CSRF token; the server names who recorded it and where.
    page.select_option("#sale-bread", "1")
    page.fill("#sale-qty", "2")
    page.click("#sale-form button[type=submit]")
    expect(page.locator(f'#sales li:has-text("{staff.username}")')).to_have_count(1)
    mine = [
        row
        for row in http(dashboard.url).get(f"{dashboard.url}/api/sales_logs").json()["rows"]
        if row["recorded_by"] == staff.username
    ]
    assert [(row["store_id"], row["quantity"]) for row in mine] == [(1, 2)]


def test_a_viewer_sees_every_store_and_no_forms(dashboard, app, new_context):
    viewer = make_user(app, "viewer")
    page, _ = open_as(new_context(), dashboard.url, viewer.username)
    expect(page.locator("#whoami")).to_have_text(f"{viewer.username} · viewer")
    for form in ("#sale-form", "#production-form", "#feedback-form", "#mark-all"):
        expect(page.locator(form)).to_be_hidden()
    expect(page.locator("#stock-rows button.edit")).to_have_count(0)
    expect(page.locator("#notifications .mark-read")).to_have_count(0)
    ids = [sale_in(dashboard.url, store_id) for store_id in (1, 2)]
    for sale_id in ids:
        expect(sale_items(page, sale_id)).to_have_count(1)


def test_signing_out_mid_stream_shows_the_form_and_signing_in_again_loses_nothing(
    dashboard, new_context
):
    context = new_context()
    page, login = open_as(context, dashboard.url, "admin")
    other_tab = context.new_page()
    other_tab.goto(dashboard.url + "/")
    wait_state(other_tab, "live")
    log_out(dashboard.url, context, login)
    for tab in (page, other_tab):
        expect(tab.locator("#signin-form")).to_be_visible(timeout=SIGNED_OUT_MS)
        wait_state(tab, "signed-out")

    # While signed out: someone else sells, and this page records a sale of its own.
    missed = sale_in(dashboard.url, store_id=1, quantity=4)
    page.evaluate(
        """() => { window.queuedSale = tidings.write("sales_logs", "insert",
             {bread_type_id: 2, quantity: 5, unit_price: 4.2, shift: "night"}); }"""
    )
    page.wait_for_function("() => tidings.queued().then((n) => n === 1)")
    cursor = page.evaluate("tidings.cursor")

    page.fill("#signin-username", "admin")
    page.fill("#signin-password", PASSWORD)
    page.click("#signin-form button")
    for tab in (page, other_tab):
        wait_state(tab, "live")
        expect(tab.locator("#signin-dialog")).to_be_hidden()
        expect(sale_items(tab, missed)).to_have_count(1)
    assert page.evaluate("tidings.cursor") > cursor
    queued = page.evaluate("window.queuedSale.then((row) => row.id)")
    for tab in (page, other_tab):
        expect(sale_items(tab, queued)).to_have_count(1)
        wait_stock(tab, db_stock(dashboard.url))
    assert page.evaluate("tidings.queued()") == 0
    # Still writing after the new session: the page took its new CSRF token.
    page.click("#sale-form button[type=submit]")
    page.wait_for_function("() => tidings.pending === 0")
    wait_stock(page, db_stock(dashboard.url))


def test_an_expired_session_shows_signed_out(seeded, start_server, new_context):
    # Sessions last 9 s here.
    server = start_server(workers=1, HEARTBEAT_SECONDS="1", SESSION_HOURS="0.0025")
    page, _ = open_as(new_context(), server.url, "admin")
    wait_state(page, "signed-out")
    expect(page.locator("#signin-form")).to_be_visible()
    expect(page.locator("#status .label")).to_have_text("Signed out")


def test_stream_tokens_are_renewed_and_logging_out_signs_the_feed_out(
    seeded, start_server, new_context
):
    server = start_server(workers=1, HEARTBEAT_SECONDS="1", STREAM_TOKEN_SECONDS="4")
    context = new_context()
    login = sign_in_browser(context, server.url)
    options = {"topics": ["sales_logs"], "heartbeat": 1, "streamToken": True}
    options["csrfToken"] = login["csrf_token"]
    address = f"{server.url}/stream-tokens"
    html = LIVE_PAGE % json.dumps(options)
    context.route(address, lambda route: route.fulfill(body=html, content_type="text/html"))
    streams = []
    context.on("request", lambda request: is_stream(request.url) and streams.append(request.url))
    page = context.new_page()
    page.goto(address)
    wait_state(page, "live")
    # Tokens of 4 s: each stream ends with auth-expired and the next opens with a new token.
    deadline = time.monotonic() + SETTLE_MS / 1000
    while len(streams) < 3 and time.monotonic() < deadline:
        page.wait_for_timeout(200)
    assert len(streams) >= 3
    assert len({parse_qs(urlsplit(url).query)["access_token"][0] for url in streams}) >= 3
    wait_state(page, "live")
    sold = sale_in(server.url, store_id=1)
    page.wait_for_function("(id) => table.rows.some((row) => row.id === id)", arg=sold)
    ids = page.evaluate("table.rows.map((row) => row.id)")
    assert len(ids) == len(set(ids))

    log_out(server.url, context, login)
    wait_state(page, "signed-out")


def test_writes_over_a_tight_rate_limit_are_paced_and_all_land(seeded, start_server, new_context):
    server = start_server(workers=1, HEARTBEAT_SECONDS="1", RATE_LIMIT_WRITES="2/second")
    page, _ = open_as(new_context(), server.url, "admin")
    before = db_stock(server.url)
    page.evaluate(
        """() => { window.burst = Promise.all(Array.from({ length: 12 }, () =>
             tidings.write("sales_logs", "insert",
               { bread_type_id: 1, quantity: 1, unit_price: 6.5, shift: "morning" }))); }"""
    )
    expect(page.locator("#status .label")).to_contain_text("Rate limited, retrying in")
    rows = page.evaluate("window.burst.then((rows) => rows.map((row) => row.id))")
    assert len(set(rows)) == 12
    expected = {**before, 1: before[1] - 12}
    assert db_stock(server.url) == expected
    wait_stock(page, expected)
    expect(page.locator("#status .label")).to_have_text("Live")
    assert page_stock(page) == expected


# A feed whose stream tokens come from the app (here a route the test answers), not the session.
TOKEN_SOURCE_PAGE = """<!doctype html>
<meta charset="utf-8"><title>Tidings token source</title>
<p id="status" data-state="connecting"></p>
<script type="module">
  import { connect } from "/static/tidings.js";
  const streamToken = async () => {
    const response = await fetch("/app-stream-token", { method: "POST" });
    if (!response.ok) throw Object.assign(new Error("refused"), { status: response.status });
    return response.json();
  };
  const feed = connect({ topics: ["sales_logs"], heartbeat: 1, streamToken });
  const reasons = [];
  feed.on("signed-out", ({ reason }) => reasons.push(reason));
  feed.on("status", ({ state }) => { document.querySelector("#status").dataset.state = state; });
  Object.assign(window, { feed, reasons });
</script>
"""


def test_a_revoked_token_shows_signed_out(dashboard, app, new_context):
    holder = make_user(app, "manager")
    context = new_context()
    sign_in_browser(context, dashboard.url)
    url = dashboard.url

    def mint(route) -> None:
        answer = requests.post(f"{url}/api/auth/stream-token", headers=holder.headers, timeout=10)
        route.fulfill(status=answer.status_code, body=answer.text, content_type="application/json")

    context.route(f"{url}/app-stream-token", mint)
    context.route(
        f"{url}/token-source",
        lambda route: route.fulfill(body=TOKEN_SOURCE_PAGE, content_type="text/html"),
    )
    page = context.new_page()
    page.goto(f"{url}/token-source")
    wait_state(page, "live")
    tokens = requests.get(f"{url}/api/auth/tokens", headers=holder.headers, timeout=10).json()
    token_id = tokens["tokens"][0]["id"]
    revoked = requests.delete(
        f"{url}/api/auth/tokens/{token_id}", headers=holder.headers, timeout=10
    )
    assert revoked.status_code in (200, 204), revoked.text
    page.wait_for_function("() => document.querySelector('#status').dataset.state === 'signed-out'")
    assert page.evaluate("reasons") == ["revoked"]


def test_the_client_paces_its_writes_below_the_limit(seeded, start_server, new_context):
    server = start_server(workers=1, HEARTBEAT_SECONDS="1", RATE_LIMIT_WRITES="20/second")
    page, _ = open_as(new_context(), server.url, "admin")
    page.evaluate(
        """() => { window.throttled = []; tidings.on("throttled", (t) => throttled.push(t)); }"""
    )
    page.route("**/presence", lambda route: route.fulfill(status=204))
    started = time.monotonic()
    page.evaluate(
        """() => Promise.all(Array.from({ length: 30 }, () =>
             tidings.write("sales_logs", "insert",
               { bread_type_id: 1, quantity: 1, unit_price: 6.5, shift: "morning" })))"""
    )
    # 10 a second after a burst of 5: never 20 in a second, and the last 25 take 2.5 s.
    assert time.monotonic() - started >= 2.2
    assert page.evaluate("throttled") == []
    rows = http(server.url).get(f"{server.url}/api/sales_logs", params={"limit": 10000}).json()
    assert sum(row["recorded_by"] == "admin" for row in rows["rows"]) == 30


@pytest.mark.parametrize("leader_signs_out", [False, True], ids=["follower", "leader"])
def test_signing_out_in_another_tab_shows_the_form_in_this_one(
    dashboard, new_context, leader_signs_out
):
    context = new_context()
    first, _ = open_as(context, dashboard.url, "admin")
    second = context.new_page()
    second.goto(dashboard.url + "/")
    wait_state(second, "live")
    # Whichever tab holds the connection, the one left open learns the session ended.
    other_tab, page = (first, second) if leader_signs_out else (second, first)
    other_tab.click("#sign-out")
    expect(other_tab.locator("#signin-form")).to_be_visible()
    expect(page.locator("#signin-dialog #signin-form")).to_be_visible(timeout=SIGNED_OUT_MS)
    expect(page.locator("#status .label")).to_have_text("Signed out")
