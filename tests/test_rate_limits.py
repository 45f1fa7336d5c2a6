"""Rate limits: bursts over each limit, sharing across workers, recovery, open streams, sign-in
attempts, callers refused before they are counted, and the per-process fallback while Redis
is down."""

import http.client
import itertools
import signal
import threading
import time

import orjson
import psutil
import pytest
import redis
import requests
from flask import g
from limits import parse

from app import create_app
from blueprints.limiter import Limiter, Slot, storage_uri
from blueprints.ratelimit import principal_key
from feed.embedded import EmbeddedRedis
from feed.pipeliner import COMMAND_CONNECTIONS, REDIS_WAIT_SECONDS
from feed.principal import NOBODY, Principal
from identity.sessions import COOKIE

from .api_helpers import assert_error, log_head
from .delivery_tools import wait_for
from .identities import PASSWORD, bearer_client, make_user
from .monitor_tools import figures, metric_values
from .servers import GENEROUS_LIMITS
from .sse import SseStream


@pytest.fixture
def limited_app(app, database_url, redis_server):
    """Build apps with some limits tightened, as more workers of the `app` fixture's: its
    database (stores, admin), Redis and channel; all are closed after."""
    made = []

    def make(redis_url: str | None = None, **limits):
        limited = create_app(
            {
                "TESTING": True,
                "SQLALCHEMY_DATABASE_URI": database_url,
                "REDIS_URL": redis_url or redis_server.url,
                "FEED_CHANNEL": app.config["FEED_CHANNEL"],
                **GENEROUS_LIMITS,
                **limits,
            }
        )
        made.append(limited)
        return limited

    yield make
    for limited in made:
        limited.extensions["tidings"].close()
        limited.extensions["tidings_limits"].close()


def bread(n: int) -> dict:
    return {"name": f"bread-{n}", "price": 3}


def assert_limited(response, limit: str, most_seconds: int) -> int:
    """Assert a 429 rate_limited with Retry-After equal to details.retry_after; return it.

    Takes a test client's response or a real server's (requests)."""
    if isinstance(response, requests.Response):
        assert response.status_code == 429, response.text
        body = response.json()
        assert body["error"] == "rate_limited" and body["message"]
    else:
        body = assert_error(response, 429, "rate_limited")
    seconds = int(response.headers["Retry-After"])
    assert body["details"] == {"limit": limit, "retry_after": seconds}
    assert 1 <= seconds <= most_seconds
    return seconds


def fill_writes(client, count: int) -> None:
    """Make `count` writes, all accepted: a limit of that many is then used up."""
    statuses = [client.post("/api/bread_types", json=bread(n)).status_code for n in range(count)]
    assert statuses == [201] * count


def test_writes_over_the_limit_get_429_and_change_nothing(limited_app, admin):
    app = limited_app(RATE_LIMIT_WRITES="3/minute")
    client = bearer_client(app, admin)
    fill_writes(client, 3)
    head = log_head(app)
    assert_limited(client.post("/api/bread_types", json=bread(3)), "3 per 1 minute", 60)
    assert_limited(client.delete("/api/bread_types/1"), "3 per 1 minute", 60)
    assert log_head(app) == head
    assert client.get("/api/bread_types").status_code == 200
    assert len(client.get("/api/bread_types").get_json()["rows"]) == 3


def test_every_write_route_counts(limited_app, admin):
    app = limited_app(RATE_LIMIT_WRITES="4/minute", TOPICS=["alerts"])
    client = bearer_client(app, admin)
    row = client.post("/api/bread_types", json=bread(0)).get_json()["row"]
    assert client.patch(f"/api/bread_types/{row['id']}", json={"price": 4}).status_code == 200
    assert client.post("/api/publish", json={"topic": "alerts", "data": 1}).status_code == 201
    presence = {"client": "tab-1", "name": "Ana", "state": "here"}
    assert client.post("/presence", json=presence).status_code == 201
    assert_limited(client.delete(f"/api/bread_types/{row['id']}"), "4 per 1 minute", 60)
    assert_limited(client.post("/presence", json=presence), "4 per 1 minute", 60)


def test_a_batch_counts_one_write_per_op(limited_app, admin):
    app = limited_app(RATE_LIMIT_WRITES="5/minute")
    client = bearer_client(app, admin)

    def batch(count: int, start: int):
        ops = [
            {"method": "POST", "table": "bread_types", "row": bread(n)}
            for n in range(start, start + count)
        ]
        return client.post("/api/batch", json={"ops": ops})

    assert batch(3, 0).status_code == 200
    head = log_head(app)
    assert_limited(batch(3, 3), "5 per 1 minute", 60)
    assert log_head(app) == head
    assert [r["status"] for r in batch(2, 6).get_json()["results"]] == [201, 201]
    assert_limited(client.post("/api/bread_types", json=bread(9)), "5 per 1 minute", 60)
    # One that no window could ever hold is bad input, not a wait.
    body = assert_error(batch(6, 10), 400, "batch_too_large")
    assert body["details"] == {"ops": 6, "max_ops": 5, "limit": "5 per 1 minute"}


def test_polls_and_stream_opens_have_their_own_limits(limited_app, admin):
    app = limited_app(RATE_LIMIT_POLLS="2/minute", RATE_LIMIT_STREAMS="2/minute")
    client = bearer_client(app, admin)
    assert [client.get("/api/changes?topics=bread_types").status_code for _ in range(2)] == [
        200
    ] * 2
    assert_limited(client.get("/api/changes?topics=bread_types"), "2 per 1 minute", 60)
    for _ in range(2):
        stream = client.get("/stream?topics=bread_types", buffered=False)
        assert stream.status_code == 200
        stream.close()
    assert_limited(client.get("/stream?topics=bread_types"), "2 per 1 minute", 60)
    # Writes are counted apart.
    assert client.post("/api/bread_types", json=bread(0)).status_code == 201


def test_a_limit_recovers_after_its_window(limited_app, admin):
    app = limited_app(RATE_LIMIT_WRITES="3/second")
    client = bearer_client(app, admin)
    fill_writes(client, 3)
    seconds = assert_limited(client.post("/api/bread_types", json=bread(3)), "3 per 1 second", 1)
    time.sleep(seconds + 0.05)
    assert client.post("/api/bread_types", json=bread(4)).status_code == 201


def test_principals_are_counted_apart(limited_app, admin):
    app = limited_app(RATE_LIMIT_WRITES="2/minute")
    # Two users on one address.
    here = bearer_client(app, admin)
    there = bearer_client(app, make_user(app, "manager"))
    assert [here.post("/api/bread_types", json=bread(n)).status_code for n in range(2)] == [201] * 2
    assert_limited(here.post("/api/bread_types", json=bread(2)), "2 per 1 minute", 60)
    assert there.post("/api/bread_types", json=bread(3)).status_code == 201


def test_signed_in_principals_count_as_themselves_whatever_their_address(limited_app, admin):
    app = limited_app(RATE_LIMIT_WRITES="2/minute")
    manager = make_user(app, "manager")
    names = itertools.count()

    def write(address: str, identity):
        client = bearer_client(app, identity)
        client.environ_base["REMOTE_ADDR"] = address
        return client.post("/api/bread_types", json=bread(next(names)))

    assert [write(f"10.0.4.{n}", manager).status_code for n in range(2)] == [201] * 2
    assert_limited(write("10.0.4.9", manager), "2 per 1 minute", 60)
    # Another user on the same address is counted apart.
    assert write("10.0.4.9", admin).status_code == 201
    with app.test_request_context(environ_base={"REMOTE_ADDR": "10.0.4.1"}):
        assert principal_key() == "addr:10.0.4.1"
        g.principal = NOBODY
        assert principal_key() == "addr:10.0.4.1"
        g.principal = Principal(user_id=7)
        assert principal_key() == "user:7"


def limit_keys(app) -> list[bytes]:
    """Return every Redis key an app's limits hold: counts and open-stream slots."""
    probe = redis.Redis.from_url(app.config["REDIS_URL"])
    try:
        return probe.keys(f"{app.config['FEED_CHANNEL']}:limits:*")
    finally:
        probe.close()


def test_callers_refused_by_sign_in_are_not_counted_and_open_no_stream_slot(limited_app, admin):
    app = limited_app(
        RATE_LIMIT_WRITES="2/minute",
        RATE_LIMIT_POLLS="2/minute",
        RATE_LIMIT_STREAMS="2/minute",
        MAX_STREAMS="1",
    )
    nobody = app.test_client()
    forged = app.test_client()
    forged.environ_base["HTTP_AUTHORIZATION"] = "Bearer not-a-token"
    # Past every limit: each is a 401 (never a 429), counted against no address and no user.
    for caller in (nobody, forged):
        for _ in range(3):
            assert_error(caller.post("/api/bread_types", json=bread(0)), 401, "unauthenticated")
            assert_error(caller.get("/api/changes?topics=bread_types"), 401, "unauthenticated")
            assert_error(caller.get("/stream?topics=bread_types"), 401, "unauthenticated")
    assert limit_keys(app) == []
    # The admin, on the same address, has every limit whole.
    client = bearer_client(app, admin)
    assert [client.post("/api/bread_types", json=bread(n)).status_code for n in range(2)] == [
        201
    ] * 2
    assert [client.get("/api/changes?topics=bread_types").status_code for _ in range(2)] == [
        200
    ] * 2
    held = client.get("/stream?topics=bread_types", buffered=False)
    try:
        assert held.status_code == 200
        assert_limited(client.get("/stream?topics=bread_types"), "1 open streams", 60)
    finally:
        held.close()


def test_a_forged_browser_write_costs_its_user_nothing(limited_app, admin):
    app = limited_app(RATE_LIMIT_WRITES="2/minute")
    browser = app.test_client()
    signed_in = browser.post(
        "/api/auth/login", json={"username": admin.username, "password": PASSWORD}
    )
    assert signed_in.status_code == 200 and browser.get_cookie(COOKIE) is not None
    csrf = {"X-CSRF-Token": signed_in.get_json()["csrf_token"]}
    # A cross-site page can make the browser send its cookie, never the CSRF token.
    for n in range(3):
        assert_error(browser.post("/api/bread_types", json=bread(n)), 403, "csrf_failed")
    statuses = [
        browser.post("/api/bread_types", json=bread(n), headers=csrf).status_code
        for n in range(3, 5)
    ]
    assert statuses == [201] * 2
    assert_limited(
        browser.post("/api/bread_types", json=bread(5), headers=csrf), "2 per 1 minute", 60
    )


def attempt(app, address: str, username: str, password: str = "nope", **headers):
    """Post a sign-in from an address; return the response."""
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = address
    body = {"username": username, "password": password}
    return client.post("/api/auth/login", json=body, headers=headers)


def test_sign_in_attempts_count_per_username_and_per_address(limited_app, admin):
    app = limited_app(RATE_LIMIT_LOGINS="3/minute")
    ana = make_user(app, "staff", store_id=1, name="ana")
    ben = make_user(app, "viewer", name="ben")
    # One username from different addresses.
    for n in range(3):
        assert_error(attempt(app, f"10.0.1.{n}", "ana"), 401, "invalid_credentials")
    # Refused before the password is checked: the right one is no way past.
    assert_limited(attempt(app, "10.0.1.9", ana.username, PASSWORD), "3 per 1 minute", 60)
    assert_limited(attempt(app, "10.0.1.9", " ANA "), "3 per 1 minute", 60)
    # One address with different usernames: nobody is counted by address.
    for n in range(3):
        assert_error(attempt(app, "10.0.2.1", f"user-{n}"), 401, "invalid_credentials")
    assert_limited(attempt(app, "10.0.2.1", ben.username, PASSWORD), "3 per 1 minute", 60)
    # Anyone else still signs in.
    assert attempt(app, "10.0.3.1", ben.username, PASSWORD).status_code == 200
    refused = figures_of(bearer_client(app, admin))["rate_limits"]["refused"]
    assert refused["logins"] == 3


def test_sign_in_attempts_count_per_forwarded_address_only_behind_a_trusted_proxy(limited_app):
    def via_proxy(app, forwarded_for: str, username: str):
        return attempt(app, "10.0.0.1", username, **{"X-Forwarded-For": forwarded_for})

    # Both apps share one namespace: each part signs in with usernames of its own.
    proxied = limited_app(RATE_LIMIT_LOGINS="2/minute", PROXY_FIX_X_FOR=1)
    for n in range(2):
        assert_error(via_proxy(proxied, "10.0.5.1", f"p-{n}"), 401, "invalid_credentials")
    assert_limited(via_proxy(proxied, "10.0.5.1", "p-9"), "2 per 1 minute", 60)
    # Another client behind the same proxy has its own count.
    assert_error(via_proxy(proxied, "10.0.5.2", "p-8"), 401, "invalid_credentials")
    # Untrusted, the header is anyone's to send: changing it gets no more attempts.
    direct = limited_app(RATE_LIMIT_LOGINS="2/minute")
    for n in range(2):
        assert_error(via_proxy(direct, f"10.0.6.{n}", f"d-{n}"), 401, "invalid_credentials")
    assert_limited(via_proxy(direct, "10.0.6.9", "d-9"), "2 per 1 minute", 60)


def test_a_publish_token_server_is_counted_by_address_wrong_tokens_too(limited_app):
    app = limited_app(RATE_LIMIT_WRITES="2/minute", PUBLISH_TOKEN="publisher-secret")

    def publish(address: str, token: str):
        client = app.test_client()
        client.environ_base["REMOTE_ADDR"] = address
        headers = {"Authorization": f"Bearer {token}"}
        return client.post("/api/publish", json={"topic": "presence", "data": 1}, headers=headers)

    for _ in range(2):
        assert_error(publish("10.0.7.1", "guess"), 401, "unauthorized")
    assert_limited(publish("10.0.7.1", "publisher-secret"), "2 per 1 minute", 60)
    assert publish("10.0.7.2", "publisher-secret").status_code == 201


def figures_of(client) -> dict:
    """Return /monitor.json of an in-process app, asked by a signed-in client."""
    response = client.get("/monitor.json")
    assert response.status_code == 200
    return response.get_json()


def test_a_unix_socket_redis_url_is_shared_storage(limited_app, admin, tmp_path):
    assert storage_uri("unix:///run/redis.sock") == "redis+unix:///run/redis.sock"
    assert storage_uri("redis://10.0.0.2:6379/1") == "redis://10.0.0.2:6379/1"
    server = EmbeddedRedis(tmp_path / "unix-redis")
    server.start()
    try:
        assert server.url.startswith("unix://")
        app = limited_app(redis_url=server.url, RATE_LIMIT_WRITES="1/minute")
        client = bearer_client(app, admin)
        assert client.post("/api/bread_types", json=bread(0)).status_code == 201
        assert_limited(client.post("/api/bread_types", json=bread(1)), "1 per 1 minute", 60)
        probe = redis.Redis.from_url(server.url)
        try:
            assert probe.keys("*:limits:rate:*writes*")
        finally:
            probe.close()
        assert figures_of(client)["rate_limits"] == {
            "shared": True,
            "refused": {"writes": 1} | zeros(),
        }
    finally:
        server.stop()


def zeros() -> dict:
    return {"streams": 0, "polls": 0, "logins": 0, "open_streams": 0}


@pytest.fixture
def workers(redis_server, tmp_path):
    """Build limiters sharing one namespace, as a node's workers do, with short leases."""
    made = []

    def make(max_streams: int) -> Limiter:
        limiter = Limiter(
            redis_server.url,
            {},
            max_streams,
            namespace=f"tidings:test:{tmp_path.name}",
            on_storage=lambda shared: None,
            lease_seconds=0.5,
        )
        made.append(limiter)
        return limiter

    yield make
    for limiter in made:
        limiter.close()


def test_a_dead_workers_stream_slots_lapse(workers):
    dead, alive = workers(2), workers(2)
    assert all(isinstance(dead.open_stream("user:1"), Slot) for _ in range(2))
    refused = alive.open_stream("user:1")
    assert (refused.kind, refused.limit) == ("open_streams", "2 open streams")
    # The dead one never renews its leases.
    time.sleep(0.6)
    slot = alive.open_stream("user:1")
    assert isinstance(slot, Slot)
    alive.close_stream(slot)


def test_requests_waiting_for_a_pooled_connection_still_count_in_redis(workers):
    limiter = workers(1)
    limiter.rates["writes"] = parse("100/minute")
    # Every pooled connection is busy with another request's round trip, for longer than
    # Redis itself may take to answer.
    pool = limiter.pipeliner.client.connection_pool
    busy = [pool.get_connection() for _ in range(COMMAND_CONNECTIONS)]
    outcome = []
    waiting = threading.Thread(target=lambda: outcome.append(limiter.hit("writes", "user:3")))
    waiting.start()
    time.sleep(REDIS_WAIT_SECONDS * 2)
    pool.release(busy.pop())
    waiting.join(5)
    for connection in busy:
        pool.release(connection)
    assert outcome == [None]
    assert limiter.shared
    # Counted in Redis, where the node's other workers see it.
    other = workers(1)
    other.rates["writes"] = parse("100/minute")
    stats = other._shared.get_window_stats(other.rates["writes"], "writes", "user:3")
    assert stats.remaining == 99


def test_open_stream_leases_are_renewed_and_put_back_in_a_redis_that_lost_them(
    workers, redis_server, tmp_path
):
    holder, other = workers(1), workers(1)
    slot = holder.open_stream("user:2")
    assert isinstance(slot, Slot)
    time.sleep(0.3)
    holder.refresh()
    time.sleep(0.3)
    assert not isinstance(other.open_stream("user:2"), Slot)
    # As a restarted Redis would: the slot is gone, and the next renewal puts it back.
    probe = redis.Redis.from_url(redis_server.url)
    try:
        assert probe.delete(f"tidings:test:{tmp_path.name}:streams:user:2") == 1
        taken = other.open_stream("user:2")
        assert isinstance(taken, Slot)
        other.close_stream(taken)
        holder.refresh()
        assert not isinstance(other.open_stream("user:2"), Slot)
    finally:
        probe.close()
    holder.close_stream(slot)
    assert isinstance(other.open_stream("user:2"), Slot)


# Real servers


def worker_of(server, connection: http.client.HTTPConnection) -> int:
    """Return the pid of the worker that accepted a client connection."""
    port = connection.sock.getsockname()[1]
    for pid in server.worker_pids():
        for c in psutil.Process(pid).net_connections(kind="tcp"):
            if c.raddr and c.raddr.port == port:
                return pid
    raise AssertionError("no worker holds the connection")


def connections_on_both_workers(server) -> list[http.client.HTTPConnection]:
    """Open keep-alive connections until each of the two workers holds at least two."""
    connections: list[http.client.HTTPConnection] = []
    held: dict[int, int] = {}
    while len(held) < 2 or min(held.values()) < 2:
        assert len(connections) < 60, "the connections all went to one worker"
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        connection.request("GET", "/healthz")
        connection.getresponse().read()
        pid = worker_of(server, connection)
        held[pid] = held.get(pid, 0) + 1
        connections.append(connection)
    return connections


def post(
    connection: http.client.HTTPConnection, path: str, body: dict, token: str
) -> tuple[int, dict]:
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
    connection.request("POST", path, orjson.dumps(body), headers)
    response = connection.getresponse()
    return response.status, orjson.loads(response.read())


def test_workers_share_one_count(start_server, tmp_path):
    server = start_server(
        workers=2, RATE_LIMIT_WRITES="10/minute", FEED_CHANNEL=f"tidings:{tmp_path.name}"
    )
    connections = connections_on_both_workers(server)
    try:
        answers = [
            post(connections[n % len(connections)], "/api/bread_types", bread(n), server.token)
            for n in range(16)
        ]
    finally:
        for connection in connections:
            connection.close()
    statuses = [status for status, _ in answers]
    assert statuses == [201] * 10 + [429] * 6
    assert all(body["details"]["limit"] == "10 per 1 minute" for _, body in answers[10:])
    shown = figures(server.url)["rate_limits"]
    assert shown == {"shared": True, "refused": {"writes": 6} | zeros()}
    values = metric_values(server.url)
    assert values["tidings_rate_limited_total{kind=writes}"] == 6
    assert values["tidings_rate_limits_shared{}"] == 1


def test_open_streams_are_capped_across_workers_and_a_closed_one_frees_its_slot(
    start_server, tmp_path
):
    # A namespace of its own: earlier tests' stopped servers may leave leased slots behind.
    server = start_server(
        workers=2, MAX_STREAMS="3", HEARTBEAT_SECONDS="0.2", FEED_CHANNEL=f"tidings:{tmp_path.name}"
    )
    streams = [SseStream(server.url, "topics=bread_types") for _ in range(2)]
    try:
        # Refused on the way (a bad subscription), a stream gives its slot back at once.
        for _ in range(2):
            bad = server.http.get(f"{server.url}/stream?topics=nope", timeout=10)
            assert bad.status_code == 400
        streams.append(SseStream(server.url, "topics=bread_types"))
        for stream in streams:
            stream.until("ready")
        refused = server.http.get(f"{server.url}/stream?topics=bread_types", timeout=10)
        assert_limited(refused, "3 open streams", 60)
        streams.pop().close()

        def reopened() -> bool:
            try:
                streams.append(SseStream(server.url, "topics=bread_types"))
                return True
            except requests.HTTPError as error:
                assert_limited(error.response, "3 open streams", 60)
                error.response.close()
                return False

        wait_for(reopened, 10, "the closed stream's slot to free")
        assert figures(server.url)["rate_limits"]["refused"]["open_streams"] >= 1
    finally:
        for stream in streams:
            stream.close()


def test_writes_go_on_while_redis_is_down_limited_per_process(start_server, fresh_redis):
    server = start_server(workers=1, redis_url=fresh_redis.url, RATE_LIMIT_WRITES="4/minute")
    assert figures(server.url)["rate_limits"]["shared"] is True
    assert server.http.post(f"{server.url}/api/bread_types", json=bread(0), timeout=10).ok
    fresh_redis.kill()
    # Counted afresh in the worker's memory: four more pass, the fifth does not.
    statuses = [
        server.http.post(f"{server.url}/api/bread_types", json=bread(n), timeout=10).status_code
        for n in range(1, 6)
    ]
    assert statuses == [201] * 4 + [429]
    assert figures(server.url)["rate_limits"]["shared"] is False
    assert metric_values(server.url)["tidings_rate_limits_shared{}"] == 0
    fresh_redis.start()
    wait_for(
        lambda: figures(server.url)["rate_limits"]["shared"], 10, "the limits to be shared again"
    )
    probe = redis.Redis.from_url(fresh_redis.url, socket_timeout=10)
    try:
        assert not probe.keys("*:limits:rate:*")
        assert server.http.post(f"{server.url}/api/bread_types", json=bread(9), timeout=10).ok
        assert probe.keys("*:limits:rate:*writes*")
    finally:
        probe.close()


def test_a_stalled_redis_adds_no_wait_to_writes(start_server, fresh_redis):
    server = start_server(workers=1, redis_url=fresh_redis.url)
    url = f"{server.url}/api/bread_types"
    assert server.http.post(url, json=bread(0), timeout=10).ok
    fresh_redis.process.send_signal(signal.SIGSTOP)
    try:
        # The write that finds Redis frozen waits for it once; the limiter then counts here.
        assert server.http.post(url, json=bread(1), timeout=10).ok
        started = time.monotonic()
        for n in range(2, 12):
            assert server.http.post(url, json=bread(n), timeout=10).status_code == 201
        # Ten writes that each waited for Redis would take at least ten of its timeouts.
        assert time.monotonic() - started < 10 * REDIS_WAIT_SECONDS
    finally:
        fresh_redis.process.send_signal(signal.SIGCONT)
