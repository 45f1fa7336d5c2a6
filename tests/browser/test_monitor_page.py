"""/monitor in a real Chromium: it renders, follows the feed live, pauses and resumes."""

import time

import pytest
from playwright.sync_api import expect

from ..identities import sign_in_browser
from .conftest import ARTIFACTS

pytestmark = pytest.mark.browser


def _updated(page) -> str:
    return page.locator("#updated").get_attribute("datetime") or ""


def test_monitor_renders_updates_live_pauses_and_resumes(start_server, context):
    server = start_server(workers=2, MONITOR_SECONDS="1", HEARTBEAT_SECONDS="1")
    server.http.post(f"{server.url}/api/bread_types", json={"name": "Rye", "price": 5})
    sign_in_browser(context, server.url)
    page = context.new_page()
    page.goto(server.url + "/monitor")
    expect(page.locator("#mode")).to_have_attribute("data-mode", "live")
    expect(page.locator("#selftest")).to_have_text("streaming OK")
    expect(page.locator("#parts tr")).to_have_count(7)
    assert page.locator("[data-k='health.score']").inner_text().isdigit()
    expect(page.locator("[data-k='redis.up']")).to_have_text("up")
    expect(page.locator("[data-k='rate_limits.shared']")).to_have_text("up")

    # Live: figures arrive through the monitor topic and the tiles follow them.
    first = _updated(page)
    page.wait_for_function("t => document.querySelector('#updated').dateTime !== t", arg=first)
    for n in range(5):
        server.http.post(f"{server.url}/api/bread_types", json={"name": f"B{n}", "price": 5})
    expect(page.locator("[data-k='counters.events_appended']")).not_to_have_text("–")
    page.wait_for_function(
        "() => Number(document.querySelector(\"svg[data-series='health']\").dataset.points) >= 3"
    )
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "monitor.png"), full_page=True)

    # Pause: nothing changes while the server keeps publishing.
    page.click("#toggle")
    expect(page.locator("#mode")).to_have_attribute("data-mode", "paused")
    paused = _updated(page)
    time.sleep(3)
    assert _updated(page) == paused

    # Live again: updates resume by themselves.
    page.click("#toggle")
    expect(page.locator("#mode")).to_have_attribute("data-mode", "live")
    page.wait_for_function("t => document.querySelector('#updated').dateTime !== t", arg=paused)
