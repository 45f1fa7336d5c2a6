"""`python -m bench.browser_latency`: from a write in one dashboard to the DOM update in another.

Two Chromium pages show the dashboard. One records a sale through the client
(`tidings.write`, optimistic, with an Idempotency-Key); the other watches its sales feed
with a MutationObserver. Both read the same wall clock (`performance.timeOrigin +
performance.now()`), so the difference is the whole path: HTTP write, commit, Redis,
SSE, the client's processing and the animation frame that updates the DOM.
"""

import argparse
import statistics
import time

from playwright.sync_api import sync_playwright

from tests.browser.conftest import CHROMIUM, CHROMIUM_FLAGS
from tests.identities import sign_in_browser
from tests.servers import http

from . import results
from .server import BenchServer

NOW = "performance.timeOrigin + performance.now()"
WATCH = f"""() => {{
  window.seenAt = {{}};
  new MutationObserver(() => {{
    for (const li of document.querySelectorAll('#sales li')) {{
      const marker = li.textContent.match(/bench-\\d+/)?.[0];
      if (marker && !(marker in window.seenAt)) window.seenAt[marker] = {NOW};
    }}
  }}).observe(document.querySelector('#sales'), {{childList: true, subtree: true}});
}}"""
WRITE = f"""marker => {{
  const started = {NOW};
  tidings.write('sales_logs', 'insert', {{bread_type_id: 1, quantity: 1, unit_price: 2.5,
    shift: 'morning', recorded_by: marker}});
  return started;
}}"""


def _prepare(url: str) -> None:
    """Give the dashboard a bread to sell."""
    bread = http(url).post(f"{url}/api/bread_types", json={"name": "Bench loaf", "price": 2.5})
    bread.raise_for_status()
    production = {"bread_type_id": 1, "quantity": 100_000, "shift": "morning", "recorded_by": "b"}
    http(url).post(f"{url}/api/production_logs", json=production).raise_for_status()


def _measure(browser, url: str, writes: int, shared: bool) -> list[float]:
    """Return write → DOM latencies in ms; `shared` puts both pages in one browser profile."""
    contexts = [browser.new_context()]
    if not shared:
        contexts.append(browser.new_context())
    writer = contexts[0].new_page()
    watcher = contexts[-1].new_page()
    for context in contexts:
        sign_in_browser(context, url)
    for page in (writer, watcher):
        page.goto(url + "/")
        page.wait_for_function("() => document.querySelector('#status').dataset.state === 'live'")
    watcher.evaluate(WATCH)
    latencies = []
    try:
        for i in range(writes):
            marker = f"bench-{int(shared)}{i:04d}"
            started = writer.evaluate(WRITE, marker)
            watcher.wait_for_function("() => m => m in window.seenAt", arg=marker, timeout=10_000)
            latencies.append(watcher.evaluate("m => window.seenAt[m]", marker) - started)
            time.sleep(0.05)
    finally:
        for context in contexts:
            context.close()
    return latencies


def _figures(latencies: list[float]) -> dict:
    ordered = sorted(latencies)
    return {
        "writes": len(ordered),
        "median_ms": round(statistics.median(ordered), 1),
        "p95_ms": round(ordered[int(0.95 * (len(ordered) - 1))], 1),
        "worst_ms": round(ordered[-1], 1),
        "best_ms": round(ordered[0], 1),
    }


def main() -> None:
    """Measure both ways of having two pages open and write one JSON file."""
    parser = argparse.ArgumentParser(prog="python -m bench.browser_latency", description=__doc__)
    parser.add_argument("--writes", type=int, default=50)
    args = parser.parse_args()
    payload = {"workers": 2}
    with BenchServer(workers=2) as server, sync_playwright() as playwright:
        _prepare(server.url)
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS
        )
        try:
            for name, shared in (("separate_browsers", False), ("tabs_sharing_a_connection", True)):
                payload[name] = _figures(_measure(browser, server.url, args.writes, shared))
                print(f"{name}: {payload[name]}")
        finally:
            browser.close()
    print(f"  -> {results.write('browser_latency', payload)}")


if __name__ == "__main__":
    main()
