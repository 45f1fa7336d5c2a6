"""Exactly once, in log order: many reconnecting clients, transport switches, slow readers."""

import random
import threading
import time

from .delivery_tools import (
    Follower,
    RawStream,
    changes,
    create_bread_types,
    finish,
    head,
    ids,
    run_writers,
    wait_for,
)
from .sse import SseStream

# Subscriptions of the 50 clients: plain topic sets, row filters (with their UPDATE
# transitions) and projections.
QUERIES = (
    "topics=sales_logs",
    "topics=production_logs,sales_logs",
    "topics=shift_feedback,bread_types,production_logs",
    "topics=sales_logs&sales_logs.shift=eq.morning",
    "topics=production_logs,shift_feedback&production_logs.quantity=gte.50&shift_feedback.mood=in.(4,5)",
    "topics=sales_logs,bread_types&sales_logs.select=id,quantity,shift&bread_types.active=is.true",
    "topics=production_logs,sales_logs,shift_feedback,bread_types",
    "topics=sales_logs&sales_logs.quantity=lt.20&sales_logs.shift=neq.night",
)


def test_fifty_reconnecting_clients_see_every_event_once_in_order(start_server):
    server = start_server(workers=2, HEARTBEAT_SECONDS="1")
    bread_types = create_bread_types(server.url)
    start = head(server.url)
    deadline = time.monotonic() + 90
    followers = [
        Follower(server.url, QUERIES[n % len(QUERIES)], start, seed=n, deadline=deadline)
        for n in range(50)
    ]
    for follower in followers:
        follower.start()
    written = run_writers(server.url, bread_types, total=2000, threads=2)
    final = finish(server.url, followers, start, deadline)
    # Writes also append events of their own (the audit log), so the head is at or past
    # the last acknowledged event.
    assert final >= written[-1].event
    assert all(follower.connections > 1 for follower in followers)
    # The log holds exactly what the writers were told, in the same order.
    everything = changes(server.url, QUERIES[6], start)
    assert ids(everything) == [w.event for w in written]
    assert [(e["topic"], e["op"], e["pk"]) for e in everything] == [
        (w.table, w.op, w.pk) for w in written
    ]


def test_switching_sse_poll_sse_mid_stream_delivers_each_event_once(start_server):
    server = start_server(workers=2, HEARTBEAT_SECONDS="1")
    bread_types = create_bread_types(server.url)
    start = head(server.url)
    query = "topics=sales_logs,production_logs&sales_logs.shift=in.(morning,night)"
    writing = threading.Thread(
        target=run_writers,
        args=(server.url, bread_types, 600),
        kwargs={"tables": ("sales_logs", "production_logs"), "pause": 0.005},
        daemon=True,
    )
    writing.start()
    rng = random.Random(7)
    received: list[dict] = []
    cursor, switches = start, 0
    deadline = time.monotonic() + 60
    while writing.is_alive() or cursor < head(server.url):
        assert time.monotonic() < deadline, "the switching client did not catch up"
        # SSE, resuming from the poll's cursor (as header or as query parameter).
        header, param = (str(cursor), "") if switches % 2 else (None, f"&cursor={cursor}")
        with SseStream(server.url, query + param, last_event_id=header) as stream:
            for block in stream.until("ready"):
                assert block.event != "reset"
                if block.event == "change":
                    received.append(block.json())
                    cursor = int(block.id)
            for _ in range(rng.randint(1, 60)):
                block = stream.next()
                if block.event == "change":
                    received.append(block.json())
                if block.id is not None:
                    cursor = int(block.id)
                if not writing.is_alive() or time.monotonic() > deadline:
                    break
        # Poll, from the stream's cursor.
        for _ in range(rng.randint(1, 4)):
            polled = server.http.get(
                f"{server.url}/api/changes?{query}",
                params={"cursor": cursor, "limit": rng.randint(1, 40), "wait": 0.5},
                timeout=10,
            )
            assert polled.status_code == 200, polled.text
            received.extend(polled.json()["events"])
            cursor = polled.json()["cursor"]
        switches += 1
    assert switches > 3
    expected = changes(server.url, query, start)
    assert ids(received) == ids(expected)
    assert received == expected


def test_slow_client_delays_nobody_and_still_gets_every_event_once(start_server):
    server = start_server(
        workers=1, HEARTBEAT_SECONDS="1", SUBSCRIBER_MAX_PENDING="16", TOPICS="bulk"
    )
    bread_types = create_bread_types(server.url)
    start = head(server.url)
    query = "topics=bulk,sales_logs,production_logs"
    slow = RawStream(server.url, f"{query}&cursor={start}")
    deadline = time.monotonic() + 60
    fast = [
        Follower(server.url, query, start, seed=n, deadline=deadline, drops=False) for n in range(3)
    ]
    for follower in fast:
        follower.start()
    # Big custom events: far more than the socket buffers of the slow client can hold.
    bulk_bytes = 150 * 64_000

    def publish_bulk() -> None:
        with server.session() as http:
            for n in range(150):
                body = {"topic": "bulk", "data": {"n": n, "pad": "x" * 64_000}}
                response = http.post(f"{server.url}/api/publish", json=body, timeout=30)
                assert response.status_code == 201, response.text

    publisher = threading.Thread(target=publish_bulk, daemon=True)
    publisher.start()
    run_writers(server.url, bread_types, 2000, tables=("sales_logs", "production_logs"))
    publisher.join(timeout=60)
    assert not publisher.is_alive()
    final = head(server.url)
    for follower in fast:
        follower.target = final
    # The fast clients finish while the slow one has still not read a byte.
    for follower in fast:
        follower.join(timeout=20)
    expected = changes(server.url, query, start)
    for follower in fast:
        assert follower.error is None, repr(follower.error)
        assert follower.done(), f"a fast client stopped at {follower.last_id} of {final}"
        assert follower.events == expected
    assert slow.received == 0
    # Now the slow client reads: everything, once, in order.
    slow_events, last_id = [], start
    reading_until = time.monotonic() + 30
    while last_id < final:
        assert time.monotonic() < reading_until, f"the slow client stopped at {last_id}"
        block = next(slow.blocks)
        if block.event == "change":
            slow_events.append(block.json())
        if block.id is not None:
            last_id = int(block.id)
    slow.close()
    assert slow.received > bulk_bytes
    assert ids(slow_events) == ids(expected)
    assert slow_events == expected

    # Queues overflowed and were caught up from the log, rather than growing.
    def catch_ups() -> int:
        figures = server.http.get(f"{server.url}/monitor.json", timeout=10).json()
        return figures["counters"]["slow_consumer_catch_ups"]

    wait_for(catch_ups, 10, "the monitor to count catch-ups from the log")
