"""Durations for the Server-Timing header (db, cache), kept per request in a context variable.

The engine records into whatever recording is open in the current context (each request
runs in its own greenlet, so its own context); the web layer opens one per request and
renders it. With none open, recording is a no-op.
"""

from contextvars import ContextVar

Timings = dict[str, tuple[float, str | None]]

_current: ContextVar[Timings | None] = ContextVar("tidings_server_timing", default=None)


def begin() -> None:
    """Open a fresh recording for the current context (one request)."""
    _current.set({})


def end() -> Timings:
    """Close the current recording and return what it holds."""
    timings = _current.get() or {}
    _current.set(None)
    return timings


def record(name: str, seconds: float, desc: str | None = None) -> None:
    """Add time spent on `name` to the open recording, if any."""
    timings = _current.get()
    if timings is not None:
        spent, old_desc = timings.get(name, (0.0, None))
        timings[name] = (spent + seconds, desc or old_desc)


def header(timings: Timings) -> str | None:
    """Render timings as a Server-Timing header value, or None when there are none."""
    if not timings:
        return None
    parts = []
    for name, (seconds, desc) in timings.items():
        label = f';desc="{desc}"' if desc else ""
        parts.append(f"{name};dur={seconds * 1000:.2f}{label}")
    return ", ".join(parts)
