"""Fixtures for browser tests: Debian's Chromium driven by Playwright, and a seeded server."""

import contextlib
import threading
import warnings
from pathlib import Path

import psutil
import pytest
from playwright.sync_api import Browser, BrowserContext, Error, Page, expect, sync_playwright

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


# Chromium now and then never answers the request that disposes of a browser profile
# (Target.disposeBrowserContext) although every page in it is done: past this, it is ended
# and started anew, with a warning, instead of stalling the run.
CLOSE_SECONDS = 30


class Chromium:
    """Debian's headless Chromium under Playwright, started again when it had to be ended."""

    def __init__(self, playwright):
        self.playwright = playwright
        self.browser: Browser | None = None
        self.process: psutil.Process | None = None
        # Set by the watchdog when it had to end the browser.
        self._ended = False

    def current(self) -> Browser:
        """Return the running browser, launching one when there is none."""
        if self.browser is None or not self.browser.is_connected():
            before = _chromium_processes()
            self.browser = self.playwright.chromium.launch(
                executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS
            )
            started = [p for p in _chromium_processes() - before if not _is_chromium(p.parent())]
            self.process = started[0] if len(started) == 1 else None
        return self.browser

    def close(self, context: BrowserContext) -> None:
        """Close a profile; a browser that does not answer within CLOSE_SECONDS is ended."""
        pages = [page.url for page in context.pages]
        watchdog = threading.Timer(CLOSE_SECONDS, self._end)
        watchdog.start()
        try:
            # Each page closed on its own first, the profile then holds nothing when it goes.
            for page in context.pages:
                page.close()
            context.close()
        except Error:
            # Closing fails when the browser was ended under it.
            if not self._ended:
                raise
        finally:
            watchdog.cancel()
        if self._ended:
            self._ended = False
            # Shown, not an error (pyproject's filter): the test's own checks passed, and
            # the next test gets a fresh browser.
            warnings.warn(
                f"Chromium did not close a profile in {CLOSE_SECONDS} s (pages {pages}): "
                "ended it; the next test starts another",
                stacklevel=2,
            )

    def _end(self) -> None:
        self._ended = True
        if self.process is not None:
            for process in [*self.process.children(recursive=True), self.process]:
                with contextlib.suppress(psutil.NoSuchProcess):
                    process.kill()

    def stop(self) -> None:
        """Close the browser, if it runs."""
        if self.browser is not None and self.browser.is_connected():
            self.browser.close()


def _is_chromium(process: psutil.Process | None) -> bool:
    return process is not None and process.name().startswith("chrom")


def _chromium_processes() -> set[psutil.Process]:
    """Return the Chromium processes this test run started."""
    return {p for p in psutil.Process().children(recursive=True) if _is_chromium(p)}


@pytest.fixture(scope="session")
def chromium():
    """One headless Chromium for the session (the system package, never a download)."""
    with sync_playwright() as playwright:
        running = Chromium(playwright)
        yield running
        running.stop()


@pytest.fixture
def browser(chromium) -> Browser:
    """The session's Chromium."""
    return chromium.current()


class Profiles:
    """Fresh browser profiles (their own storage, locks and channels), each closed at the end."""

    def __init__(self, chromium: Chromium):
        self.chromium = chromium
        self.made: list[BrowserContext] = []

    def __call__(self, **options) -> BrowserContext:
        """Return a new signed-out profile with a 1280×900 window unless told otherwise."""
        context = self.chromium.current().new_context(
            **{"viewport": {"width": 1280, "height": 900}, **options}
        )
        context.set_default_timeout(SETTLE_MS)
        self.made.append(context)
        return context

    def close(self, context: BrowserContext) -> None:
        """Close a profile now, as a user closing the browser window."""
        self.chromium.close(context)


@pytest.fixture
def new_context(chromium):
    """Return fresh, signed-out browser profiles, all closed at the end."""
    profiles = Profiles(chromium)
    yield profiles
    for context in profiles.made:
        profiles.close(context)


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
def context(new_context, app, admin) -> BrowserContext:
    """A fresh browser profile signed in as the admin, closed at the end."""
    ctx = new_context()
    sign_in_context(ctx, app, admin)
    return ctx


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
