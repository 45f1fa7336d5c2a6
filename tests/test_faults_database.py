"""Database faults under SQLite: a write lock held by another connection, a full disk."""

import threading
import time

from .delivery_tools import changes, create_bread_types, head, next_change
from .faults.database import disk_full, lock_for
from .servers import http
from .sse import SseStream

SALE = {"quantity": 3, "unit_price": 4.0, "shift": "night"}


def post_sale(url: str, bread_type: int, pad: int = 0):
    body = SALE | {"bread_type_id": bread_type, "recorded_by": "x" * pad}
    return http(url).post(f"{url}/api/sales_logs", json=body, timeout=30)


def assert_unavailable(response) -> None:
    """A 503 with the protocol's JSON error, telling the client to retry."""
    assert response.status_code == 503, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    assert set(response.json()) >= {"error", "message", "details"}
    assert response.json()["error"] == "database_unavailable"
    assert "Retry-After" in response.headers


def assert_log_matches_table(url: str, start: int, accepted: set[int]) -> None:
    """The sales table and the log agree: one INSERT event per row, none for a refused write."""
    rows = http(url).get(f"{url}/api/sales_logs", params={"limit": 1000}, timeout=10).json()
    inserted = [e["row"]["id"] for e in changes(url, "topics=sales_logs", start)]
    assert sorted(inserted) == sorted(row["id"] for row in rows["rows"]) == sorted(accepted)


def test_a_write_lock_held_past_the_busy_timeout_is_a_503_then_writes_resume(
    start_server, database_url
):
    server = start_server(workers=1)
    (bread,) = create_bread_types(server.url, 1)
    start = head(server.url)
    accepted = {post_sale(server.url, bread).json()["row"]["id"]}
    holder = lock_for(database_url, 12)
    began = time.monotonic()
    assert_unavailable(post_sale(server.url, bread))
    # SQLite's busy timeout (10 s) decides how long a write waits before it gives up.
    assert time.monotonic() - began > 9
    holder.join(timeout=10)
    response = post_sale(server.url, bread)
    assert response.status_code == 201, response.text
    accepted.add(response.json()["row"]["id"])
    assert_log_matches_table(server.url, start, accepted)


def test_a_write_waiting_for_the_lock_freezes_nothing_else(start_server, database_url):
    # One worker: a write waiting for SQLite's lock must leave its other requests running.
    server = start_server(workers=1, HEARTBEAT_SECONDS="1")
    (bread,) = create_bread_types(server.url, 1)
    with SseStream(server.url, "topics=sales_logs", timeout=5) as stream:
        stream.until("ready")
        holder = lock_for(database_url, 4)
        waiting = threading.Thread(target=post_sale, args=(server.url, bread))
        waiting.start()
        time.sleep(0.5)
        began = time.monotonic()
        assert http(server.url).get(f"{server.url}/healthz", timeout=10).ok
        assert time.monotonic() - began < 1
        # Heartbeats go on too: the stream's next block comes within a few seconds.
        began = time.monotonic()
        stream.next()
        assert time.monotonic() - began < 2.5
        holder.join(timeout=10)
        waiting.join(timeout=10)
        # The waiting write went through once the lock was released.
        assert next_change(stream, 5)["op"] == "INSERT"


def test_a_full_disk_is_a_503_nothing_half_written_and_writes_resume(start_server, database_url):
    server = start_server(workers=1)
    (bread,) = create_bread_types(server.url, 1)
    start = head(server.url)
    accepted = set()
    refused = 0
    with disk_full(server, database_url):
        # Each write grows the WAL until it cannot; reads still answer meanwhile.
        for _ in range(200):
            response = post_sale(server.url, bread, pad=60)
            if response.status_code == 201:
                accepted.add(response.json()["row"]["id"])
                continue
            assert_unavailable(response)
            refused += 1
            if refused == 5:
                break
        assert refused == 5
        assert http(server.url).get(f"{server.url}/api/sales_logs", timeout=10).ok
        assert_log_matches_table(server.url, start, accepted)
    for _ in range(3):
        response = post_sale(server.url, bread, pad=60)
        assert response.status_code == 201, response.text
        accepted.add(response.json()["row"]["id"])
    assert_log_matches_table(server.url, start, accepted)
