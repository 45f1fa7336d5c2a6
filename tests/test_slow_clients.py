"""Stuck and slow clients among normal ones: nobody misses anything, memory stays bounded."""

import threading
import time

from bench.slow_clients import RssSampler

from .delivery_tools import Follower, RawStream, changes, head, publish_padded, wait_for

# Events and their size: each client's share is far more than its socket buffers hold
# (the kernel's send buffer alone takes up to 4 MiB).
EVENTS = 150
ROW_CHARS = 64_000
# A generous bound on the worker's growth (the bench measures it precisely): ~8 MiB here
# with pages bounded by bytes, 65-80 MiB when a stalled stream held a 500-event page.
RSS_GROWTH = 32 * 2**20
# Changes of three rows a stuck reader misses: more than its socket buffers hold.
CHANGES = 150


class Reader(threading.Thread):
    """Read a RawStream's change events, pausing after each block while `pause` is set."""

    def __init__(self, raw: RawStream, start: int, pause: float):
        super().__init__(daemon=True)
        self.raw, self.last_id, self.pause = raw, start, pause
        self.events: list[dict] = []
        self.target: int | None = None
        self.error: Exception | None = None

    def run(self) -> None:
        try:
            while self.target is None or self.last_id < self.target:
                block = next(self.raw.blocks)
                if block.event == "change":
                    self.events.append(block.json())
                if block.id is not None:
                    self.last_id = int(block.id)
                if self.target is None:
                    time.sleep(self.pause)
        except Exception as exc:
            self.error = exc


def test_stuck_and_slow_clients_cost_bounded_memory_and_miss_nothing(start_server):
    server = start_server(
        workers=1, HEARTBEAT_SECONDS="1", SUBSCRIBER_MAX_PENDING="16", TOPICS="bench"
    )
    (pid,) = server.worker_pids()
    start = head(server.url)
    query = "topics=bench"
    deadline = time.monotonic() + 90
    normal = [
        Follower(server.url, query, start, seed=n, deadline=deadline, drops=False)
        for n in range(10)
    ]
    stuck = [RawStream(server.url, f"{query}&cursor={start}", timeout=30) for _ in range(4)]
    slow = [
        Reader(RawStream(server.url, f"{query}&cursor={start}", timeout=30), start, 0.05)
        for _ in range(4)
    ]
    for client in (*normal, *slow):
        client.start()

    def fanout() -> dict:
        return server.http.get(f"{server.url}/monitor.json", timeout=10).json()["fanout"]

    # Caught up, every stream is written to with its group: the stuck ones' short sends
    # and the heartbeats happen amid the group's writes.
    everyone = len(normal) + len(stuck) + len(slow)
    wait_for(lambda: fanout() == {"groups": 1, "members": everyone}, 15, "one group of all")
    sampler = RssSampler(pid)
    publish_padded(server, EVENTS, ROW_CHARS)
    final = head(server.url)
    for follower in normal:
        follower.target = final
    for follower in normal:
        follower.join(timeout=30)
    sampler.stop()
    expected = changes(server.url, query, start)
    assert len(expected) == EVENTS
    for follower in normal:
        assert follower.error is None, repr(follower.error)
        assert follower.events == expected
    # The stuck ones have not read a byte yet; now they and the slow ones read it all.
    assert all(raw.received == 0 for raw in stuck)
    lagging = slow + [Reader(raw, start, 0) for raw in stuck]
    for reader in lagging:
        reader.target = final
    for reader in lagging[len(slow) :]:
        reader.start()
    for reader in lagging:
        reader.join(timeout=60)
        reader.raw.close()
        assert reader.error is None, repr(reader.error)
        assert reader.events == expected

    # Queues overflowed and were caught up from the log.
    def catch_ups() -> int:
        figures = server.http.get(f"{server.url}/monitor.json", timeout=10).json()
        return figures["counters"]["slow_consumer_catch_ups"]

    wait_for(catch_ups, 10, "the monitor to count catch-ups from the log")
    assert max(sampler.samples) - sampler.samples[0] < RSS_GROWTH


def test_a_stuck_reader_of_changing_rows_is_conflated_and_ends_with_their_latest_state(
    start_server,
):
    server = start_server(
        workers=1,
        HEARTBEAT_SECONDS="1",
        SUBSCRIBER_MAX_PENDING="32",
        SUBSCRIBER_MAX_PENDING_BYTES="65536",
        STREAM_SEND_BUFFER="16384",
    )
    with server.session() as http:
        rows = [
            http.post(
                f"{server.url}/api/shift_feedback",
                json={"shift": "morning", "note": "new", "mood": 3, "store_id": 1},
                timeout=30,
            ).json()["row"]["id"]
            for _ in range(3)
        ]
        start = head(server.url)
        # A stuck reader, subscribed at low priority, while three notes change CHANGES times:
        # rows of 1,000 characters fill its socket and then its queue.
        query = "topics=shift_feedback&shift_feedback.priority=low"
        stuck = RawStream(server.url, f"{query}&cursor={start}", receive_buffer=1024, timeout=30)
        for n in range(CHANGES):
            body = {"mood": 1 + n % 5, "note": f"{n:04d}" + "x" * 996}
            url = f"{server.url}/api/shift_feedback/{rows[n % 3]}"
            answer = http.patch(url, json=body, timeout=30)
            assert answer.status_code == 200, answer.text
        final = {
            pk: http.get(f"{server.url}/api/shift_feedback/{pk}", timeout=10).json()["row"]
            for pk in rows
        }
    reader = Reader(stuck, start, 0)
    reader.target = head(server.url)
    reader.start()
    reader.join(timeout=60)
    stuck.close()
    assert reader.error is None, repr(reader.error)
    # Fewer events than changes, in id order, and each row's last event is its latest state.
    events = reader.events
    assert len(events) < CHANGES
    assert [e["id"] for e in events] == sorted({e["id"] for e in events})
    last = {e["pk"]: e["row"] for e in events}
    assert {pk: (row["note"], row["version"]) for pk, row in last.items()} == {
        pk: (row["note"], row["version"]) for pk, row in final.items()
    }
    figures = server.http.get(f"{server.url}/monitor.json", timeout=10).json()
    assert figures["counters"]["slow_consumer_conflations"] >= 1
