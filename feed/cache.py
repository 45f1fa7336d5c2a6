"""The read cache for snapshots and polls: per process, bounded, invalidated by the feed.

Each entry remembers, for every topic it depends on, the newest event id the log held when
it was computed (its marks). The feed drops a topic's entries computed before an event of
that topic as soon as the event reaches this process's hub; and a hit is served only while
the log still shows the same marks, which covers the moment between a commit on another
worker or node and this hub hearing of it. So a cached read is never older than the request
asking for it.

It counts hits, misses and invalidations as plain numbers; the monitor's sampler turns them
into metrics, off the request's path.
"""

import time
from collections.abc import Callable, Hashable, Iterable
from typing import Any

import orjson
import sqlalchemy as sa
from cachetools import TTLCache

from .filters import Subscription
from .log import EventLog
from .timing import record

KINDS = ("snapshot", "poll")


class Entry:
    """One cached value and what it depends on."""

    __slots__ = ("kind", "topics", "marks", "value", "size")

    def __init__(self, kind: str, topics: tuple[str, ...], marks: tuple, value: Any, size: int):
        self.kind = kind
        self.topics = topics
        self.marks = marks
        self.value = value
        self.size = size


class ReadCache:
    """An LRU of computed reads, bounded in bytes and age, keyed by kind and request."""

    def __init__(self, log: EventLog, *, max_bytes: int, ttl: float):
        self.log = log
        self.entries: TTLCache = TTLCache(max_bytes, ttl, getsizeof=lambda entry: entry.size)
        self.by_topic: dict[str, set[Hashable]] = {}
        self.hits = dict.fromkeys(KINDS, 0)
        self.misses = dict.fromkeys(KINDS, 0)
        self.invalidations = 0

    def _newest(self, topics: Iterable[str]) -> list:
        c = self.log.table.c
        return [
            sa.select(sa.func.max(c.id)).where(c.topic == topic).scalar_subquery()
            for topic in topics
        ]

    def marks(self, conn: sa.Connection, topics: Iterable[str]) -> tuple:
        """Return the newest event id of each topic, read in the caller's transaction."""
        return tuple(conn.execute(sa.select(*self._newest(topics))).one())

    def head_and_marks(self, conn: sa.Connection, topics: Iterable[str]) -> tuple[int, tuple]:
        """Return the log's head and the topics' marks, in one query of the caller's
        transaction."""
        head = sa.select(sa.func.max(self.log.table.c.id)).scalar_subquery()
        found, *marks = conn.execute(sa.select(head, *self._newest(topics))).one()
        return found or 0, tuple(marks)

    def get(self, kind: str, key: Hashable, marks: tuple) -> Any | None:
        """Return the cached value when its marks still hold, counting the hit or miss."""
        entry = self.entries.get((kind, key))
        if entry is not None and entry.marks == marks:
            self.hits[kind] += 1
            return entry.value
        self.misses[kind] += 1
        return None

    def put(
        self, kind: str, key: Hashable, topics: tuple[str, ...], marks: tuple, value, size: int
    ) -> None:
        """Remember a computed value; values larger than the whole cache are not kept."""
        if size > self.entries.maxsize:
            return
        self.entries[(kind, key)] = Entry(kind, topics, marks, value, size)
        for topic in topics:
            keys = self.by_topic.setdefault(topic, set())
            keys.add((kind, key))
            if len(keys) > 2 * len(self.entries) + 64:
                # LRU evictions and expiries leave keys behind; forget them now and then.
                keys.intersection_update(self.entries.keys())

    def invalidate(self, topic: str, event_id: int) -> None:
        """Drop every entry of a topic computed before this event was in the log."""
        keys = self.by_topic.get(topic)
        if not keys:
            return
        dropped = 0
        for key in list(keys):
            entry = self.entries.get(key)
            if entry is not None and (entry.marks[entry.topics.index(topic)] or 0) >= event_id:
                # Read after the event committed: it already shows it.
                continue
            keys.discard(key)
            if entry is not None:
                del self.entries[key]
                dropped += 1
        self.invalidations += dropped

    def sizes(self) -> dict[str, tuple[int, int]]:
        """Return (entries, bytes) per kind."""
        sizes = {kind: [0, 0] for kind in KINDS}
        for entry in list(self.entries.values()):
            sizes[entry.kind][0] += 1
            sizes[entry.kind][1] += entry.size
        return {kind: (count, size) for kind, (count, size) in sizes.items()}

    def snapshot(
        self,
        conn: sa.Connection,
        key: Hashable,
        table: str,
        compute: Callable[[sa.Connection], tuple[bytes, ...]],
    ) -> tuple[tuple[bytes, ...], int]:
        """Answer a snapshot's rows (their bytes first, then what goes with them) from the
        cache, or compute them in the same transaction as their marks and remember them;
        with them, the log's head now, which the rows are consistent with."""
        started = time.perf_counter()
        head, marks = self.head_and_marks(conn, (table,))
        found = self.get("snapshot", key, marks)
        record("cache", time.perf_counter() - started, "hit" if found else "miss")
        if found is not None:
            return found, head
        started = time.perf_counter()
        computed = compute(conn)
        record("db", time.perf_counter() - started)
        self.put("snapshot", key, (table,), marks, computed, len(computed[0]))
        return computed, head

    def poll(
        self,
        runtime,
        subscription: Subscription,
        cursor: int,
        limit: int,
        compute: Callable[..., tuple[list, int, bool]],
    ) -> tuple[list, int, bool]:
        """Answer one pass of a poll from the cache, or compute and remember it."""
        topics = tuple(subscription.topics)
        key = (tuple(subscription.views.values()), cursor, limit)
        started = time.perf_counter()
        # Read before computing: the value is then at least as new as its marks.
        with runtime.read() as conn:
            marks = self.marks(conn, topics)
        found = self.get("poll", key, marks)
        record("cache", time.perf_counter() - started, "hit" if found else "miss")
        if found is not None:
            return found
        started = time.perf_counter()
        result = compute(runtime, subscription, cursor, limit)
        record("db", time.perf_counter() - started)
        self.put("poll", key, topics, marks, result, len(orjson.dumps(result[0])))
        return result
