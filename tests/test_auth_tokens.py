"""API tokens (shown once, stored hashed, listed, revoked, expiring) and stream tokens
(signed, short-lived, only on /stream and /api/changes, bound to their parent credential)."""

import datetime as dt
import hashlib
import time

import requests
import sqlalchemy as sa

from feed import runtime
from identity.sessions import COOKIE
from models import ApiToken

from .api_helpers import assert_error, logged, nothing_written
from .test_auth_login import login


def new_token(client, name: str = "script", **more) -> dict:
    """Create an API token and return the response body."""
    response = client.post("/api/auth/tokens", json={"name": name, **more})
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def bearer(secret: str) -> dict:
    return {"Authorization": f"Bearer {secret}"}


def test_a_token_is_shown_once_stored_hashed_and_acts_as_its_user(app, make_client):
    staff = make_client("staff", 2)
    created = new_token(staff, "till", expires_in=3600)
    assert set(created) == {"id", "name", "token", "expires_at"} and created["name"] == "till"
    expires = dt.datetime.fromisoformat(created["expires_at"].replace("Z", "+00:00"))
    assert 3500 < (expires - dt.datetime.now(dt.UTC)).total_seconds() <= 3600
    with app.app_context(), runtime().read() as conn:
        stored = conn.execute(sa.select(ApiToken.__table__)).all()
    assert created["token"] not in repr(stored)
    assert hashlib.sha256(created["token"].encode()).hexdigest() in {r.secret_hash for r in stored}
    me = app.test_client().get("/api/auth/me", headers=bearer(created["token"])).get_json()
    assert me["user"]["role"] == "staff" and me["user"]["store_id"] == 2
    listed = staff.get("/api/auth/tokens").get_json()["tokens"]
    assert created["id"] in [t["id"] for t in listed]
    assert all("token" not in t and "secret_hash" not in t for t in listed)
    assert created["token"] not in staff.get("/api/auth/tokens").get_data(as_text=True)


def test_a_revoked_token_is_refused_and_the_auth_topic_is_told(app, client):
    created = new_token(client)
    revoked = client.delete(f"/api/auth/tokens/{created['id']}")
    assert revoked.status_code == 200 and revoked.get_json()["revoked_at"] is not None
    refused = app.test_client().get("/api/bread_types", headers=bearer(created["token"]))
    assert_error(refused, 401, "unauthenticated")
    [event] = logged(app, "auth")
    assert event["row"] == {"reason": "revoked", "token": created["id"]}
    assert_error(client.delete(f"/api/auth/tokens/{created['id']}"), 404)


def test_only_your_own_token_can_be_revoked(app, client, make_client):
    mine = new_token(client)
    other = make_client("manager")
    with nothing_written(app):
        assert_error(other.delete(f"/api/auth/tokens/{mine['id']}"), 404, "not_found")
    assert mine["id"] not in [t["id"] for t in other.get("/api/auth/tokens").get_json()["tokens"]]
    assert app.test_client().get("/api/auth/me", headers=bearer(mine["token"])).status_code == 200


def test_an_expired_token_is_refused(app, client):
    created = new_token(client, expires_in=60)
    with app.app_context(), runtime().write() as session:
        session.get(ApiToken, created["id"]).expires_at = dt.datetime(2000, 1, 1)
    assert_error(app.test_client().get("/api/auth/me", headers=bearer(created["token"])), 401)


def test_bad_or_unknown_bearers_are_401_not_nobody(app):
    for header in ("Bearer tdg_unknown", "Bearer ", "Basic YWRtaW46eA==", "tdg_x"):
        response = app.test_client().get("/api/auth/me", headers={"Authorization": header})
        assert_error(response, 401, "unauthenticated")
        assert response.headers["WWW-Authenticate"] == "Bearer"


def test_bad_token_requests_are_400(client):
    for body in ({}, {"name": ""}, {"name": "x" * 81}, {"name": "x", "expires_in": 0}):
        assert_error(client.post("/api/auth/tokens", json=body), 400)
    for seconds in (-5, "60", 1.5, True, 10**12):
        assert_error(
            client.post("/api/auth/tokens", json={"name": "x", "expires_in": seconds}), 400
        )


def stream_token(client, **headers) -> dict:
    response = client.post("/api/auth/stream-token", headers=headers)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def test_stream_token_works_on_changes_only(app, client):
    token = stream_token(client)["token"]
    anonymous = app.test_client()
    polled = anonymous.get(f"/api/changes?topics=bread_types&access_token={token}")
    assert polled.status_code == 200 and polled.get_json()["events"] == []
    assert_error(anonymous.get(f"/api/bread_types?access_token={token}"), 401)
    assert_error(anonymous.post("/api/auth/stream-token", headers=bearer(token)), 401)
    assert_error(anonymous.get("/api/changes?topics=bread_types", headers=bearer(token)), 401)
    assert_error(anonymous.get("/api/changes?topics=bread_types&access_token=forged"), 401)


def test_stream_token_expires(app, client):
    app.config["STREAM_TOKEN_SECONDS"] = 0.5
    token = stream_token(client)["token"]
    time.sleep(0.6)
    assert_error(
        app.test_client().get(f"/api/changes?topics=bread_types&access_token={token}"), 401
    )


def test_stream_token_ends_with_its_token_or_session(app, client):
    created = new_token(client)
    from_token = stream_token(app.test_client(), **bearer(created["token"]))["token"]
    browser = app.test_client()
    csrf = login(browser, "admin").get_json()["csrf_token"]
    from_session = stream_token(browser, **{"X-CSRF-Token": csrf})["token"]
    anonymous = app.test_client()
    for token in (from_token, from_session):
        assert (
            anonymous.get(f"/api/changes?topics=bread_types&access_token={token}").status_code
            == 200
        )
    client.delete(f"/api/auth/tokens/{created['id']}")
    browser.post("/api/auth/logout", headers={"X-CSRF-Token": csrf})
    assert browser.get_cookie(COOKIE) is None
    for token in (from_token, from_session):
        assert_error(anonymous.get(f"/api/changes?topics=bread_types&access_token={token}"), 401)


def test_stream_token_opens_a_real_stream(start_server):
    server = start_server()
    token = server.http.post(f"{server.url}/api/auth/stream-token").json()["token"]
    with requests.get(
        f"{server.url}/stream?topics=bread_types&access_token={token}", stream=True, timeout=10
    ) as response:
        assert response.status_code == 200
        assert response.headers["Content-Type"].startswith("text/event-stream")
    refused = requests.get(f"{server.url}/stream?topics=bread_types&access_token=x", timeout=10)
    assert refused.status_code == 401 and refused.json()["error"] == "unauthenticated"


def test_a_token_without_expires_in_lasts_the_default_lifetime(app, client):
    app.config["API_TOKEN_SECONDS"] = 7200
    created = new_token(client)
    expires = dt.datetime.fromisoformat(created["expires_at"].replace("Z", "+00:00"))
    assert 7100 < (expires - dt.datetime.now(dt.UTC)).total_seconds() <= 7200
