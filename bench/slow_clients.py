"""Lagging clients: a worker's memory while stuck and slow streams catch up from the log.

Stuck clients connect and never read; slow ones read about 1 KB a second. Both use raw
sockets with a small receive buffer, so the server soon cannot write to them and their
streams fall behind the hub's queue and catch up from the log. The kernel's send buffer
(up to tcp_wmem's 4 MiB per socket) absorbs a lagging stream's first megabytes, so each
lagging client is sent well beyond that: 8,000 events of 2,000-character rows.
"""

import re
import socket
import threading
import time
from urllib.parse import urlsplit

import orjson
import requests

from tests.servers import bearer

from .publisher import send_paced
from .server import BenchServer, rss_bytes
from .swarm import SwarmProcess, every_event_once

# A lagging client's receive buffer: the kernel holds little for it, the server the rest.
RECEIVE_BUFFER = 4096
# How many bytes a slow client reads each second: it keeps falling behind and catching up.
SLOW_BYTES_PER_SECOND = 64 * 1024
# Change frames' ids, to check a lagging client's events came once and in order.
CHANGE_ID = re.compile(rb"id: (\d+)\nevent: change\n")
# A change frame's data, whole: the server writes whole frames, so no chunk marker splits one.
CHANGE_DATA = re.compile(rb"\nevent: change\ndata: ([^\n]*)\n\n")
ACTIONS = re.compile(r'^tidings_slow_consumer_actions_total\{action="(\w+)"\} (\S+)$', re.M)


def row_event(size: int):
    """Return a /api/publish body maker whose data is about `size` characters of JSON."""

    def body(sent: str) -> dict:
        data = {"sent": sent, "pad": ""}
        data["pad"] = "x" * (size - len(orjson.dumps(data)))
        return {"topic": "bench", "data": data}

    return body


class Laggard:
    """One raw SSE connection that reads slowly, or never."""

    def __init__(self, url: str, path: str, reads_per_second: int):
        parts = urlsplit(url)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
        self.sock.connect((parts.hostname, parts.port))
        token = bearer(url)["Authorization"]
        self.sock.sendall(
            f"GET {path} HTTP/1.1\r\nHost: {parts.netloc}\r\nAccept: text/event-stream\r\n"
            f"Authorization: {token}\r\n\r\n".encode()
        )
        self.received = bytearray()
        self.reads_per_second = reads_per_second
        self.closing = threading.Event()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        if not self.reads_per_second:
            return
        self.sock.settimeout(0.1)
        while not self.closing.wait(1):
            budget = self.reads_per_second
            while budget > 0 and not self.closing.is_set():
                try:
                    data = self.sock.recv(budget)
                except TimeoutError:
                    continue
                except OSError:
                    return
                self.received += data
                budget -= len(data)

    def ids(self) -> list[int]:
        """Return the ids of the change frames received so far."""
        return [int(m[1]) for m in CHANGE_ID.finditer(self.received)]

    def changes(self) -> list[dict]:
        """Return the events of the change frames received so far, in order."""
        return [orjson.loads(m[1]) for m in CHANGE_DATA.finditer(bytes(self.received))]

    def close(self) -> None:
        """Stop reading and close the connection."""
        self.closing.set()
        self.thread.join()
        self.sock.close()


class RssSampler:
    """Sample a process's RSS every `interval` seconds in a thread."""

    def __init__(self, pid: int, interval: float = 0.2):
        self.pid, self.interval = pid, interval
        self.samples = [rss_bytes(pid)]
        # When each sample was taken (monotonic seconds), for a growth rate.
        self.times = [time.monotonic()]
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()

    def _sample(self) -> None:
        while not self.stopping.wait(self.interval):
            self._take()

    def _take(self) -> None:
        self.samples.append(rss_bytes(self.pid))
        self.times.append(time.monotonic())

    def stop(self) -> None:
        """Stop sampling and take one last sample."""
        self.stopping.set()
        self.thread.join()
        self._take()


def slow_consumer_actions(url: str) -> dict[str, float]:
    """Return what was done, over every worker, for streams that fell behind their queue in
    the hub: conflate, catch_up (from the log)."""
    text = requests.get(url + "/metrics", headers=bearer(url), timeout=10).text
    return {action: float(count) for action, count in ACTIONS.findall(text)}


def in_order_once(ids: list[int]) -> bool:
    """Return whether ids only ever go up (each event came at most once, in order)."""
    return all(a < b for a, b in zip(ids, ids[1:], strict=False))


def slow_clients(
    streams: int = 200,
    stuck: int = 20,
    slow: int = 20,
    events: int = 8000,
    row_chars: int = 2000,
    rate: int = 250,
    slow_bytes_per_second: int = SLOW_BYTES_PER_SECOND,
    **env: str,
) -> dict:
    """Worker RSS, and what normal streams receive, while stuck and slow streams lag."""
    normal = streams - stuck - slow
    print(
        f"slow_clients: {streams} SSE streams on one gevent worker, {stuck} stuck and {slow} "
        f"slow (~{slow_bytes_per_second} B/s, SO_RCVBUF {RECEIVE_BUFFER}), {events} events of "
        f"~{row_chars}-character rows at {rate}/s"
    )
    path = "/stream?topics=bench"
    with BenchServer(workers=1, **env) as server:
        (pid,) = server.worker_pids()
        with SwarmProcess(server.url, path, normal) as swarm:
            laggards = [Laggard(server.url, path, 0) for _ in range(stuck)]
            laggards += [Laggard(server.url, path, slow_bytes_per_second) for _ in range(slow)]
            try:
                time.sleep(1)
                sampler = RssSampler(pid)
                writes = send_paced(
                    server.url, "/api/publish", row_event(row_chars), rate=rate, count=events
                )
                received = swarm.report(events, timeout=60)
                time.sleep(2)
                sampler.stop()
                catch_ups = slow_consumer_actions(server.url)["catch_up"]
            finally:
                for laggard in laggards:
                    laggard.close()
    start, peak, end = sampler.samples[0], max(sampler.samples), sampler.samples[-1]
    slow_ids = [laggard.ids() for laggard in laggards[stuck:]]
    exact = every_event_once(received, events)
    lagging_in_order = all(in_order_once(ids) for ids in slow_ids)
    mib = 2**20
    lat = received["latency_ms"]
    print(
        f"  writes {writes['statuses']}; {normal} normal streams got {received['per_stream_min']}"
        f"..{received['per_stream_max']} of {events}, out of order or repeated "
        f"{received['out_of_order_or_repeated']}, p50 {lat['p50']} ms p99 {lat['p99']} ms\n"
        f"  catch-ups from the log: {catch_ups}; slow streams got {min(map(len, slow_ids))}.."
        f"{max(map(len, slow_ids))} events, in order once: {lagging_in_order}\n"
        f"  worker RSS start {start / mib:.1f} MiB, peak {peak / mib:.1f} MiB "
        f"(+{(peak - start) / mib:.1f}), end {end / mib:.1f} MiB (+{(end - start) / mib:.1f})"
    )
    budget = 64 * mib
    return {
        "config": {
            "streams": streams,
            "stuck": stuck,
            "slow": slow,
            "events": events,
            "row_chars": row_chars,
            "rate": rate,
            "slow_bytes_per_second": slow_bytes_per_second,
            **env,
        },
        "writes": writes,
        "received": received,
        "catch_ups": catch_ups,
        "slow_events_received": [len(ids) for ids in slow_ids],
        "rss_bytes": {"start": start, "peak": peak, "end": end},
        "target": {"rss_growth_bytes": budget},
        "met": exact and lagging_in_order and peak - start <= budget,
    }
