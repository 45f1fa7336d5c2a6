"""Failures lose nothing: Redis going away, several servers, a crash between commit and
publish."""

import signal
import threading
import time

import redis
import requests

from app import create_app
from models import SalesLog

from .delivery_tools import (
    QUERIES,
    Writer,
    changes,
    create_bread_types,
    finish,
    follow,
    head,
    ids,
    next_change,
    run_writers,
    sell,
    wait_for,
)
from .servers import free_port, http
from .sse import SseStream


def ready_status(url: str) -> int:
    """Return the status of /readyz."""
    return http(url).get(f"{url}/readyz", timeout=10).status_code


def test_redis_outage_loses_nothing_and_the_live_path_comes_back(start_server, fresh_redis):
    channel = "tidings:outage"
    server = start_server(
        workers=2, redis_url=fresh_redis.url, HEARTBEAT_SECONDS="1", FEED_CHANNEL=channel
    )
    bread_types = create_bread_types(server.url)
    start = head(server.url)
    deadline = time.monotonic() + 90
    followers = follow(server.url, start, 9, deadline)
    run_writers(server.url, bread_types, 150)

    fresh_redis.kill()
    wait_for(lambda: ready_status(server.url) == 503, 10, "/readyz to report Redis down")
    # Writes still succeed, and every client still gets them, from the log.
    run_writers(server.url, bread_types, 150)
    outage_head = head(server.url)
    wait_for(
        lambda: all(int(f.last_id) >= outage_head for f in followers),
        20,
        "the clients to receive what was written while Redis was down",
    )
    assert ready_status(server.url) == 503

    fresh_redis.start()
    wait_for(lambda: ready_status(server.url) == 200, 15, "/readyz to recover")
    probe = redis.Redis.from_url(fresh_redis.url, socket_timeout=10)
    try:
        # Each worker holds its one subscription again...
        wait_for(
            lambda: sum(int(c["sub"]) > 0 for c in probe.client_list()) == 2,
            15,
            "both workers to subscribe again",
        )
        # ...and writes are published on the channel again, by themselves.
        pubsub = probe.pubsub(ignore_subscribe_messages=True)
        pubsub.subscribe(channel)
        writer = Writer(server.url, bread_types, seed=99)

        def published() -> bool:
            writer.step()
            return pubsub.get_message(timeout=0.5) is not None

        wait_for(published, 15, "a write to be published on Redis again")
        after = run_writers(server.url, bread_types, 150)
        writer.close()
        seen: set[int] = set()
        wanted = {w.event for w in after}

        def all_published() -> bool:
            while (message := pubsub.get_message(timeout=0.2)) is not None:
                seen.add(int(message["data"].split(b'"id":', 1)[1].split(b",", 1)[0]))
            return wanted <= seen

        wait_for(all_published, 15, "every later write to go through Redis")
        pubsub.close()
    finally:
        probe.close()
    finish(server.url, followers, start, deadline)


def test_a_stalled_redis_delays_nothing_and_the_live_path_comes_back(start_server, fresh_redis):
    # Frozen rather than dead: connections stay open and nothing answers, longer than
    # the client's socket timeout (10 s), as in a stalled host or a long fork.
    channel = "tidings:stall"
    server = start_server(
        workers=1, redis_url=fresh_redis.url, HEARTBEAT_SECONDS="1", FEED_CHANNEL=channel
    )
    bread_types = create_bread_types(server.url)
    start = head(server.url)
    deadline = time.monotonic() + 60
    followers = follow(server.url, start, 3, deadline)
    fresh_redis.process.send_signal(signal.SIGSTOP)
    stalled_at = time.monotonic()
    try:
        run_writers(server.url, bread_types, 40, pause=0.02)
        stalled_head = head(server.url)
        wait_for(
            lambda: all(int(f.last_id) >= stalled_head for f in followers),
            8,
            "the clients to receive what was written while Redis stalled",
        )
        # Let the publisher's wait on Redis run out.
        time.sleep(max(0.0, stalled_at + 11 - time.monotonic()))
    finally:
        fresh_redis.process.send_signal(signal.SIGCONT)
    probe = redis.Redis.from_url(fresh_redis.url, socket_timeout=10)
    pubsub = probe.pubsub(ignore_subscribe_messages=True)
    try:
        pubsub.subscribe(channel)
        writer = Writer(server.url, bread_types, seed=7)

        def published() -> bool:
            writer.step()
            return pubsub.get_message(timeout=0.5) is not None

        wait_for(published, 10, "writes to be published on Redis again")
        writer.close()
    finally:
        pubsub.close()
        probe.close()
    finish(server.url, followers, start, deadline)


def test_writes_on_one_server_reach_streams_on_another(start_server):
    # The relay is slowed down so that only Redis can carry events between the servers.
    node_a = start_server(workers=1, HEARTBEAT_SECONDS="1", RELAY_SECONDS="120")
    node_b = start_server(workers=1, HEARTBEAT_SECONDS="1", RELAY_SECONDS="120")
    bread_types = create_bread_types(node_a.url)
    start = head(node_a.url)
    deadline = time.monotonic() + 40
    followers = follow(node_a.url, start, 3, deadline, drops=False) + follow(
        node_b.url, start, 3, deadline, drops=False
    )
    # Each client sees its server's ready before anything is written, so no replay helps.
    wait_for(lambda: all(f.connections for f in followers), 10, "the clients to connect")
    time.sleep(0.5)
    writers = [
        threading.Thread(target=run_writers, args=(node.url, bread_types, 100), daemon=True)
        for node in (node_a, node_b)
    ]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(timeout=60)
    for follower in followers:
        assert follower.connections == 1
    finish(node_a.url, followers, start, deadline)
    assert all(f.connections == 1 for f in followers), "a client needed a reconnect"


def test_events_committed_but_never_published_reach_subscribers(start_server, database_url):
    server = start_server(workers=2, HEARTBEAT_SECONDS="1")
    bread_types = create_bread_types(server.url)
    start = head(server.url)
    deadline = time.monotonic() + 40
    followers = follow(server.url, start, 6, deadline)
    # Another process commits to the same database and cannot publish: its Redis does
    # not exist, exactly like a process that died between commit and publish.
    script = create_app(
        {"SQLALCHEMY_DATABASE_URI": database_url, "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}
    )
    with script.app_context():
        feed = script.extensions["tidings"]
        for n in range(40):
            with feed.write() as session:
                sale = SalesLog(
                    bread_type_id=bread_types[n % len(bread_types)],
                    quantity=n + 1,
                    unit_price=2.5,
                    shift=("morning", "night")[n % 2],
                    recorded_by="script",
                )
                session.add(sale)
            if n % 3 == 0:
                with feed.write() as session:
                    session.get(SalesLog, sale.id).shift = "night"
        assert feed.bus.published == 0
        feed.close()
    assert head(server.url) > start + 40
    finish(server.url, followers, start, deadline)


def test_a_server_killed_mid_writes_loses_no_committed_event(start_server):
    writing_node = start_server(workers=1, HEARTBEAT_SECONDS="1")
    reading_node = start_server(workers=2, HEARTBEAT_SECONDS="1")
    bread_types = create_bread_types(reading_node.url)
    start = head(reading_node.url)
    deadline = time.monotonic() + 40
    readers = follow(reading_node.url, start, 4, deadline)
    # These lose their server and come back to it once it is restarted.
    stranded = follow(writing_node.url, start, 3, deadline)
    writers = [Writer(writing_node.url, bread_types, seed=n) for n in range(4)]

    def write_until_killed(writer: Writer) -> None:
        try:
            while True:
                writer.step()
        except (requests.ConnectionError, requests.Timeout):
            return

    threads = [threading.Thread(target=write_until_killed, args=(w,), daemon=True) for w in writers]
    for thread in threads:
        thread.start()
    wait_for(lambda: sum(len(w.written) for w in writers) >= 300, 30, "300 acknowledged writes")
    writing_node.kill()
    for thread in threads:
        thread.join(timeout=10)
        assert not thread.is_alive()
    acknowledged = {w.event for writer in writers for w in writer.written}
    everything = changes(reading_node.url, QUERIES[0], start)
    assert acknowledged <= set(ids(everything))
    writing_node.restart()
    finish(reading_node.url, readers + stranded, start, deadline)
    assert all(f.outages for f in stranded)
    assert changes(writing_node.url, QUERIES[0], start) == everything


def test_a_malformed_message_on_the_channel_does_not_stop_the_listener(start_server, redis_server):
    # One worker and a slowed relay: only this worker's one subscription brings events.
    channel = "tidings:malformed"
    server = start_server(
        workers=1, HEARTBEAT_SECONDS="1", RELAY_SECONDS="120", FEED_CHANNEL=channel
    )
    bread_types = create_bread_types(server.url)
    probe = redis.Redis.from_url(redis_server.url, socket_timeout=10)
    try:
        with SseStream(server.url, "topics=sales_logs") as stream:
            stream.until("ready")
            # Whatever else shares the channel (another app, an older version) may send
            # anything; each reaches the one subscriber.
            for garbage in (b"not json", b'{"no": "id"}', b"[1, 2]", b'{"id": "x"}'):
                assert probe.publish(channel, garbage) == 1
            event = sell(server.url, bread_types[0], "morning")
            assert next_change(stream, 10)["id"] == event
    finally:
        probe.close()
