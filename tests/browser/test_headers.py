"""The pages under their Content-Security-Policy in a real Chromium: each loads, works, and
reports no violation (no inline script, handler or style attribute is refused)."""

import pytest
from playwright.sync_api import BrowserContext, Page, expect

from blueprints.headers import CONTENT_SECURITY_POLICY

from .conftest import open_dashboard

pytestmark = pytest.mark.browser

# Installed before any page script: records every refusal the policy makes.
WATCH = """window.__violations = [];
document.addEventListener('securitypolicyviolation', e =>
  window.__violations.push(`${e.violatedDirective} ${e.blockedURI} ${e.lineNumber}`));
"""


def _watched(context: BrowserContext) -> list[str]:
    """Watch the context's pages; return the list CSP console messages collect in."""
    context.add_init_script(WATCH)
    messages: list[str] = []
    context.on(
        "console",
        lambda message: "Content Security Policy" in message.text and messages.append(message.text),
    )
    return messages


def _no_violations(page: Page, messages: list[str]) -> None:
    page.wait_for_function("() => new Promise(requestAnimationFrame)")
    assert page.evaluate("window.__violations") == []
    assert messages == []


def _policy_of(page: Page, url: str) -> str:
    response = page.goto(url)
    assert response is not None and response.status == 200
    return response.headers["content-security-policy"]


def test_dashboard_runs_under_the_policy(dashboard, context):
    messages = _watched(context)
    page = open_dashboard(context, dashboard.url)
    _no_violations(page, messages)
    # The stock bars are sized by script, not by a refused style attribute.
    widths = page.eval_on_selector_all(".bar > span", "spans => spans.map(s => s.style.width)")
    assert widths and all(width.endswith("%") for width in widths)
    assert _policy_of(page, dashboard.url + "/") == CONTENT_SECURITY_POLICY


def test_monitor_runs_under_the_policy(dashboard, context):
    messages = _watched(context)
    page = context.new_page()
    assert _policy_of(page, dashboard.url + "/monitor") == CONTENT_SECURITY_POLICY
    expect(page.locator("#mode")).to_have_attribute("data-mode", "live")
    expect(page.locator("#selftest")).to_have_text("streaming OK")
    _no_violations(page, messages)


def test_sign_in_page_runs_under_the_policy(dashboard, new_context):
    context = new_context()
    messages = _watched(context)
    page = context.new_page()
    assert _policy_of(page, dashboard.url + "/") == CONTENT_SECURITY_POLICY
    page.fill("#signin-username", "admin")
    page.fill("#signin-password", "not it")
    page.click("#signin-form button")
    expect(page.locator("#signin-error")).to_be_visible()
    _no_violations(page, messages)
