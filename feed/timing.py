"""Per-request durations for the Server-Timing header (db, cache)."""

import time
from collections.abc import Iterator
from contextlib import contextmanager

from flask import g, has_request_context


def record(name: str, seconds: float, desc: str | None = None) -> None:
    """Add time spent on `name` to the current request's Server-Timing, if any."""
    if has_request_context():
        timings = g.setdefault("server_timing", {})
        spent, old_desc = timings.get(name, (0.0, None))
        timings[name] = (spent + seconds, desc or old_desc)


@contextmanager
def timed(name: str) -> Iterator[None]:
    """Record the time the block takes under `name`."""
    start = time.perf_counter()
    try:
        yield
    finally:
        record(name, time.perf_counter() - start)


def header() -> str | None:
    """Return the Server-Timing header value for the current request, or None."""
    timings = g.get("server_timing")
    if not timings:
        return None
    parts = []
    for name, (seconds, desc) in timings.items():
        label = f';desc="{desc}"' if desc else ""
        parts.append(f"{name};dur={seconds * 1000:.2f}{label}")
    return ", ".join(parts)
