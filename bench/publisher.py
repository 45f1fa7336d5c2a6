"""Paced writers: send HTTP writes at a fixed rate from a few keep-alive connections."""

import http.client
import threading
import time
from collections.abc import Callable
from urllib.parse import urlsplit

import orjson

from .server import authorization

# The event data of the throughput scenario is this many bytes of JSON.
EVENT_BYTES = 100


def bench_event(sent: str) -> dict:
    """Return a /api/publish body whose data is EVENT_BYTES of JSON carrying the send time."""
    data = {"sent": sent, "pad": ""}
    data["pad"] = "x" * (EVENT_BYTES - len(orjson.dumps(data)))
    return {"topic": "bench", "data": data}


def feedback_row(sent: str) -> dict:
    """Return a shift_feedback row whose note carries the send time."""
    return {"shift": "morning", "note": sent, "mood": 3}


def send_paced(
    url: str,
    path: str | Callable[[int], str],
    body: Callable[[str], dict],
    *,
    rate: float,
    count: int,
    connections: int = 4,
    method: str = "POST",
    stop: threading.Event | None = None,
) -> dict:
    """Send `count` bodies at `rate` per second (fewer, once `stop` is set); the send time
    goes into each body. `path` may name each write's target from its index (the row the
    n-th PATCH updates)."""
    target = path if callable(path) else lambda _: path
    parts = urlsplit(url)
    headers = {"Content-Type": "application/json", **authorization(url)}
    start = time.monotonic() + 0.05
    statuses: dict[int, int] = {}
    took: list[float] = []
    late: list[float] = []
    lock = threading.Lock()

    def writer(first: int) -> None:
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        try:
            for index in range(first, count, connections):
                if stop is not None and stop.is_set():
                    return
                due = start + index / rate
                pause = due - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
                began = time.monotonic()
                payload = orjson.dumps(body(f"{time.time():.6f}"))
                conn.request(method, target(index), payload, headers)
                response = conn.getresponse()
                response.read()
                with lock:
                    statuses[response.status] = statuses.get(response.status, 0) + 1
                    took.append(time.monotonic() - began)
                    late.append(began - due)
        finally:
            conn.close()

    run_all([threading.Thread(target=writer, args=(k,)) for k in range(connections)])
    seconds = time.monotonic() - start
    return {
        "writes": len(took),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "achieved_per_second": round(len(took) / seconds, 1),
        "request_ms": request_ms(took),
        "max_late_ms": round(max(late) * 1000, 1),
    }


def run_all(threads: list[threading.Thread]) -> float:
    """Start the threads, wait for them all, and return the seconds it took."""
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.monotonic() - started


def request_ms(took: list[float]) -> dict:
    """Return the p50 and p99 of request times in seconds, in milliseconds."""
    took = sorted(took)
    if not took:
        return {"p50": None, "p99": None}
    return {
        "p50": round(took[len(took) // 2] * 1000, 2),
        "p99": round(took[int(len(took) * 0.99)] * 1000, 2),
    }
