"""The dashboard in a real Chromium against a real gunicorn: live updates, offline writes,
restarts, polling fallback, one shared connection, conflicts and failing handlers."""

from urllib.parse import urlparse

import pytest
from playwright.sync_api import expect

from ..delivery_tools import wait_for
from ..identities import make_user, sign_in_browser
from ..monitor_tools import metric_values
from .conftest import (
    ARTIFACTS,
    db_stock,
    open_dashboard,
    page_stock,
    sale,
    wait_state,
    wait_stock,
)

pytestmark = pytest.mark.browser


def is_stream(url: str) -> bool:
    """Tell whether a request URL is the SSE endpoint."""
    return urlparse(url).path == "/stream"


def test_sale_in_one_page_appears_in_the_other(dashboard, context):
    first = open_dashboard(context, dashboard.url)
    second = open_dashboard(context, dashboard.url)
    before = page_stock(second)[1]
    first.select_option("#sale-bread", "1")
    first.fill("#sale-qty", "3")
    first.click("#sale-form button[type=submit]")
    # The server names who recorded it: the signed-in user, not what the page says.
    expect(second.locator('#sales li:has-text("admin")')).to_have_count(1, timeout=1000)
    expect(second.locator('tr[data-bread="1"] .left')).to_have_text(str(before - 3), timeout=1000)
    wait_stock(first, db_stock(dashboard.url))
    assert page_stock(second) == db_stock(dashboard.url)


def test_offline_writes_queue_then_flush_in_order(dashboard, context):
    first = open_dashboard(context, dashboard.url)
    second = open_dashboard(context, dashboard.url)
    context.set_offline(True)
    for page in (first, second):
        expect(page.locator("#status .label")).to_have_text("Offline")
    first.select_option("#sale-bread", "2")
    first.fill("#sale-qty", "2")
    first.click("#sale-form button[type=submit]")
    first.click("#sale-form button[type=submit]")
    second.select_option("#production-bread", "2")
    second.fill("#production-qty", "5")
    second.click("#production-form button[type=submit]")
    for page in (first, second):
        expect(page.locator("#pending")).to_have_text("3 pending")
    # Applied optimistically while offline: 2 + 2 sold, 5 baked.
    before = db_stock(dashboard.url)[2]
    expect(first.locator('tr[data-bread="2"] .left')).to_have_text(str(before - 4 + 5))

    context.set_offline(False)
    for page in (first, second):
        expect(page.locator("#pending")).to_be_hidden()
        wait_state(page, "live", "polling")
    expected = db_stock(dashboard.url)
    assert expected[2] == before + 1
    for page in (first, second):
        wait_stock(page, expected)
    sold = dashboard.http.get(
        f"{dashboard.url}/api/sales_logs", params={"bread_type_id": "eq.2"}
    ).json()
    assert [row["quantity"] for row in sold["rows"][-2:]] == [2, 2]


def test_offline_queue_survives_a_reload(dashboard, context):
    page = open_dashboard(context, dashboard.url)
    before = db_stock(dashboard.url)[3]
    context.set_offline(True)
    expect(page.locator("#status .label")).to_have_text("Offline")
    page.select_option("#sale-bread", "3")
    page.fill("#sale-qty", "4")
    page.click("#sale-form button[type=submit]")
    expect(page.locator("#pending")).to_have_text("1 pending")
    page.wait_for_function("async () => (await tidings.queued()) === 1")
    page.close()
    assert db_stock(dashboard.url)[3] == before
    context.set_offline(False)
    reopened = context.new_page()
    reopened.goto(dashboard.url + "/")
    expect(reopened.locator('#sales li:has-text("admin")')).to_have_count(1)
    expect(reopened.locator("#pending")).to_be_hidden()
    assert db_stock(dashboard.url)[3] == before - 4
    wait_stock(reopened, db_stock(dashboard.url))


def test_pages_reconnect_after_a_server_restart_and_miss_nothing(dashboard, context):
    first = open_dashboard(context, dashboard.url)
    second = open_dashboard(context, dashboard.url)
    sale(dashboard.url, bread_id=4, quantity=1)
    dashboard.restart()
    # Written before the pages are back: they must come from the log on resume.
    for _ in range(5):
        sale(dashboard.url, bread_id=4, quantity=2)
    expected = db_stock(dashboard.url)
    for page in (first, second):
        wait_stock(page, expected)
        wait_state(page, "live")
    sale(dashboard.url, bread_id=5, quantity=3)
    expected = db_stock(dashboard.url)
    for page in (first, second):
        wait_stock(page, expected)


def test_blocked_stream_falls_back_to_polling_and_comes_back(dashboard, context):
    context.route(is_stream, lambda route: route.abort())
    page = context.new_page()
    page.goto(dashboard.url + "/")
    expect(page.locator("#status .label")).to_have_text("Polling")
    sale(dashboard.url, bread_id=1, quantity=2)
    wait_stock(page, db_stock(dashboard.url))
    context.unroute(is_stream)
    expect(page.locator("#status .label")).to_have_text("Live")
    sale(dashboard.url, bread_id=1, quantity=1)
    wait_stock(page, db_stock(dashboard.url))


def test_tabs_share_one_stream_and_hand_it_over(seeded, start_server, new_context, tmp_path):
    # The server's own access log says which requests reached it.
    access_log = tmp_path / "access.log"
    server = start_server(
        workers=1, HEARTBEAT_SECONDS="1", GUNICORN_CMD_ARGS=f"--access-logfile {access_log}"
    )
    context = new_context()
    seen = []
    context.on("request", lambda request: is_stream(request.url) and seen.append(request.url))
    pages = [open_dashboard(context, server.url) for _ in range(3)]
    sale(server.url, bread_id=2, quantity=1)
    for page in pages:
        wait_stock(page, db_stock(server.url))
    assert len(seen) == 1
    leader = next(p for p in pages if p.evaluate("tidings.status.leader"))
    leader.close()
    rest = [p for p in pages if p is not leader]
    rest[0].wait_for_function("() => tidings.status.leader || tidings.status.state !== 'live'")
    for page in rest:
        wait_state(page, "live")
    sale(server.url, bread_id=2, quantity=2)
    for page in rest:
        wait_stock(page, db_stock(server.url))
    assert len(seen) == 2
    # Parked streams are logged as they go live: both are, before the tabs close (a closing
    # tab may still reconnect while Chromium takes its time to end it).
    wait_for(
        lambda: len(logged_streams(access_log)) == 2,
        10,
        "both streams in the access log",
        lambda: "\n".join(logged_streams(access_log)),
    )
    new_context.close(context)
    # The server notices closed tabs at once: no stream is left open.
    wait_for(
        lambda: open_streams(server.url) == 0,
        10,
        "no stream left open",
        lambda: str(open_streams(server.url)),
    )


def open_streams(url: str) -> float:
    """Return how many streams the server holds open."""
    return metric_values(url)["tidings_connections{transport=sse}"]


def logged_streams(access_log) -> list[str]:
    """Return the access-log lines of /stream requests."""
    if not access_log.exists():
        return []
    return [line for line in access_log.read_text().splitlines() if '"GET /stream?' in line]


def test_concurrent_edit_shows_the_conflict_and_loses_nothing(dashboard, context):
    first = open_dashboard(context, dashboard.url)
    second = open_dashboard(context, dashboard.url)
    version = dashboard.http.get(f"{dashboard.url}/api/bread_types/1").json()["row"]["version"]
    for page in (first, second):
        page.click('tr[data-bread="1"] button.edit')
        expect(page.locator("#edit-dialog")).to_be_visible()
    first.fill("#edit-price", "7.00")
    first.click("#edit-save")
    expect(second.locator('tr[data-bread="1"] td').first).to_have_text("€7.00")
    second.fill("#edit-price", "7.50")
    second.click("#edit-save")
    dialog = second.locator("#conflict-dialog")
    expect(dialog).to_be_visible()
    price = dialog.locator("tr", has_text="price")
    expect(price.locator("td.mine")).to_have_text("7.5")
    expect(price.locator("td.theirs")).to_have_text("7")
    expect(first.locator("#conflict-dialog")).to_be_hidden()
    second.click("#conflict-mine")
    for page in (first, second):
        expect(page.locator('tr[data-bread="1"] td').first).to_have_text("€7.50")
    row = dashboard.http.get(f"{dashboard.url}/api/bread_types/1").json()["row"]
    assert (row["price"], row["version"]) == (7.5, version + 2)
    audit = dashboard.http.get(
        f"{dashboard.url}/api/audit_logs",
        params={"target_table": "eq.bread_types", "action": "eq.update"},
    ).json()["rows"]
    assert [entry["summary"][-4:] for entry in audit] == ["7.00", "7.50"]


def test_a_throwing_handler_does_not_stop_updates(dashboard, context):
    page = open_dashboard(context, dashboard.url)
    page.evaluate(
        """() => {
             window.seen = 0;
             tidings.on('insert', () => { throw new Error('boom'); });
             tidings.on('insert', () => { window.seen += 1; });
           }"""
    )
    sale(dashboard.url, bread_id=3, quantity=13)
    expect(page.locator('#sales li:has-text("13 ×")')).to_have_count(1)
    expect(page.locator(".toast", has_text="handler failed: boom").first).to_be_visible()
    # The audit row of the sale is an insert too.
    page.wait_for_function("() => window.seen >= 1")
    wait_stock(page, db_stock(dashboard.url))


def test_a_refused_write_rolls_back_with_its_reason(dashboard, context):
    page = open_dashboard(context, dashboard.url)
    before = page_stock(page)
    page.evaluate(
        """() => tidings.write('sales_logs', 'insert', {bread_type_id: 1, quantity: 'many',
             unit_price: 1, shift: 'morning', recorded_by: 'x'}).catch(() => {})"""
    )
    expect(page.locator(".toast", has_text="rolled back").first).to_contain_text("quantity")
    expect(page.locator("#pending")).to_be_hidden()
    # The stock column is redrawn on the next animation frame after the rollback.
    wait_stock(page, before)


def test_dashboard_screenshots_desktop_and_phone(dashboard, new_context):
    ARTIFACTS.mkdir(exist_ok=True)
    for name, viewport in (("desktop", (1280, 900)), ("phone", (390, 844))):
        context = new_context(
            viewport={"width": viewport[0], "height": viewport[1]}, device_scale_factor=1
        )
        page = open_dashboard(context, dashboard.url)
        wait_stock(page, db_stock(dashboard.url))
        unlabelled = page.evaluate(
            """() => [...document.querySelectorAll('input, select, textarea')]
                 .filter(el => el.labels.length === 0).map(el => el.id)"""
        )
        assert unlabelled == []
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"{name} layout is wider than the screen by {overflow}px"
        page.screenshot(path=str(ARTIFACTS / f"dashboard-{name}.png"), full_page=True)
        new_context.close(context)


def test_who_is_online_follows_the_server_s_roster_and_events(
    seeded, app, start_server, new_context
):
    # A channel of its own: user ids repeat between tests' databases, and Redis outlives them.
    server = start_server(workers=2, HEARTBEAT_SECONDS="1", FEED_CHANNEL=app.config["FEED_CHANNEL"])
    staff = make_user(app, "staff", 1)
    admin_context, staff_context = new_context(), new_context()
    for context in (admin_context, staff_context):
        # No tab announces itself: what the pages show comes from the server's streams.
        context.route(
            lambda url: urlparse(url).path == "/presence",
            lambda route: route.fulfill(status=204),
        )
    admin_page = open_dashboard(admin_context, server.url)
    # The staff page reads the roster (the admin is there); the admin's gets a join.
    sign_in_browser(staff_context, server.url, staff.username)
    staff_page = staff_context.new_page()
    staff_page.goto(server.url + "/")
    wait_state(staff_page, "live")
    expect(staff_page.locator("#presence li", has_text="admin")).to_have_count(1)
    expect(admin_page.locator("#presence li", has_text=staff.username)).to_have_count(1)
    expect(admin_page.locator("#presence-summary")).to_have_text("2 viewing")
    # Its last stream closed, the staff user leaves the admin's list.
    new_context.close(staff_context)
    expect(admin_page.locator("#presence li", has_text=staff.username)).to_have_count(
        0, timeout=5000
    )
