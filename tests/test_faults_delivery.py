"""Delivery under fire: clients through a fault proxy, workers killed, Redis frozen and
restarted, the server stopped with SIGTERM, stuck and slow consumers. One checker judges
every scenario: each client's events are the log's own answer for its subscription, read
afterwards as the same principal (`tests/faults/invariants.py`)."""

import time

import pytest

from bench.slow_clients import RssSampler

from .delivery_tools import Follower, create_bread_types, head, publish_padded, wait_for
from .faults.clients import Switcher, Writing, timed
from .faults.invariants import check_delivery
from .faults.processes import frozen, kill_worker, restart_redis, terminate_server
from .faults.proxy import FAULTS, ProxyProcess
from .identities import make_user
from .servers import http, route

# Subscriptions across topics, filters and projections; the staff ones also pass their policy.
QUERIES = (
    "topics=sales_logs,production_logs,shift_feedback,bread_types",
    "topics=sales_logs&sales_logs.shift=eq.night",
    "topics=production_logs,shift_feedback&production_logs.select=id,quantity,store_id",
    "topics=sales_logs,production_logs&sales_logs.quantity=gt.50",
)
STORES = (1, 2)


@pytest.fixture
def people(app) -> list[dict]:
    """Authorization headers of the signed-in users the clients act as: a manager, a viewer
    and staff of store 1 (who see only store 1's rows)."""
    return [
        make_user(app, "manager").headers,
        make_user(app, "viewer").headers,
        make_user(app, "staff", STORES[0]).headers,
        make_user(app, "staff", STORES[0]).headers,
    ]


def clients(url, people, start, deadline, count, *, kind=Follower, first=0, **options):
    """Start `count` clients over the queries and people, cycling through both."""
    started = [
        kind(
            url,
            QUERIES[n % len(QUERIES)],
            start,
            seed=n,
            deadline=deadline,
            headers=people[(n // len(QUERIES)) % len(people)],
            **options,
        )
        for n in range(first, first + count)
    ]
    for client in started:
        client.start()
    return started


def settle(url: str, followers: list[Follower], start: int, deadline: float) -> int:
    """Let every client reach the head, then check them all; return the events checked."""
    final = head(url)
    for follower in followers:
        follower.target = final
    for follower in followers:
        follower.join(timeout=max(0.0, deadline - time.monotonic()) + 5)
    return check_delivery(url, followers, start)


def test_streams_and_polls_through_a_fault_proxy_get_every_event_once(start_server, people):
    server = start_server(workers=2, HEARTBEAT_SECONDS="1")
    proxy = ProxyProcess(server.port)
    route(proxy.url, server)
    try:
        bread_types = create_bread_types(server.url)
        start = head(server.url)
        deadline = time.monotonic() + 100
        # The proxy's faults are the only reconnections. Short read timeouts: a silenced
        # connection is given up after 3 s, as a browser notices a stream without heartbeats.
        options = {"timeout": 3, "drops": False}
        followers = clients(proxy.url, people, start, deadline, 80, **options)
        followers += clients(
            proxy.url, people, start, deadline, 20, kind=Switcher, first=80, **options
        )
        followers += clients(
            proxy.url, people, start, deadline, 30, kind=Switcher, first=100, poll_share=1.0,
            **options,
        )  # fmt: skip
        proxy.chaos(every=0.05, seed=9)
        writing = Writing(server.url, bread_types, stores=STORES, pause=0.05)
        wait_for(lambda: writing.count() >= 180, 90, "180 writes")
        writing.stop()
        proxy.calm()
        checked = settle(server.url, followers, start, deadline)
        stats = proxy.stats()
    finally:
        proxy.stop()
    assert set(stats["faults"]) == set(FAULTS), stats
    assert checked > 5_000
    assert sum(getattr(f, "polls", 0) > 0 for f in followers) >= 40
    assert sum(f.outages > 0 for f in followers) > 50


def under_writes(server, people, streams: int, **options) -> tuple:
    """Follow a server with `streams` clients (the last 4 switching SSE and long poll) while
    writers write; return the start cursor, the deadline, the followers and the writers."""
    bread_types = create_bread_types(server.url)
    start = head(server.url)
    deadline = time.monotonic() + 90
    followers = clients(server.url, people, start, deadline, streams - 4, **options)
    followers += clients(server.url, people, start, deadline, 4, kind=Switcher, first=streams - 4)
    return start, deadline, followers, Writing(server.url, bread_types, stores=STORES)


def test_workers_killed_twice_under_writes_lose_nothing(start_server, people):
    server = start_server(workers=2, HEARTBEAT_SECONDS="1")
    start, deadline, followers, writing = under_writes(server, people, 20, drops=False)
    for index in (0, 1):
        wait_for(lambda n=index: writing.count() >= 100 * (n + 1), 30, "writes")
        kill_worker(server, index)
    wait_for(lambda: writing.count() >= 300, 30, "writes after the kills")
    writing.stop()
    settle(server.url, followers, start, deadline)
    assert sum(f.outages > 0 for f in followers) >= 5


def test_redis_frozen_then_killed_and_restarted_loses_nothing(start_server, fresh_redis, people):
    server = start_server(workers=2, redis_url=fresh_redis.url, HEARTBEAT_SECONDS="1")
    start, deadline, followers, writing = under_writes(server, people, 16)
    with frozen(fresh_redis):
        time.sleep(15)
        during = writing.count()
    restart_redis(fresh_redis, down_for=1)
    ready = lambda: http(server.url).get(f"{server.url}/readyz", timeout=10).ok  # noqa: E731
    wait_for(ready, 20, "/readyz to see Redis back")
    time.sleep(2)
    writing.stop()
    # Writes went on while Redis was frozen (its 10 s socket timeout bounds the wait).
    assert during > 20
    settle(server.url, followers, start, deadline)


def test_server_stopped_with_sigterm_and_restarted_mid_stream_loses_nothing(start_server, people):
    server = start_server(workers=2, HEARTBEAT_SECONDS="1")
    start, deadline, followers, writing = under_writes(server, people, 16, drops=False)
    wait_for(lambda: writing.count() >= 100, 30, "writes before the stop")
    terminate_server(server)
    server.start()
    wait_for(lambda: writing.count() >= 200, 30, "writes after the restart")
    writing.stop()
    settle(server.url, followers, start, deadline)
    assert all(f.outages or f.connections > 1 for f in followers)


# Events of the stuck-and-slow case: far more per client than socket buffers hold.
BIG_EVENTS = 120
ROW_CHARS = 32_000
# Worker growth allowed while lagging clients catch up (the bench measures it precisely).
RSS_GROWTH = 64 * 2**20
# Commit-to-arrival for the clients that keep up, on a loaded 2-core machine.
P99_SECONDS = 2.0


def test_stuck_and_slow_consumers_delay_no_one_and_get_everything_once(start_server, people):
    server = start_server(
        workers=1, HEARTBEAT_SECONDS="1", SUBSCRIBER_MAX_PENDING="16", TOPICS="bench"
    )
    (pid,) = server.worker_pids()
    stuck, slow = ProxyProcess(server.port), ProxyProcess(server.port)
    # Stuck: nothing read for 15 s, then everything. Slow: 200 kB/s all along, a fraction of
    # what the writes send them.
    stuck.on_connect("stall", 15)
    slow.on_connect("throttle", 200_000)
    for proxy in (stuck, slow):
        route(proxy.url, server)
    readers = people[:2]
    try:
        start = head(server.url)
        deadline = time.monotonic() + 120
        query = "topics=bench"
        normal = [
            timed(Follower(server.url, query, start, seed=n, deadline=deadline, drops=False,
                           headers=readers[n % 2]))
            for n in range(20)
        ]  # fmt: skip
        lagging = [
            Follower(proxy.url, query, start, seed=n, deadline=deadline, drops=False,
                     headers=readers[n % 2], timeout=30)
            for n in range(6)
            for proxy in (stuck, slow)
        ]  # fmt: skip
        for client in normal + lagging:
            client.start()
        sampler = RssSampler(pid)
        publish_padded(server, BIG_EVENTS, ROW_CHARS, pause=0.02)
        try:
            settle(server.url, normal + lagging, start, deadline)
        finally:
            sampler.stop()
    finally:
        stuck.stop()
        slow.stop()
    latencies = sorted(lat for client in normal for lat in client.events.latencies())
    assert latencies[int(len(latencies) * 0.99)] < P99_SECONDS, latencies[-10:]
    assert max(sampler.samples) - sampler.samples[0] < RSS_GROWTH
