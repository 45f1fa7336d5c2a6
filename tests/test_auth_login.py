"""Signing in and out: the session cookie, its flags, CSRF, and the same answer for every
wrong username or password."""

import time

import flask
import pytest

from app import create_app
from feed import runtime
from identity.sessions import COOKIE
from models import User

from .api_helpers import assert_error, logged, nothing_written
from .identities import PASSWORD, make_user

BREAD = {"name": "Rye", "price": 5}


def login(client, username: str, password: str = PASSWORD, **headers):
    """Post a login and return the response."""
    return client.post(
        "/api/auth/login", json={"username": username, "password": password}, headers=headers
    )


def set_cookie(response) -> str:
    """Return the Set-Cookie header of the session cookie."""
    [header] = [h for h in response.headers.getlist("Set-Cookie") if h.startswith(COOKIE)]
    return header


def test_login_answers_the_user_and_a_csrf_token_and_sets_a_strict_cookie(app):
    staff = make_user(app, "staff", store_id=2)
    response = login(app.test_client(), staff.username)
    assert response.status_code == 200
    body = response.get_json()
    assert body["user"] == {
        "id": staff.user_id,
        "username": staff.username,
        "role": "staff",
        "store_id": 2,
    }
    assert len(body["csrf_token"]) >= 32
    flags = [part.strip().lower() for part in set_cookie(response).split(";")]
    assert "httponly" in flags and "samesite=lax" in flags and "path=/" in flags
    # Plain HTTP, no proxy trusted: a Secure cookie would never come back.
    assert "secure" not in flags


def test_unknown_user_and_wrong_password_get_the_same_answer_in_similar_time(app):
    viewer = make_user(app, "viewer")
    client = app.test_client()

    def attempt(username: str, password: str) -> tuple[dict, float]:
        started = time.perf_counter()
        response = login(client, username, password)
        elapsed = time.perf_counter() - started
        assert_error(response, 401, "invalid_credentials")
        assert COOKIE not in response.headers.get("Set-Cookie", "")
        return response.get_json(), elapsed

    wrong, wrong_time = min(
        (attempt(viewer.username, "nope") for _ in range(3)), key=lambda a: a[1]
    )
    unknown, unknown_time = min(
        (attempt("nobody-here", "nope") for _ in range(3)), key=lambda a: a[1]
    )
    assert wrong == unknown
    # Both verify an argon2 hash: an unknown name is not answered measurably sooner.
    assert unknown_time > wrong_time / 3


def test_bad_login_bodies_are_400(app):
    client = app.test_client()
    for body in ({}, {"username": "a"}, {"username": "", "password": "x"}, [], {"username": 1}):
        assert_error(client.post("/api/auth/login", json=body), 400)


def test_inactive_user_cannot_sign_in(app):
    user = make_user(app, "manager")
    with app.app_context(), runtime().write() as session:
        session.get(User, user.user_id).active = False
    assert_error(login(app.test_client(), user.username), 401, "invalid_credentials")
    assert_error(app.test_client().get("/api/auth/me", headers=user.headers), 401)


def test_cookie_is_secure_behind_an_https_proxy_when_proxy_fix_is_on(
    app, database_url, redis_server
):
    user = make_user(app, "viewer")
    proxied = create_app(
        {
            "SQLALCHEMY_DATABASE_URI": database_url,
            "REDIS_URL": redis_server.url,
            "PROXY_FIX_X_PROTO": 1,
        }
    )
    try:
        response = login(proxied.test_client(), user.username, **{"X-Forwarded-Proto": "https"})
        assert "secure" in [p.strip().lower() for p in set_cookie(response).split(";")]
    finally:
        proxied.extensions["tidings"].close()
    # Without ProxyFix the header is anyone's to send, so it is not believed.
    response = login(app.test_client(), user.username, **{"X-Forwarded-Proto": "https"})
    assert "secure" not in set_cookie(response).lower()


def test_me_answers_like_login_and_401_for_nobody(app):
    user = make_user(app, "staff", store_id=1)
    client = app.test_client()
    signed_in = login(client, user.username).get_json()
    assert client.get("/api/auth/me").get_json() == signed_in
    assert_error(app.test_client().get("/api/auth/me"), 401, "unauthenticated")
    by_token = app.test_client().get("/api/auth/me", headers=user.headers).get_json()
    assert by_token == {"user": signed_in["user"], "csrf_token": None}


def test_logout_ends_the_session_everywhere_and_tells_the_auth_topic(app):
    user = make_user(app, "manager")
    browser, other_tab = app.test_client(), app.test_client()
    csrf = login(browser, user.username).get_json()["csrf_token"]
    cookie = browser.get_cookie(COOKIE).value
    other_tab.set_cookie(COOKIE, cookie)
    assert other_tab.get("/api/auth/me").status_code == 200
    response = browser.post("/api/auth/logout", headers={"X-CSRF-Token": csrf})
    assert response.status_code == 200 and response.get_json() == {"signed_out": True}
    # The same cookie, replayed from anywhere, no longer signs anyone in.
    assert_error(other_tab.get("/api/auth/me"), 401, "unauthenticated")
    assert_error(other_tab.get("/api/bread_types"), 401, "unauthenticated")
    [event] = logged(app, "auth")
    assert event["op"] == "PUBLISH" and event["row"]["reason"] == "logged_out"
    # The event names this session (the cookie is its id, signed).
    assert cookie.startswith(event["row"]["session"] + ".")


def test_cookie_writes_need_the_csrf_token_and_bearer_writes_do_not(app):
    user = make_user(app, "admin")
    browser = app.test_client()
    csrf = login(browser, user.username).get_json()["csrf_token"]
    with nothing_written(app):
        for headers in ({}, {"X-CSRF-Token": "wrong"}, {"X-CSRF-Token": ""}):
            assert_error(
                browser.post("/api/bread_types", json=BREAD, headers=headers), 403, "csrf_failed"
            )
            assert_error(browser.post("/api/auth/logout", headers=headers), 403, "csrf_failed")
            assert_error(browser.delete("/api/bread_types/1", headers=headers), 403, "csrf_failed")
    # Reads need none.
    assert browser.get("/api/bread_types").status_code == 200
    assert (
        browser.post("/api/bread_types", json=BREAD, headers={"X-CSRF-Token": csrf}).status_code
        == 201
    )
    bearer = app.test_client().post(
        "/api/bread_types", json=BREAD | {"name": "Spelt"}, headers=user.headers
    )
    assert bearer.status_code == 201


def test_the_audit_log_records_sign_ins_sign_outs_failures_and_the_actor(app, client):
    bread_id = client.post("/api/bread_types", json=BREAD).get_json()["row"]["id"]
    staff = make_user(app, "staff", store_id=1)
    browser = app.test_client()
    login(browser, staff.username, "wrong")
    login(browser, "no-such-name", "hunter2-typed-here")
    csrf = login(browser, staff.username).get_json()["csrf_token"]
    sale = {"bread_type_id": bread_id, "quantity": 1, "unit_price": 2, "shift": "morning"}
    sold = browser.post(
        "/api/sales_logs",
        json=sale | {"recorded_by": "someone else", "store_id": 1},
        headers={"X-CSRF-Token": csrf},
    )
    assert sold.status_code == 201
    browser.post("/api/auth/logout", headers={"X-CSRF-Token": csrf})
    rows = [e["row"] for e in logged(app, "audit_logs")]
    assert [(r["action"], r["actor"]) for r in rows] == [
        ("insert", "admin"),
        ("sign_in_failed", staff.username),
        ("sign_in_failed", "unknown"),
        ("sign_in", staff.username),
        ("insert", staff.username),
        ("sign_out", staff.username),
    ]
    assert "hunter2" not in str(rows) and "no-such-name" not in str(rows)
    assert rows[0]["store_id"] is None and rows[3]["store_id"] == 1 and rows[4]["store_id"] == 1


def test_flask_s_own_cookie_session_is_never_opened(app):
    response = login(app.test_client(), make_user(app, "staff", store_id=1).username)
    assert [h.split("=", 1)[0] for h in response.headers.getlist("Set-Cookie")] == [COOKIE]
    with app.test_request_context("/"), pytest.raises(RuntimeError):
        flask.session["user"] = 1
