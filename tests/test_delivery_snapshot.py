"""A snapshot and its cursor are consistent: snapshot, then stream from its cursor, rebuilds
the table exactly, under concurrent writes."""

import threading
import time

from .delivery_tools import Follower, create_bread_types, head, run_writers
from .servers import http

# (snapshot filter, the same filter as a stream subscription)
VIEWS = (("", ""), ("shift=eq.morning", "&sales_logs.shift=eq.morning"))


def snapshot(url: str, filters: str) -> tuple[dict[int, dict], int]:
    """Return the rows of a sales_logs snapshot by id, and its cursor."""
    response = http(url).get(f"{url}/api/sales_logs?{filters}", params={"limit": 10000}, timeout=10)
    assert response.status_code == 200, response.text
    body = response.json()
    assert int(response.headers["X-Cursor"]) == body["cursor"]
    return {row["id"]: row for row in body["rows"]}, body["cursor"]


def apply(rows: dict[int, dict], events: list[dict]) -> dict[int, dict]:
    """Apply changes to snapshot rows by primary key, refusing any that do not fit."""
    rows = dict(rows)
    for event in events:
        pk, op = event["pk"], event["op"]
        if op == "INSERT":
            assert pk not in rows, f"event {event['id']} inserts row {pk} twice"
            rows[pk] = event["row"]
        elif op == "UPDATE":
            assert pk in rows, f"event {event['id']} updates missing row {pk}"
            assert rows[pk]["version"] == event["version"] - 1, f"event {event['id']} skips"
            rows[pk] = event["row"]
        else:
            assert rows.pop(pk, None) is not None, f"event {event['id']} deletes missing {pk}"
    return rows


def test_snapshot_then_stream_from_its_cursor_rebuilds_the_table(start_server):
    server = start_server(workers=2, HEARTBEAT_SECONDS="1")
    bread_types = create_bread_types(server.url)
    writing = threading.Thread(
        target=run_writers,
        args=(server.url, bread_types, 800),
        kwargs={"tables": ("sales_logs", "production_logs"), "pause": 0.003},
        daemon=True,
    )
    writing.start()
    deadline = time.monotonic() + 60
    taken = []
    # Snapshots at two moments while the writers run, each followed by a stream.
    for moment in (0.7, 1.5):
        time.sleep(moment)
        assert writing.is_alive(), "the writers finished before the snapshots"
        for filters, stream_filters in VIEWS:
            rows, cursor = snapshot(server.url, filters)
            follower = Follower(
                server.url,
                f"topics=sales_logs{stream_filters}",
                cursor,
                seed=len(taken),
                deadline=deadline,
            )
            follower.start()
            taken.append((filters, rows, follower))
    writing.join(timeout=60)
    assert not writing.is_alive()
    final = head(server.url)
    for _, _, follower in taken:
        follower.target = final
    for filters, rows, follower in taken:
        follower.join(timeout=max(0.0, deadline - time.monotonic()) + 5)
        assert follower.error is None, repr(follower.error)
        assert follower.done(), f"stream stopped at {follower.last_id} of {final}"
        assert follower.events, "no change reached the stream"
        rebuilt = apply(rows, follower.events)
        expected, _ = snapshot(server.url, filters)
        assert rebuilt == expected, filters
