"""Open streams and long polls end with auth-expired within 5 s of logout, revocation or
expiry, on a real gunicorn; signing in again resumes from the cursor with nothing lost."""

import threading
import time

import requests

from feed import runtime
from identity.sessions import COOKIE
from models import User

from .delivery_tools import SALE, create_bread_types
from .identities import PASSWORD, make_user
from .sse import SseStream

QUERY = "topics=sales_logs"
# The protocol's bound, from the cause to the stream's end.
WITHIN_SECONDS = 5


def _sign_in(url: str, username: str) -> tuple[dict, str]:
    """Log in; return the headers that carry the session cookie (and no token), and the
    CSRF token."""
    response = requests.post(
        f"{url}/api/auth/login", json={"username": username, "password": PASSWORD}, timeout=10
    )
    assert response.status_code == 200, response.text
    cookie = f"{COOKIE}={response.cookies[COOKIE]}"
    return {"Cookie": cookie, "Authorization": None}, response.json()["csrf_token"]


def _ended_by(stream: SseStream, cause) -> tuple[dict, str, float]:
    """Read to `ready`, call `cause`, and return the auth-expired block's data, its id and
    the seconds it took; the stream must close right after it."""
    stream.until("ready")
    started = time.monotonic()
    cause()
    # Heartbeats keep the connection busy: the deadline is ours, not the read timeout's.
    ended = next(
        b for b in stream.blocks if b.event == "auth-expired" or time.monotonic() > started + 10
    )
    took = time.monotonic() - started
    assert ended.event == "auth-expired", "no auth-expired within 10 s"
    assert list(stream.blocks) == [], "the stream went on after auth-expired"
    return ended.json(), ended.id, took


def test_a_logout_ends_the_sessions_streams_and_signing_in_again_resumes(app, start_server):
    server = start_server(HEARTBEAT_SECONDS="1")
    staff = make_user(app, "staff", 1)
    breads = create_bread_types(server.url)
    headers, csrf = _sign_in(server.url, staff.username)
    with SseStream(server.url, QUERY, headers=headers) as stream:
        data, cursor, took = _ended_by(
            stream,
            lambda: requests.post(
                f"{server.url}/api/auth/logout",
                headers={**headers, "X-CSRF-Token": csrf},
                timeout=10,
            ),
        )
    assert data == {"reason": "logged_out"} and took < WITHIN_SECONDS
    # The old cookie no longer works; a sale made meanwhile arrives once after signing in.
    refused = requests.get(f"{server.url}/stream?{QUERY}", headers=headers, timeout=10)
    assert refused.status_code == 401
    sold = server.http.post(
        f"{server.url}/api/sales_logs",
        json=SALE | {"bread_type_id": breads[0], "shift": "morning", "store_id": 1},
        timeout=10,
    )
    missed = sold.json()["event"]
    headers, _ = _sign_in(server.url, staff.username)
    with SseStream(server.url, QUERY, last_event_id=cursor, headers=headers) as stream:
        changes = [b.json() for b in stream.until("ready") if b.event == "change"]
    assert [change["id"] for change in changes] == [missed]


def test_revoking_a_token_ends_its_streams(app, start_server):
    server = start_server(HEARTBEAT_SECONDS="1")
    viewer = make_user(app, "viewer")
    token_id = server.http.get(f"{server.url}/api/auth/tokens", headers=viewer.headers).json()
    [listed] = token_id["tokens"]
    with SseStream(server.url, QUERY, headers=viewer.headers) as stream:
        data, _, took = _ended_by(
            stream,
            lambda: requests.delete(
                f"{server.url}/api/auth/tokens/{listed['id']}", headers=viewer.headers, timeout=10
            ),
        )
    assert data == {"reason": "revoked"} and took < WITHIN_SECONDS


def test_a_change_to_a_user_s_access_ends_their_streams_and_their_token_stops_working(
    app, start_server
):
    server = start_server(HEARTBEAT_SECONDS="1")
    staff = make_user(app, "staff", 1)

    def deactivate():
        with app.app_context(), runtime().write() as session:
            session.get(User, staff.user_id).active = False

    with SseStream(server.url, QUERY, headers=staff.headers) as stream:
        data, _, took = _ended_by(stream, deactivate)
    assert data == {"reason": "revoked"} and took < WITHIN_SECONDS
    # The server's workers forgot the principal they resolved for the token.
    answer = requests.get(f"{server.url}/api/bread_types", headers=staff.headers, timeout=10)
    assert answer.status_code == 401


def test_a_stream_token_ends_its_stream_when_it_expires(app, start_server):
    server = start_server(HEARTBEAT_SECONDS="10", STREAM_TOKEN_SECONDS="2")
    viewer = make_user(app, "viewer")
    issued = requests.post(
        f"{server.url}/api/auth/stream-token", headers=viewer.headers, timeout=10
    ).json()
    query = f"{QUERY}&access_token={issued['token']}"
    with SseStream(server.url, query, headers={"Authorization": None}) as stream:
        data, _, took = _ended_by(stream, lambda: None)
    # Ended at its expiry (2 s), not at the next heartbeat (10 s).
    assert data == {"reason": "expired"} and took < 2 + 1


def test_a_long_poll_answers_401_when_its_session_logs_out(app, start_server):
    server = start_server()
    staff = make_user(app, "staff", 1)
    headers, csrf = _sign_in(server.url, staff.username)
    answer = {}

    def wait():
        answer["response"] = requests.get(
            f"{server.url}/api/changes?{QUERY}&wait=20", headers=headers, timeout=30
        )

    waiting = threading.Thread(target=wait)
    waiting.start()
    time.sleep(0.5)
    started = time.monotonic()
    requests.post(
        f"{server.url}/api/auth/logout", headers={**headers, "X-CSRF-Token": csrf}, timeout=10
    )
    waiting.join(timeout=WITHIN_SECONDS + 5)
    response = answer["response"]
    assert time.monotonic() - started < WITHIN_SECONDS
    assert response.status_code == 401
    body = response.json()
    assert (body["error"], body["details"]["reason"]) == ("auth_expired", "logged_out")
