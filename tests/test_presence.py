"""Presence from the server on a real gunicorn with 2 workers and a real Redis: the roster
shows who has a stream open, and the `presence` topic carries one join per user's first
stream and one leave after their last, whichever workers hold them."""

import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack

import pytest

from feed import writes
from feed.presence import Presence
from feed.principal import Principal

from .delivery_tools import SALE, create_bread_types
from .identities import make_user
from .sse import SseStream

# A watcher's stream; heartbeats every second keep its reads short.
WATCH = "topics=presence"
SETTINGS = {"workers": 2, "HEARTBEAT_SECONDS": "1"}


@pytest.fixture
def server(start_server):
    # A channel of its own: user ids repeat between tests, and Redis outlives them.
    return start_server(**SETTINGS, FEED_CHANNEL=f"tidings:{uuid.uuid4().hex}")


def roster(server, identity, query: str = "") -> dict:
    """Read GET /api/presence as a user."""
    response = server.http.get(
        f"{server.url}/api/presence{query}", headers=identity.headers, timeout=10
    )
    assert response.status_code == 200, response.text
    return response.json()


def listed(server, identity, username: str, query: str = "") -> dict | None:
    """Return a user's roster entry, or None."""
    users = roster(server, identity, query)["users"]
    return next((user for user in users if user["username"] == username), None)


def presence_events(watcher: SseStream, username: str, seconds: float) -> Iterator[dict]:
    """Yield a user's join and leave events as the watcher gets them, for some seconds."""
    deadline = time.monotonic() + seconds
    for block in watcher.blocks:
        if block.event == "change":
            row = block.json()["row"]
            if row.get("user", {}).get("username") == username:
                yield row
        if time.monotonic() > deadline:
            return
    raise AssertionError("the watcher's stream ended")


def presence_of(watcher: SseStream, username: str, seconds: float) -> list[dict]:
    """Collect a user's join and leave events the watcher gets for some seconds."""
    return list(presence_events(watcher, username, seconds))


def next_presence(watcher: SseStream, username: str, seconds: float) -> dict:
    """Return a user's next join or leave event, failing if none comes within some seconds."""
    for row in presence_events(watcher, username, seconds):
        return row
    raise AssertionError(f"no presence event of {username} within {seconds} s")


def opened(stack: ExitStack, server, identity, query: str = "topics=sales_logs") -> SseStream:
    """Open a user's stream, read to ready, and have the stack close it."""
    stream = stack.enter_context(SseStream(server.url, query, headers=identity.headers))
    stream.until("ready")
    return stream


def test_two_users_streams_show_in_the_roster_with_role_and_since(app, server):
    ana, bo, reader = make_user(app, "manager"), make_user(app, "viewer"), make_user(app, "viewer")
    with ExitStack() as stack:
        opened(stack, server, ana, "topics=sales_logs,bread_types")
        opened(stack, server, bo, "topics=presence")
        seen = roster(server, reader)
        users = {user["username"]: user for user in seen["users"]}
        assert users[ana.username]["role"] == "manager"
        assert users[ana.username]["topics"] == ["bread_types", "sales_logs"]
        assert users[bo.username]["role"] == "viewer"
        assert users[bo.username]["topics"] == ["presence"]
        assert users[ana.username]["since"].endswith("Z")
        assert isinstance(seen["cursor"], int)
        # Narrowed to a topic: only who is on it.
        assert listed(server, reader, ana.username, "?topics=bread_types") is not None
        assert listed(server, reader, bo.username, "?topics=bread_types") is None


def test_one_join_for_many_streams_and_a_leave_after_the_last(app, server):
    staff, watcher = make_user(app, "staff", 1), make_user(app, "viewer")
    with SseStream(server.url, WATCH, headers=watcher.headers) as watch, ExitStack() as outer:
        watch.until("ready")
        first = opened(outer, server, staff)
        with ExitStack() as inner:
            # More streams than workers: some land on each, and none joins again.
            for _ in range(3):
                opened(inner, server, staff)
            events = presence_of(watch, staff.username, 2)
            assert [event["state"] for event in events] == ["join"]
            [join] = events
            user = {"id": staff.user_id, "username": staff.username, "role": "staff"}
            assert join["user"] == user
            assert join["topics"] == ["sales_logs"]
            assert listed(server, watcher, staff.username)["since"] == join["since"]
        # Three closed, one still open: no leave.
        assert presence_of(watch, staff.username, 2) == []
        assert listed(server, watcher, staff.username) is not None
        first.close()
        leave = next_presence(watch, staff.username, 4)
        assert leave["state"] == "leave" and leave["since"] == join["since"]
        # One leave only.
        assert presence_of(watch, staff.username, 2) == []
        assert listed(server, watcher, staff.username) is None


def test_the_roster_cursor_follows_with_join_and_leave_events(app, server):
    ana, reader = make_user(app, "admin"), make_user(app, "staff", 2)
    cursor = roster(server, reader)["cursor"]
    with ExitStack() as stack:
        opened(stack, server, ana)
    with SseStream(server.url, WATCH, last_event_id=str(cursor), headers=reader.headers) as watch:
        # Replayed or live: the leave follows once the server finds the stream gone.
        states = [event["state"] for event in presence_of(watch, ana.username, 3)]
    assert states == ["join", "leave"]


def test_nobody_publishes_presence_through_the_api(app, server):
    staff = make_user(app, "staff", 1)
    body = {"topic": "presence", "data": {"state": "join", "user": {"username": "ana"}}}
    for identity in (staff, make_user(app, "admin")):
        refused = server.http.post(
            f"{server.url}/api/publish", json=body, headers=identity.headers, timeout=10
        )
        assert refused.status_code == 403 and refused.json()["error"] == "forbidden"
    unsigned = server.http.get(
        f"{server.url}/api/presence", headers={"Authorization": None}, timeout=10
    )
    assert unsigned.status_code == 401 and unsigned.json()["error"] == "unauthenticated"


def test_a_dead_worker_s_users_leave_once_its_lease_lapses(app, start_server):
    channel = f"tidings:{uuid.uuid4().hex}"
    server = start_server(**SETTINGS, FEED_CHANNEL=channel, PRESENCE_LEASE_SECONDS="3")
    ghost, watcher = make_user(app, "viewer"), make_user(app, "viewer")
    rt = app.extensions["tidings"]
    # A worker of this process that holds a stream, then dies: it never renews nor releases.
    dead = Presence(
        app.config["REDIS_URL"],
        channel,
        lambda data: writes.publish(rt, "presence", data),
        app.app_context,
        lease_seconds=3,
    )
    try:
        with SseStream(server.url, WATCH, headers=watcher.headers) as watch:
            watch.until("ready")
            principal = Principal(user_id=ghost.user_id, username=ghost.username, role="viewer")
            dead.opened(principal, ("sales_logs",))
            assert listed(server, watcher, ghost.username)["topics"] == ["sales_logs"]
            # The server's workers sweep it after the 3 s lease: one leave, from one of them.
            states = [event["state"] for event in presence_of(watch, ghost.username, 7)]
        assert states == ["join", "leave"]
        assert listed(server, watcher, ghost.username) is None
    finally:
        dead.close()


def test_while_redis_is_down_streams_go_on_and_presence_comes_back(app, start_server, fresh_redis):
    server = start_server(
        **SETTINGS, redis_url=fresh_redis.url, PRESENCE_LEASE_SECONDS="3", FEED_CHANNEL="t:down"
    )
    staff, reader = make_user(app, "staff", 1), make_user(app, "viewer")
    fresh_redis.kill()
    with ExitStack() as stack:
        stream = opened(stack, server, staff)
        down = server.http.get(f"{server.url}/api/presence", headers=reader.headers, timeout=10)
        assert down.status_code == 503 and down.json()["error"] == "presence_unavailable"
        # Writes and the open stream carry on.
        breads = create_bread_types(server.url)
        sale = SALE | {"bread_type_id": breads[0], "shift": "morning", "store_id": 1}
        sold = server.http.post(f"{server.url}/api/sales_logs", json=sale, timeout=10)
        assert sold.status_code == 201, sold.text
        assert stream.until("change")[-1].json()["id"] == sold.json()["event"]
        fresh_redis.start()
        # The next renewal (every second here) puts the open stream back.
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline:
            answer = server.http.get(
                f"{server.url}/api/presence", headers=reader.headers, timeout=10
            )
            users = answer.json()["users"] if answer.status_code == 200 else []
            if any(user["username"] == staff.username for user in users):
                break
            time.sleep(0.5)
        else:
            raise AssertionError("the open stream was not back in the roster within 8 s")


def test_a_stream_closed_inside_a_write_transaction_never_waits_for_it(app):
    """A dropped stream may be finalized by the garbage collector in any greenlet, even one
    holding the write lock: its close only queues the release, and the leave follows."""
    rt = app.extensions["tidings"]
    channel = f"tidings:{uuid.uuid4().hex}"
    presence = Presence(
        app.config["REDIS_URL"],
        channel,
        lambda data: writes.publish(rt, "presence", data),
        app.app_context,
    )
    user = make_user(app, "viewer")
    principal = Principal(user_id=user.user_id, username=user.username, role="viewer")
    try:
        entry = presence.opened(principal, ("sales_logs",))
        closed = threading.Event()

        def close_inside_a_write():
            with app.app_context(), rt.transactions.write():
                presence.closed(entry)
            closed.set()

        threading.Thread(target=close_inside_a_write, daemon=True).start()
        assert closed.wait(5), "closing the stream waited on the write it was closed in"
        with app.app_context(), rt.read() as conn:
            head = rt.log.head(conn)
        presence.work(time.monotonic() + 5)
        with app.app_context(), rt.read() as conn:
            leave = rt.log.read(conn, head, topics=["presence"])
        assert [event.data["row"]["state"] for event in leave] == ["leave"]
    finally:
        presence.close()
