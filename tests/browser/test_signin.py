"""The sign-in form in a real Chromium: shown to nobody, refusing a wrong password, and
reloading into the page once signed in."""

import pytest
from playwright.sync_api import expect

from ..identities import PASSWORD
from .conftest import SETTLE_MS, wait_state

pytestmark = pytest.mark.browser


@pytest.mark.parametrize("path", ["/", "/monitor"])
def test_sign_in_through_the_form_opens_the_page(dashboard, browser, path):
    context = browser.new_context()
    context.set_default_timeout(SETTLE_MS)
    try:
        page = context.new_page()
        page.goto(dashboard.url + path)
        page.fill("#signin-username", "admin")
        page.fill("#signin-password", "not it")
        page.click("#signin-form button")
        expect(page.locator("#signin-error")).to_have_text("The username or password is wrong.")
        page.fill("#signin-password", PASSWORD)
        page.click("#signin-form button")
        expect(page.locator("#signin-form")).to_have_count(0)
        if path == "/":
            wait_state(page, "live")
        else:
            expect(page.locator("#mode")).to_have_attribute("data-mode", "live")
        cookie = next(c for c in context.cookies() if c["name"] == "tidings_session")
        assert cookie["httpOnly"] and cookie["sameSite"] == "Lax"
    finally:
        context.close()
