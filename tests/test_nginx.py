"""Two nodes behind Debian's nginx running deploy/nginx.conf: streams unbuffered, a node's
crash or a rolling restart costs clients and writers nothing, one gapless log."""

import math
import signal
import threading
import time
from collections import Counter

import psycopg
import pytest
import requests

from .delivery_tools import (
    QUERIES,
    SHIFTS,
    Follower,
    Writer,
    Written,
    changes,
    create_bread_types,
    finish,
    follow,
    head,
    ids,
    next_change,
    sell,
    wait_for,
)
from .identities import PASSWORD
from .proxy_nodes import NODE_PORTS, Deployment, deploy
from .servers import ROOT, http, server_at
from .sse import SseStream

pytestmark = pytest.mark.postgres
# Every table the writers change.
EVERYTHING = QUERIES[0]
NODES = {f"127.0.0.1:{port}" for port in NODE_PORTS}


@pytest.fixture(scope="module")
def deployment(postgres_server, redis_server):
    """Nodes A and B on one PostgreSQL database and the suite's Redis, behind nginx."""
    started = deploy(postgres_server.create_database("nginx_nodes"), redis_server.url)
    yield started
    started.stop()


@pytest.fixture
def site(deployment) -> Deployment:
    """The deployment with both nodes up, whatever an earlier test did to them."""
    deployment.ensure_up()
    return deployment


def p99(values: list[float]) -> float:
    """Return the 99th percentile (nearest rank)."""
    return sorted(values)[math.ceil(0.99 * len(values)) - 1]


def applied_once(url: str, written: list[Written], start: int) -> None:
    """Check that the log holds each acknowledged write, and each key's write once."""
    logged = changes(url, EVERYTHING, start)
    assert {w.event for w in written} <= set(ids(logged)), "an acknowledged write was lost"
    keys = Counter(event["mutation"] for event in logged)
    assert [w.key for w in written if keys[w.key] != 1] == [], "a retried write was applied twice"


def keep_writing(writer: Writer, stop: threading.Event, failures: list) -> None:
    """Write until told to stop, recording a write that never succeeded."""
    try:
        while not stop.is_set():
            writer.step()
            time.sleep(0.02)
    except Exception as exc:  # reported by the test thread
        failures.append(exc)


def test_nginx_serves_static_files_with_cache_headers(site):
    path = "/static/tidings/feed.js"
    response = requests.get(site.url + path, timeout=10)
    assert response.status_code == 200
    assert response.content == (ROOT / path.lstrip("/")).read_bytes()
    assert response.headers["Content-Type"] == "text/javascript"
    assert response.headers["Cache-Control"] == "public, max-age=300, must-revalidate"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    again = requests.get(
        site.url + path, headers={"If-None-Match": response.headers["ETag"]}, timeout=10
    )
    assert again.status_code == 304
    # Both answers came from nginx: no node was asked.
    assert site.proxy.answered_by("GET /static/") == set()


def test_the_scheme_is_nginx_s_to_tell_not_the_client_s(site):
    # Both nodes believe X-Forwarded-Proto (PROXY_FIX_X_PROTO=1); nginx sets it from the
    # connection, so a client claiming https over plain HTTP gets no Secure cookie.
    response = requests.post(
        f"{site.url}/api/auth/login",
        json={"username": "admin", "password": PASSWORD},
        headers={"X-Forwarded-Proto": "https"},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    assert "secure" not in response.headers["Set-Cookie"].lower()


def test_a_stream_through_nginx_is_unbuffered(site):
    bread = create_bread_types(site.url, 1)[0]
    latencies = []
    with SseStream(site.url, "topics=sales_logs") as stream:
        stream.until("ready")
        for n in range(40):
            sent = time.monotonic()
            event = sell(site.url, bread, SHIFTS[n % len(SHIFTS)])
            assert next_change(stream, 5)["id"] == event
            latencies.append(time.monotonic() - sent)
    assert p99(latencies) < 1.0, f"write → event p99 {p99(latencies):.3f}s through nginx"
    assert site.proxy.answered_by("POST") == NODES


def test_a_write_on_a_reaches_b_s_clients_once_in_order(site):
    bread_types = create_bread_types(site.a.url)
    start = head(site.a.url)
    deadline = time.monotonic() + 40
    followers = follow(site.b.url, start, 3, deadline, drops=False)
    wait_for(lambda: all(f.connections for f in followers), 10, "the clients to connect")
    writer = Writer(site.a.url, bread_types, seed=1)
    writer.run(60)
    writer.close()
    finish(site.b.url, followers, start, deadline)
    assert all(f.connections == 1 for f in followers), "a client needed a reconnect"


def test_a_rolling_restart_loses_repeats_and_fails_no_write(site):
    bread_types = create_bread_types(site.url)
    start = head(site.url)
    deadline = time.monotonic() + 60
    followers = follow(site.url, start, 6, deadline)
    writers = [Writer(site.url, bread_types, seed=10 + n, retry_seconds=20) for n in range(2)]
    failures: list = []
    stop = threading.Event()
    threads = [
        threading.Thread(target=keep_writing, args=(w, stop, failures), daemon=True)
        for w in writers
    ]
    for thread in threads:
        thread.start()
    wait_for(lambda: all(len(w.written) >= 10 for w in writers), 20, "writes through nginx")
    for node in site.nodes:
        node.stop(signal.SIGTERM)
        site.bring_back(node)
    stop.set()
    for thread in threads:
        thread.join(timeout=30)
    for writer in writers:
        writer.close()
    assert failures == [], "a write never succeeded"
    written = [w for writer in writers for w in writer.written]
    applied_once(site.url, written, start)
    finish(site.url, followers, start, deadline)


class Poller(Follower):
    """A long-polling client through nginx, following `/api/changes` with `wait=`."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.http = server_at(self.url).session()

    def follow_once(self) -> None:
        response = self.http.get(
            f"{self.url}/api/changes?{self.query}",
            params={"cursor": self.last_id, "wait": 2},
            timeout=15,
        )
        assert response.status_code == 200, response.text
        body = response.json()
        self.events.extend(body["events"])
        self.last_id = str(body["cursor"])


def test_long_polls_through_nginx_deliver_each_event_once(site):
    bread_types = create_bread_types(site.url)
    start = head(site.url)
    deadline = time.monotonic() + 40
    pollers = follow(site.url, start, 4, deadline, kind=Poller)
    writer = Writer(site.url, bread_types, seed=3)
    writer.run(40, pause=0.02)
    writer.close()
    finish(site.url, pollers, start, deadline)
    assert site.proxy.answered_by("GET /api/changes") == NODES


def test_eight_writers_over_both_nodes_leave_a_gapless_log_in_commit_order(site):
    bread_types = create_bread_types(site.url)
    start = head(site.url)
    writers = [Writer(site.url, bread_types, seed=20 + n) for n in range(8)]
    threads = [threading.Thread(target=w.run, args=(15,), daemon=True) for w in writers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    for writer in writers:
        writer.close()
        assert len(writer.written) == 15, "a writer failed"
        # Each writer waits for one answer before its next write: ids follow that order.
        events = [w.event for w in writer.written]
        assert events == sorted(events)
    end = head(site.url)
    url = site.a.env["DATABASE_URL"].replace("+psycopg", "")
    with psycopg.connect(url) as conn:
        logged = [
            row[0]
            for row in conn.execute(
                "SELECT id FROM tidings_events WHERE id > %s AND id <= %s ORDER BY id",
                (start, end),
            )
        ]
    assert logged == list(range(start + 1, end + 1)), "the log has a hole"
    # Each row's versions rise by one per event, in id order.
    versions: dict[tuple, list[int]] = {}
    for event in changes(site.url, EVERYTHING, start):
        if event["op"] != "DELETE":
            versions.setdefault((event["topic"], event["pk"]), []).append(event["version"])
    for history in versions.values():
        assert history == list(range(history[0], history[0] + len(history)))
    written = {w.event for writer in writers for w in writer.written}
    assert written <= set(logged)


# Last in the file: no later test has to wait for the node it kills to start again.
def test_a_killed_node_s_clients_resume_on_the_other_and_retried_writes_apply_once(site):
    bread_types = create_bread_types(site.url)
    start = head(site.url)
    deadline = time.monotonic() + 40
    followers = follow(site.url, start, 6, deadline, drops=False)
    wait_for(lambda: all(f.connections for f in followers), 10, "the clients to connect")
    # A applies a write whose answer the client never reads: A dies first.
    feedback = {"shift": "night", "note": "answer lost", "mood": 2}
    lost = http(site.a.url).post(
        f"{site.a.url}/api/shift_feedback",
        json=feedback,
        headers={"Idempotency-Key": "answer-lost"},
        timeout=10,
    )
    assert lost.status_code == 201, lost.text
    writer = Writer(site.url, bread_types, seed=2, retry_seconds=20)
    failures: list = []
    stop = threading.Event()
    writing = threading.Thread(target=keep_writing, args=(writer, stop, failures), daemon=True)
    writing.start()
    wait_for(lambda: len(writer.written) >= 20, 20, "20 writes through nginx")
    site.a.kill()
    # The client sends it again with its key (and again while nginx answers 502 for a
    # connection to A that died under it); nginx passes it to B, which answers as A did.
    resender = Writer(site.url, bread_types, seed=3, retry_seconds=20)
    again = resender.send("POST", "/api/shift_feedback", "answer-lost", feedback)
    resender.close()
    assert (again.status_code, again.json()) == (201, lost.json())
    written_before = len(writer.written)
    wait_for(lambda: len(writer.written) >= written_before + 20, 20, "20 writes after the kill")
    stop.set()
    writing.join(timeout=30)
    writer.close()
    assert failures == []
    finish(site.url, followers, start, deadline)
    # The streams nginx had sent to A came back through it, to B.
    assert sum(f.connections > 1 for f in followers) >= 1
    lost_write = Written(
        "shift_feedback", "INSERT", lost.json()["row"]["id"], lost.json()["event"], "answer-lost"
    )
    applied_once(site.url, [*writer.written, lost_write], start)
