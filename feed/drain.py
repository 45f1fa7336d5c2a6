"""This worker's open streams, and how they are let go: all at once when the worker drains,
a few at a time when it holds more than its share.

A stream let go gets a last block, `retry:` (random within DRAIN_SECONDS, so its clients come
back spread out) with `id:` its cursor, and ends cleanly: the client reconnects with
Last-Event-ID, through the proxy, to whichever node takes it. A waiting long poll answers at
once with no events and its cursor.
"""

import logging
import random
from collections.abc import Callable
from itertools import islice

import gevent

from . import sse
from .errors import ApiError
from .hub import Hub, Subscriber

logger = logging.getLogger("tidings.drain")

# Why a subscriber is let go: the worker stops, or it holds more than its share.
DRAINING = "draining"
REBALANCE = "rebalance"
REASONS = (DRAINING, REBALANCE)
# How often a draining worker lets go of subscribers that arrived since (keep-alive
# connections still bring requests until the server stops reading them).
SWEEP_SECONDS = 0.1


def refusal() -> ApiError:
    """Return the answer to a request a draining worker will not take: come back shortly
    (to its successor, or another node)."""
    return ApiError(
        503,
        DRAINING,
        "This server is shutting down; try again shortly.",
        headers={"Retry-After": "1"},
    )


def let_go(reason: str | None) -> bool:
    """Tell whether a subscriber's end reason means: reconnect elsewhere, nothing is wrong."""
    return reason in REASONS


class Drain:
    """The streams of this worker, oldest first, and whether the worker is draining."""

    def __init__(self, hub: Hub, window_seconds: float, on_shed: Callable[[str, int], None]):
        self.hub = hub
        self.window_ms = int(window_seconds * 1000)
        self.on_shed = on_shed
        # Insertion-ordered: the first key is the stream open the longest.
        self.streams: dict[Subscriber, None] = {}
        self.draining = False
        self._sweeper: gevent.Greenlet | None = None

    def opened(self, subscriber: Subscriber) -> None:
        """Count a stream's subscriber as open."""
        self.streams[subscriber] = None

    def closed(self, subscriber: Subscriber) -> None:
        """Forget a stream that ended."""
        self.streams.pop(subscriber, None)

    def farewell(self, cursor: int) -> bytes:
        """Frame a let-go stream's last block: its cursor, and a random `retry:` within the
        window for its client to wait before it reconnects."""
        return sse.frame(id=cursor, retry=random.randint(0, self.window_ms))

    def shed(self, count: int) -> int:
        """Let go of up to `count` of the oldest streams still running; return how many."""
        chosen = list(islice((s for s in self.streams if s.ended is None), count))
        for subscriber in chosen:
            subscriber.end(REBALANCE)
        if chosen:
            self.on_shed(REBALANCE, len(chosen))
        return len(chosen)

    def drained(self) -> bool:
        """Tell whether no stream nor long poll is left."""
        return not self.streams and not self.hub.by_topic

    def begin(self) -> None:
        """Start draining: readiness fails, and every stream and long poll is let go, now and
        as long as the worker lives."""
        if self.draining:
            return
        self.draining = True
        logger.info("draining %d streams", len(self.streams))
        self._sweeper = gevent.spawn(self._sweep)

    def _sweep(self) -> None:
        while True:
            ended = [s for s in self.hub.waiting() if s.ended is None]
            for subscriber in ended:
                subscriber.end(DRAINING)
            if ended:
                self.on_shed(DRAINING, len(ended))
            gevent.sleep(SWEEP_SECONDS)
