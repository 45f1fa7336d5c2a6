"""Delivery latencies, noted on the hot path as plain values and handed to the sampler."""

import time
from collections import deque

from .log import Event

# Bounds, not tuning knobs: publish stamps of events not (yet) delivered here, and
# deliveries noted between two samples.
_MAX_STAMPS = 10_000
_MAX_NOTED = 10_000


class Latencies:
    """Publish stamps and deliveries of this process, waiting for the next sample."""

    def __init__(self, enabled: bool = True):
        self.enabled = enabled
        self._published_at: dict[int, float] = {}
        # (the event's commit time as logged, when it reached the hub, seconds since publish)
        self._noted: deque[tuple[str, float, float | None]] = deque(maxlen=_MAX_NOTED)

    def published(self, events: list[Event]) -> None:
        """Stamp when these committed events were published."""
        if not self.enabled:
            return
        if len(self._published_at) > _MAX_STAMPS:
            self._published_at.clear()
        now = time.monotonic()
        for event in events:
            self._published_at[event.id] = now

    def delivered(self, event: Event) -> None:
        """Note that an event reached this process's hub."""
        if not self.enabled:
            return
        published = self._published_at.pop(event.id, None)
        since_publish = None if published is None else time.monotonic() - published
        self._noted.append((event.data["at"], time.time(), since_publish))

    def drain(self) -> list[tuple[str, float, float | None]]:
        """Return and forget the deliveries noted since the last call."""
        noted = list(self._noted)
        self._noted.clear()
        return noted
