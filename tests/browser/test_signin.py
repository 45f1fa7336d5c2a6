"""The sign-in form in a real Chromium: shown to nobody, refusing a wrong password, and
reloading into the page once signed in."""

import pytest
from playwright.sync_api import expect

from ..identities import PASSWORD, make_user, sign_in_browser
from .conftest import wait_state

pytestmark = pytest.mark.browser


@pytest.mark.parametrize("path", ["/", "/monitor"])
def test_sign_in_through_the_form_opens_the_page(dashboard, new_context, path):
    context = new_context()
    page = context.new_page()
    page.goto(dashboard.url + path)
    page.fill("#signin-username", "admin")
    page.fill("#signin-password", "not it")
    page.click("#signin-form button")
    expect(page.locator("#signin-error")).to_have_text("The username or password is wrong.")
    page.fill("#signin-password", PASSWORD)
    page.click("#signin-form button")
    # The dashboard keeps the form in its (closed) sign-in dialog.
    expect(page.locator("#signin-form")).to_be_hidden()
    if path == "/":
        wait_state(page, "live")
    else:
        expect(page.locator("#mode")).to_have_attribute("data-mode", "live")
    cookie = next(c for c in context.cookies() if c["name"] == "tidings_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax"


def test_the_dashboard_shows_who_is_signed_in_and_signs_out(dashboard, app, new_context):
    staff = make_user(app, "staff", store_id=2)
    context = new_context()
    sign_in_browser(context, dashboard.url, staff.username)
    page = context.new_page()
    page.goto(dashboard.url + "/")
    wait_state(page, "live")
    expect(page.locator("#whoami")).to_have_text(f"{staff.username} · staff · South")
    page.click("#sign-out")
    expect(page.locator("#signin-form")).to_be_visible()
    assert dashboard.http.get(f"{dashboard.url}/api/auth/me").status_code == 200
    # The browser's own cookie no longer signs it in (asked outside the page, which may
    # still be navigating to the sign-in form).
    assert context.request.get(f"{dashboard.url}/api/auth/me").status == 401
