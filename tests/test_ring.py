"""The ring and the log give the same replay: a server that saw the events answers
reconnecting streams and polls from memory — streams of one subscription replaying together
sharing its pages — a server started after them from the log, and both answers are the same,
for every kind of subscription."""

from contextlib import ExitStack

from .delivery_tools import QUERIES, changes, create_bread_types, head, run_writers, wait_for
from .monitor_tools import metric_values
from .sse import SseStream

# The followers' subscriptions, and filters whose rows come and go (UPDATE transitions).
SUBSCRIPTIONS = (
    *QUERIES,
    "topics=production_logs,shift_feedback&production_logs.quantity=gte.50"
    "&shift_feedback.mood=in.(4,5)",
    "topics=sales_logs,bread_types&sales_logs.select=id,quantity&bread_types.active=is.true",
)


def replayed(url: str, query: str, cursor: int) -> list[dict]:
    """Return the change events a stream resuming from the cursor replays before `ready`."""
    with SseStream(url, query, last_event_id=str(cursor)) as stream:
        return [block.json() for block in stream.until("ready") if block.event == "change"]


def reads(url: str, source: str) -> float:
    return metric_values(url).get(f"tidings_replay_reads_total{{source={source}}}", 0.0)


def test_the_ring_and_the_log_give_the_same_replay(start_server):
    remembering = start_server(workers=1, HEARTBEAT_SECONDS="1", RING_EVENTS="4096")
    breads = create_bread_types(remembering.url)
    start = head(remembering.url)
    run_writers(remembering.url, breads, 300)
    # This one's ring begins at the head when it starts: everything before is the log's.
    reading = start_server(workers=1, HEARTBEAT_SECONDS="1")
    middle = start + (head(remembering.url) - start) // 2
    ring_before = reads(remembering.url, "ring")
    with ExitStack() as held:
        # An open stream of each subscription keeps the hub's shared copy of it: the replays
        # after it share their pages.
        for query in SUBSCRIPTIONS:
            held.enter_context(SseStream(remembering.url, query)).until("ready")
        for query in SUBSCRIPTIONS:
            for cursor in (start, middle):
                from_ring = changes(remembering.url, query, cursor)
                assert from_ring == changes(reading.url, query, cursor), query
                assert replayed(remembering.url, query, cursor) == from_ring, query
                assert replayed(remembering.url, query, cursor) == from_ring, query
                assert replayed(reading.url, query, cursor) == from_ring, query
    assert all(changes(remembering.url, query, start) for query in SUBSCRIPTIONS)
    # The remembering server answered from memory, the other from the log.
    wait_for(
        lambda: reads(remembering.url, "ring") - ring_before >= 4 * len(SUBSCRIPTIONS),
        5,
        "the ring's reads to be counted",
    )
    assert reads(reading.url, "log") >= 4 * len(SUBSCRIPTIONS)
    assert reads(reading.url, "ring") == 0


def test_a_cursor_older_than_the_ring_is_read_from_the_log(start_server):
    server = start_server(workers=1, HEARTBEAT_SECONDS="1", RING_EVENTS="10")
    breads = create_bread_types(server.url)
    start = head(server.url)
    written = run_writers(server.url, breads, 60)
    query = QUERIES[0]
    everything = changes(server.url, query, start)
    assert [e["id"] for e in everything] == [w.event for w in written]
    assert replayed(server.url, query, start) == everything


def test_streams_reconnecting_within_the_ring_read_nothing_from_the_database(start_server):
    server = start_server(workers=1, MONITOR_SECONDS="0")
    breads = create_bread_types(server.url)
    start = head(server.url)
    run_writers(server.url, breads, 40)
    expected = changes(server.url, "topics=sales_logs", start)
    before = metric_values(server.url).get("tidings_read_transactions_total{}", 0.0)
    for _ in range(20):
        assert replayed(server.url, "topics=sales_logs", start) == expected
    # Counted within a second; the /metrics reads themselves begin none.
    wait_for(
        lambda: metric_values(server.url).get("tidings_replay_reads_total{source=ring}", 0) >= 20,
        5,
        "the ring's reads to be counted",
    )
    after = metric_values(server.url).get("tidings_read_transactions_total{}", 0.0)
    # Each reconnect's access check may be remembered or not; its replay never reads the log.
    assert after - before < 20
