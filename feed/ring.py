"""The newest events this process delivered, kept in memory to replay without the database.

The hub hands every event to the ring in id order with no holes, so the ring holds every
event after its floor up to the hub's head: a stream or poll whose cursor is at or after
the floor, and behind the ring's head, is answered from memory, exactly as the log would
answer it. Older cursors, cursors at the head (the log may hold a newer commit not yet
relayed here), and any at all before the hub knows the log's head, go to the log.
"""

import time
from bisect import bisect_right
from collections import deque
from collections.abc import Collection
from itertools import islice
from operator import attrgetter

from .log import Event
from .replays import Replays

# What the ring is ordered by, for bisect.
_ID = attrgetter("id")


class Ring:
    """A bounded, gapless run of the newest events, by count, bytes and age."""

    def __init__(self, max_events: int, max_bytes: int, max_age_seconds: float):
        self.max_events = max_events
        self.max_bytes = max_bytes
        self.max_age_seconds = max_age_seconds
        self.events: deque[Event] = deque()
        self.arrived: deque[float] = deque()
        self.bytes = 0
        # Every event after the floor up to the head is held; None until the head is known.
        self.floor: int | None = None
        self.head = 0
        # Counts the runs of events the ring began: the same ids in another run are other events.
        self.generation = 0
        # Rendered replay pages of this run, shared by streams that read the same one.
        self.replays = Replays()
        # Pages read from the ring, and from the log instead, counted by the readers.
        self.hits = 0
        self.misses = 0

    def start_at(self, head: int) -> None:
        """Begin empty at the log's head (at start, or after the log moved on)."""
        self.events.clear()
        self.arrived.clear()
        self.bytes = 0
        self.floor = self.head = head
        self.generation += 1
        self.replays.clear()

    def add(self, event: Event) -> None:
        """Hold the next event, dropping the oldest past the bounds."""
        if self.floor is None:
            return
        self.events.append(event)
        self.arrived.append(time.monotonic())
        self.bytes += len(event.raw)
        self.head = event.id
        while self.events and (len(self.events) > self.max_events or self.bytes > self.max_bytes):
            self._drop_oldest()

    def _drop_oldest(self) -> None:
        oldest = self.events.popleft()
        self.floor = oldest.id
        self.bytes -= len(oldest.raw)
        self.arrived.popleft()

    def holds(self, cursor: int) -> bool:
        """Tell whether the ring holds every event after the cursor."""
        horizon = time.monotonic() - self.max_age_seconds
        while self.arrived and self.arrived[0] < horizon:
            self._drop_oldest()
        return self.floor is not None and self.floor <= cursor <= self.head

    def ahead_of(self, cursor: int) -> bool:
        """Tell whether the ring holds every event after the cursor, and at least one (at its
        head, a commit that has not reached this process yet is only in the log)."""
        return self.holds(cursor) and cursor < self.head

    def after(
        self, cursor: int, topics: Collection[str], limit: int
    ) -> tuple[list[Event], int, bool]:
        """Return up to `limit` events of `topics` after a cursor the ring holds, the position
        reached and whether it is the ring's head."""
        found: list[Event] = []
        position = cursor
        for event in islice(self.events, bisect_right(self.events, cursor, key=_ID), None):
            position = event.id
            if event.topic in topics:
                found.append(event)
                if len(found) == limit:
                    return found, position, position == self.head
        return found, self.head, True
