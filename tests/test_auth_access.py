"""Who reaches which route: nobody gets 401 on every API route (or a sign-in form on a
page), the monitor is for admins and managers, and health checks stay open."""

import re

import pytest

from feed import runtime
from models import User

from .api_helpers import assert_error, logged
from .identities import make_user

# The one API route nobody may call.
OPEN_API = {"auth.login"}
PROTECTED_PREFIXES = ("/api/", "/stream", "/monitor.json", "/monitor/", "/presence")


def _sample_path(rule) -> str:
    """Fill a rule's arguments with plausible values."""
    return re.sub(
        r"<(?:(\w+):)?(\w+)>",
        lambda m: "1" if m.group(1) == "int" else "bread_types",
        rule.rule,
    )


def _protected_routes(app) -> list[tuple[str, str, str]]:
    routes = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint in OPEN_API or not rule.rule.startswith(PROTECTED_PREFIXES):
            continue
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            routes.append((rule.endpoint, method, _sample_path(rule)))
    return routes


def test_nobody_gets_401_on_every_api_route_stream_and_monitor_json(app):
    routes = _protected_routes(app)
    endpoints = {endpoint for endpoint, _, _ in routes}
    # The walk covers what it must, so a new route cannot slip past it.
    assert {
        "stream.stream",
        "stream.changes",
        "api.snapshot",
        "api.create",
        "api.batch",
    } <= endpoints
    assert {"auth.logout", "auth.me", "auth.create_token", "monitor.figures_json"} <= endpoints
    client = app.test_client()
    for endpoint, method, path in routes:
        response = client.open(path, method=method, json={})
        assert response.status_code == 401, (endpoint, method, path)
        assert_error(response, 401, "unauthenticated")
    # Paths no route matches under /api/ do not reveal that either.
    assert_error(client.get("/api/nope/1/2"), 401, "unauthenticated")


def test_pages_show_nobody_the_sign_in_form_with_no_inline_script(app):
    client = app.test_client()
    for path in ("/", "/monitor"):
        response = client.get(path)
        assert response.status_code == 200 and response.mimetype == "text/html"
        page = response.get_data(as_text=True)
        assert 'id="signin-form"' in page and 'type="password"' in page
        assert re.findall(r"<script[^>]*>", page) == [
            '<script type="module" src="/static/signin.js">'
        ]
    with client.get("/static/signin.js") as script:
        assert script.status_code == 200


def test_health_checks_stay_open(app):
    client = app.test_client()
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 200


def test_metrics_need_the_metrics_token_when_it_is_set(app, client):
    anonymous = app.test_client()
    assert anonymous.get("/metrics").status_code == 200
    app.config["METRICS_TOKEN"] = "m3trics"
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "m3trics"}):
        assert_error(anonymous.get("/metrics", headers=headers), 401, "unauthenticated")
    # A user's API token is not the metrics token.
    assert_error(client.get("/metrics"), 401)
    assert anonymous.get("/metrics", headers={"Authorization": "Bearer m3trics"}).status_code == 200


@pytest.mark.parametrize("role", ["staff", "viewer"])
def test_the_monitor_is_forbidden_to_staff_and_viewers(app, make_client, role):
    other = make_client(role, 1 if role == "staff" else None)
    for path in ("/monitor", "/monitor.json", "/monitor/selftest"):
        assert_error(other.get(path), 403, "forbidden")


@pytest.mark.parametrize("role", ["admin", "manager"])
def test_the_monitor_is_open_to_admins_and_managers(app, make_client, role):
    other = make_client(role)
    assert other.get("/monitor").status_code == 200
    assert other.get("/monitor.json").status_code == 200


def test_presence_publishes_the_signed_in_name_not_the_body_s(app, make_client):
    viewer = make_client("viewer")
    body = {"client": "tab-1", "name": "somebody else", "state": "here"}
    assert viewer.post("/presence", json=body).status_code == 201
    [event] = logged(app, "presence")
    assert event["row"]["name"].startswith("viewer-")
    assert_error(app.test_client().post("/presence", json=body), 401)


def test_the_auth_topic_is_neither_subscribable_nor_publishable(client):
    assert_error(client.get("/api/changes?topics=auth"), 400, "unknown_topic")
    assert_error(client.post("/api/publish", json={"topic": "auth", "data": {}}), 400)


def test_a_deactivated_user_s_token_stops_working(app):
    user = make_user(app, "staff", 1)
    assert app.test_client().get("/api/bread_types", headers=user.headers).status_code == 200
    with app.app_context(), runtime().write() as session:
        session.get(User, user.user_id).active = False
    assert_error(app.test_client().get("/api/bread_types", headers=user.headers), 401)
