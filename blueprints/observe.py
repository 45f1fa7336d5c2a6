"""Request observation: one JSON log line per request, metrics, Server-Timing, request ids.

Streams log twice: when they open (the request line) and when they close, with how long
they stayed open and how many events they sent.
"""

import logging
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import orjson
from flask import Flask, Response, g, request

from feed import runtime, timing

logger = logging.getLogger("tidings.access")
# The environ key of a stream's observed body.
OBSERVED_STREAM = "tidings.stream"


def _json_lines() -> None:
    """Give the access log a handler that writes each record as it is: one JSON line."""
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
        # Its level follows LOG_LEVEL through the root logger; its format is its own.
        logger.propagate = False


def log_line(**fields) -> None:
    """Write one structured log line."""
    logger.info(orjson.dumps(fields).decode())


def init_app(app: Flask) -> None:
    """Observe every request of the app."""
    _json_lines()
    app.before_request(_start)
    app.after_request(_finish)


def _start() -> None:
    g.started = time.perf_counter()
    timing.begin()
    supplied = request.headers.get("X-Request-ID", "")
    g.request_id = supplied if 0 < len(supplied) <= 64 else uuid.uuid4().hex


def _route() -> str:
    return request.url_rule.rule if request.url_rule is not None else "unmatched"


def _finish(response: Response) -> Response:
    seconds = time.perf_counter() - g.get("started", time.perf_counter())
    # Only event streams: a static file is streamed too, but it is a plain request.
    stream = response.mimetype == "text/event-stream"
    # Streams and long polls last as long as they wait: they are connections, not latency.
    waited = stream or g.get("long_poll", False)
    runtime().metrics.request_done(
        _route(), request.method, response.status_code, None if waited else seconds
    )
    server_timing = timing.header(timing.end())
    if server_timing:
        response.headers["Server-Timing"] = server_timing
    response.headers["X-Request-ID"] = g.request_id
    log_line(
        event="stream.open" if stream else "request",
        method=request.method,
        path=request.path,
        status=response.status_code,
        duration_ms=round(seconds * 1000, 2),
        request_id=g.request_id,
    )
    return response


@contextmanager
def long_poll() -> Iterator[None]:
    """Count a waiting long poll as an open connection, not as request latency."""
    metrics = runtime().metrics
    g.long_poll = True
    metrics.connection_changed("longpoll", +1)
    try:
        yield
    finally:
        metrics.connection_changed("longpoll", -1)


class ObservedStream:
    """A stream's body, counted as an open connection and logged when it closes.

    Iterating hands the server the body's own iterator: no generator wraps it, so a parked
    stream's greenlet saves one level of C stack less, and no closure is kept per stream.
    A server that drives the stream itself (a parked stream) calls `start` instead, and
    closes the response as any server does.
    """

    __slots__ = ("body", "transport", "metrics", "request_id", "path", "opened", "iterator")

    def __init__(self, body, transport: str = "sse"):
        self.body = body
        self.transport = transport
        # Read now: the request context is gone by the time the server iterates.
        self.metrics = runtime().metrics
        self.request_id, self.path = g.request_id, request.path
        self.opened = None
        self.iterator = None
        # Found there by a server that can drive the stream itself.
        request.environ[OBSERVED_STREAM] = self

    def start(self) -> None:
        """Count the stream as open."""
        self.opened = time.monotonic()
        self.metrics.connection_changed(self.transport, +1)

    def __iter__(self) -> Iterator[bytes]:
        self.start()
        self.iterator = iter(self.body)
        return self.iterator

    def close(self) -> None:
        """End the body, then count and log the closed stream."""
        if self.opened is None:
            return
        try:
            if self.iterator is not None:
                self.iterator.close()
        finally:
            self.metrics.connection_changed(self.transport, -1)
            log_line(
                event="stream.close",
                path=self.path,
                duration_ms=round((time.monotonic() - self.opened) * 1000, 2),
                events_sent=self.body.sent,
                request_id=self.request_id,
            )
            self.iterator = None
            self.opened = None
