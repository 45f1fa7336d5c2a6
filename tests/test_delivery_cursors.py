"""Cursors at the edges: heartbeats move them, expired and future ones get a reset, long
polls wake on the first match, and vanished clients leave nothing behind."""

import threading
import time

import gevent
import orjson
import psutil
import redis
from werkzeug.datastructures import MultiDict

from feed.delivery import poll
from feed.filters import parse_subscription
from feed.log import epoch_of, first_id
from feed.pipeliner import COMMAND_CONNECTIONS

from .delivery_tools import (
    SALE,
    RawStream,
    create_bread_types,
    head,
    ids,
    next_change,
    run_writers,
    sell,
    wait_for,
)
from .sse import SseStream


def test_heartbeats_advance_the_cursor_of_a_subscriber_nothing_matches(start_server):
    server = start_server(workers=2, HEARTBEAT_SECONDS="1")
    bread_types = create_bread_types(server.url)
    query = "topics=sales_logs&sales_logs.quantity=lt.0"
    writing = threading.Thread(
        target=run_writers,
        args=(server.url, bread_types, 80),
        kwargs={"tables": ("sales_logs",), "pause": 0.04},
        daemon=True,
    )
    beats: list[int] = []
    final = None
    with SseStream(server.url, query) as stream:
        start = stream.until("ready")[-1].json()["cursor"]
        writing.start()
        deadline = time.monotonic() + 30
        while final is None or beats[-1] < final:
            assert time.monotonic() < deadline, "heartbeats did not reach the head"
            block = stream.next()
            assert (block.event, block.data) == (None, None), "only heartbeats were due"
            beats.append(int(block.id))
            if final is None and not writing.is_alive():
                final = head(server.url)
    assert final > start + 80
    assert beats == sorted(beats)
    # The cursor rose while the writes went on, not only once they were over.
    assert any(start < beat < final for beat in beats), beats
    # Resuming from the last heartbeat replays nothing.
    with SseStream(server.url, query, last_event_id=str(beats[-1])) as stream:
        opening = stream.until("ready")
        assert [b.event for b in opening] == [None, "ready"]
        assert opening[-1].json()["replayed"] == 0
        assert opening[-1].json()["cursor"] >= final


def test_expired_cursor_gets_a_reset_on_the_stream_and_410_on_poll(start_server):
    server = start_server(
        workers=2, HEARTBEAT_SECONDS="1", RETENTION_EVENTS="5", PRUNE_SECONDS="0.2"
    )
    bread_types = create_bread_types(server.url)
    run_writers(server.url, bread_types, 30, tables=("sales_logs",))
    query = "topics=sales_logs&sales_logs.shift=eq.morning"
    # The log's first event: retention prunes it.
    first = first_id(epoch_of(head(server.url))) + 1

    def expired() -> bool:
        polled = server.http.get(f"{server.url}/api/changes?{query}&cursor={first}", timeout=10)
        return polled.status_code == 410

    wait_for(expired, 10, "retention to prune the log")
    before = head(server.url)
    polled = server.http.get(f"{server.url}/api/changes?{query}&cursor={first}", timeout=10)
    assert polled.status_code == 410
    body = polled.json()
    assert body["error"] == "cursor_expired"
    # The log keeps moving by itself (the monitor publishes), so cursors are compared
    # with the head read just before.
    assert body["reset"]["reason"] == "expired"
    assert body["reset"]["cursor"] >= before
    assert body["reset"]["snapshot"] == "/api/sales_logs?shift=eq.morning"
    with SseStream(server.url, query, last_event_id=str(first)) as stream:
        opening = stream.until("ready")
        assert [b.event for b in opening] == [None, "reset", "ready"]
        reset = opening[1].json()
        assert reset["reason"] == "expired"
        assert reset["snapshot"] == body["reset"]["snapshot"]
        assert int(opening[1].id) == reset["cursor"] >= body["reset"]["cursor"]
        assert opening[-1].json()["replayed"] == 0
        # It goes on live from the reset's cursor.
        event = sell(server.url, bread_types[0], "morning")
        assert next_change(stream, 10)["id"] == event


def test_future_cursor_gets_a_reset_for_another_epoch(start_server):
    server = start_server(workers=1, HEARTBEAT_SECONDS="1")
    bread_types = create_bread_types(server.url)
    current = head(server.url)
    query = "topics=sales_logs,bread_types"
    with SseStream(server.url, f"{query}&cursor={current + 1000}") as stream:
        opening = stream.until("ready")
        assert [b.event for b in opening] == [None, "reset", "ready"]
        assert opening[1].json()["reason"] == "epoch"
        assert opening[1].json()["cursor"] >= current
        event = sell(server.url, bread_types[0], "night")
        assert next_change(stream, 10)["id"] == event
    polled = server.http.get(
        f"{server.url}/api/changes?{query}", params={"cursor": current + 1000}, timeout=10
    )
    assert polled.status_code == 410
    assert polled.json()["reset"]["reason"] == "epoch"


def test_long_poll_answers_on_the_first_matching_commit_or_empty_after_the_wait(start_server):
    server = start_server(workers=2)
    bread_types = create_bread_types(server.url)
    query = "topics=sales_logs&sales_logs.shift=eq.night"
    cursor = head(server.url)
    answer: dict = {}

    def long_poll() -> None:
        began = time.monotonic()
        response = server.http.get(
            f"{server.url}/api/changes?{query}", params={"cursor": cursor, "wait": 5}, timeout=15
        )
        answer.update(response=response, seconds=time.monotonic() - began)

    waiting = threading.Thread(target=long_poll, daemon=True)
    waiting.start()
    time.sleep(0.5)
    sell(server.url, bread_types[0], "morning")
    time.sleep(0.5)
    assert waiting.is_alive(), "a sale the poll does not match ended its wait"
    night = sell(server.url, bread_types[1], "night")
    waiting.join(timeout=10)
    response = answer["response"]
    assert response.status_code == 200
    assert ids(response.json()["events"]) == [night]
    assert response.json()["cursor"] == night
    assert answer["seconds"] < 4, "the poll waited past the matching commit"

    # Nothing matching within the wait: an empty answer whose cursor moved past what
    # was committed meanwhile.
    writing = threading.Thread(target=sell, args=(server.url, bread_types[0], "morning"))
    began = time.monotonic()
    writing.start()
    response = server.http.get(
        f"{server.url}/api/changes?{query}", params={"cursor": night, "wait": 1.5}, timeout=15
    )
    seconds = time.monotonic() - began
    writing.join(timeout=10)
    assert response.status_code == 200
    assert response.json()["events"] == []
    assert seconds >= 1.5
    assert response.json()["cursor"] > night


def test_long_poll_still_wakes_after_late_news_of_events_it_had(app, client):
    # Events at or below a poll's cursor can reach a hub after the poll started waiting
    # (a commit on another worker, a listener catching up). They must not make the poll
    # deaf to the next matching event.
    feed = app.extensions["tidings"]
    bread = client.post("/api/bread_types", json={"name": "Rye", "price": 5}).get_json()["row"]

    def sell_here() -> int:
        body = SALE | {"bread_type_id": bread["id"], "shift": "night"}
        return client.post("/api/sales_logs", json=body).get_json()["event"]

    def logged(after: int):
        with feed.read() as conn:
            return feed.log.read(conn, after)

    cursor = max(sell_here() for _ in range(3))
    subscription = parse_subscription(
        MultiDict({"topics": "sales_logs"}), feed.tables, feed.custom_topics
    )
    fresh: list[int] = []

    def deliver_late_then_new() -> None:
        gevent.sleep(0.1)
        feed.relay.ingest(logged(0))
        gevent.sleep(0.2)
        fresh.append(sell_here())
        feed.relay.ingest(logged(cursor))

    delivering = gevent.spawn(deliver_late_then_new)
    began = time.monotonic()
    with app.app_context():
        answer = poll(feed, subscription, cursor, 100, wait=3)
    seconds = time.monotonic() - began
    delivering.join(timeout=5)
    assert delivering.successful()
    assert ids(orjson.loads(orjson.dumps(answer))["events"]) == fresh
    assert seconds < 1.5, "the poll slept through the matching event"


def test_vanished_stream_clients_leave_nothing_behind(start_server, fresh_redis):
    server = start_server(workers=2, redis_url=fresh_redis.url, HEARTBEAT_SECONDS="1")
    master = psutil.Process(server.process.pid)
    # The server answers as soon as one worker is up; the other may still be booting.
    workers = wait_for(lambda: len(master.children()) == 2 and master.children(), 10, "2 workers")
    create_bread_types(server.url)

    def open_files() -> int:
        """Count what the workers hold open but their pools: connections to Redis (bounded
        below) and the database's files (each pooled SQLite connection opens the database,
        its WAL and shared memory; pools grow in a burst of openings, and keep what grew)."""
        return sum(
            worker.num_fds() - redis_clients(worker) - len(worker.open_files())
            for worker in workers
        )

    def redis_clients(worker: psutil.Process) -> int:
        return sum(
            1
            for c in worker.net_connections(kind="tcp")
            if c.raddr and c.raddr.port == fresh_redis.port
        )

    def stream_sockets() -> int:
        return sum(
            1
            for worker in workers
            for c in worker.net_connections(kind="tcp")
            if c.laddr.port == server.port and c.status != psutil.CONN_LISTEN
        )

    quiet = open_files()
    queries = ("topics=sales_logs", "topics=bread_types,sales_logs&sales_logs.shift=eq.night")
    streams = [RawStream(server.url, queries[n % 2] + "&cursor=0") for n in range(60)]
    for stream in streams:
        assert any(block.event == "ready" for block in stream.blocks)

    def open_streams() -> int:
        figures = server.http.get(f"{server.url}/monitor.json", timeout=10).json()
        return figures["connections"]["total"]

    wait_for(lambda: stream_sockets() == 60, 10, "the server to hold 60 streams")
    wait_for(lambda: open_streams() == 60, 10, "the monitor to count 60 streams")
    assert all(redis_clients(worker) <= 1 + COMMAND_CONNECTIONS for worker in workers)
    # Half vanish abruptly (reset), half close without a goodbye and never read again.
    for n, stream in enumerate(streams):
        stream.close(reset=n % 2 == 0)
    # A reset socket leaves /proc/net/tcp at once, so open files are counted too.
    wait_for(
        lambda: stream_sockets() == 0 and open_files() <= quiet,
        10,
        f"the server to let go of vanished streams (quiet: {quiet} files)",
        lambda: f"{stream_sockets()} stream sockets, {open_files()} files",
    )
    wait_for(lambda: open_streams() == 0, 10, "the monitor to count no open stream")
    assert all(redis_clients(worker) <= 1 + COMMAND_CONNECTIONS for worker in workers)
    probe = redis.Redis.from_url(fresh_redis.url, socket_timeout=10)
    try:
        # Two listeners and each worker's bounded pool of commands, whatever came and went.
        assert len(probe.client_list()) - 1 <= 2 * (1 + COMMAND_CONNECTIONS)
        assert sum(int(c["sub"]) > 0 for c in probe.client_list()) == 2
    finally:
        probe.close()


def test_a_log_recreated_under_a_running_server_resets_its_streams(app, start_server):
    from feed import runtime

    server = start_server(HEARTBEAT_SECONDS="1", RELAY_SECONDS="0.2")
    create_bread_types(server.url)
    before = head(server.url)
    with SseStream(server.url, "topics=bread_types") as stream:
        stream.until("ready")
        # The events table starts over, as after restoring or recreating the database.
        with app.app_context(), runtime().write() as session:
            session.execute(runtime().log.table.delete())
        deadline = time.monotonic() + 10
        # Heartbeats arrive every second, so the deadline is checked while waiting.
        reset = next(b for b in stream.blocks if b.event == "reset" or time.monotonic() > deadline)
        assert reset.event == "reset", "no reset within 10 s of the log starting over"
        assert reset.json()["reason"] == "epoch"
        # The emptied log goes on in a new epoch: the old one's cursors are another log's.
        assert int(reset.id) == reset.json()["cursor"]
        assert epoch_of(reset.json()["cursor"]) != epoch_of(before)
        created = server.http.post(
            f"{server.url}/api/bread_types", json={"name": "Fresh", "price": 4}, timeout=10
        ).json()
        change = next_change(stream, timeout=10)
        assert change["id"] == created["event"]
        assert change["row"] == created["row"]


def test_polls_page_by_limit_with_more_and_the_last_returned_id(client):
    start = client.get("/api/changes?topics=bread_types").get_json()["cursor"]
    written = [
        client.post("/api/bread_types", json={"name": f"B{n}", "price": 3}).get_json()["event"]
        for n in range(5)
    ]
    pages, cursor = [], start
    while True:
        page = client.get(f"/api/changes?topics=bread_types&cursor={cursor}&limit=2").get_json()
        pages.append([event["id"] for event in page["events"]])
        if not page["more"]:
            break
        # A full page says there may be more, and moves the cursor to its last event.
        assert len(page["events"]) == 2 and page["cursor"] == page["events"][-1]["id"]
        cursor = page["cursor"]
    assert [event_id for page in pages for event_id in page] == written
    assert [len(page) for page in pages] == [2, 2, 1]
