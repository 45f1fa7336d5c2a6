"""Fixtures for browser tests: Debian's Chromium driven by Playwright, and a seeded server."""

from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright

from models.activity import start_of_today
from models.seed import seed

from ..identities import sign_in_browser, sign_in_context
from ..servers import http

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
# Generous bound for anything the page does by itself (reconnects, fallbacks, flushes).
SETTLE_MS = 30_000
expect.set_options(timeout=SETTLE_MS)


@pytest.fixture(scope="session")
def browser():
    """One headless Chromium for the session (the system package, never a download)."""
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS
        )
        yield chromium
        chromium.close()


@pytest.fixture
def seeded(app):
    """Fill the test database with the bakery demo."""
    with app.app_context():
        seed()
    return app


@pytest.fixture
def dashboard(seeded, start_server):
    """A seeded Tidings server with one worker and a 1 s heartbeat."""
    return start_server(workers=1, HEARTBEAT_SECONDS="1")


@pytest.fixture
def context(browser: Browser, app, admin):
    """A fresh browser profile (its own storage, locks and channels) signed in as the admin,
    closed at the end."""
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    ctx.set_default_timeout(SETTLE_MS)
    sign_in_context(ctx, app, admin)
    yield ctx
    ctx.close()


def open_dashboard(context: BrowserContext, url: str) -> Page:
    """Sign in as the admin, open the dashboard and wait until it is receiving."""
    sign_in_browser(context, url)
    page = context.new_page()
    page.goto(url + "/")
    wait_state(page, "live")
    page.wait_for_selector("html[data-loaded]", state="attached")
    page.wait_for_function("() => new Promise(requestAnimationFrame)")
    return page


def wait_state(page: Page, *states: str) -> None:
    """Wait until the connection indicator is in one of the states."""
    page.wait_for_function(
        "states => states.includes(document.querySelector('#status')?.dataset.state)",
        arg=list(states),
    )


def page_stock(page: Page) -> dict[int, int]:
    """Return the stock column as the page shows it, by bread id."""
    return {
        int(k): v
        for k, v in page.evaluate(
            """() => Object.fromEntries([...document.querySelectorAll('#stock-rows tr[data-bread]')]
                 .map(tr => [tr.dataset.bread, Number(tr.querySelector('.left').textContent)]))"""
        ).items()
    }


def db_stock(url: str) -> dict[int, int]:
    """Return produced − sold today per bread, from the server's own snapshots."""
    since = {"created_at": "gte." + start_of_today().strftime("%Y-%m-%dT%H:%M:%S.000Z")}
    stock = {row["id"]: 0 for row in http(url).get(f"{url}/api/bread_types").json()["rows"]}
    for table, sign in (("production_logs", 1), ("sales_logs", -1)):
        for row in http(url).get(f"{url}/api/{table}", params=since).json()["rows"]:
            stock[row["bread_type_id"]] += sign * row["quantity"]
    return stock


def wait_stock(page: Page, expected: dict[int, int], timeout: float = SETTLE_MS) -> None:
    """Wait until the page's stock column equals `expected`."""
    page.wait_for_function(
        """expected => {
             const rows = [...document.querySelectorAll('#stock-rows tr[data-bread]')];
             return rows.length === Object.keys(expected).length && rows.every(
               tr => Number(tr.querySelector('.left').textContent) === expected[tr.dataset.bread]);
           }""",
        arg={str(k): v for k, v in expected.items()},
        timeout=timeout,
    )


def sale(url: str, bread_id: int = 1, quantity: int = 1, by: str = "test") -> dict:
    """Record a sale over HTTP, as another client would."""
    response = http(url).post(
        f"{url}/api/sales_logs",
        json={
            "bread_type_id": bread_id,
            "quantity": quantity,
            "unit_price": 6.5,
            "shift": "morning",
            "recorded_by": by,
        },
        timeout=10,
    )
    assert response.status_code == 201, response.text
    return response.json()["row"]
