"""Prometheus instruments for the feed, correct across gunicorn workers.

Under gunicorn, PROMETHEUS_MULTIPROC_DIR (set by gunicorn.conf.py) makes every worker write
its figures to memory-mapped files that any worker aggregates on read. Without it (tests,
one process) the figures live in a registry of the app's own.

The engine's hot paths (relay, hub, cache) keep plain counters and a bounded list of
latencies; `mirror` adds what they gained to the instruments, from the once-a-second
sampler and before every read-out, so no event pays for a Prometheus call.
"""

import datetime as dt
import gc
import os
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

from greenlet import greenlet
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, values
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.samples import Sample

from .log import Event

if TYPE_CHECKING:
    from .balance import View
    from .cache import ReadCache
    from .hub import Hub
    from .latency import Latencies
    from .transactions import Transactions

# Counting greenlets walks every object the collector tracks (~30 ms in a busy worker).
GREENLET_SECONDS = 10.0

LATENCY_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip


def multiprocess_dir() -> str | None:
    """Return the shared metrics directory when several workers write figures."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


def _use_multiprocess_values() -> None:
    """Switch prometheus-client to memory-mapped values.

    prometheus-client picks its value class when first imported, and gunicorn's master
    imports it (through this package) before `on_starting` sets the directory; workers
    inherit that choice, so it is made again here, once, before any instrument exists.
    """
    if not getattr(values.ValueClass, "_multiprocess", False):
        values.ValueClass = values.get_value_class()


def _parse_at(text: str) -> float:
    """Return the UNIX time of an event's `at` (ISO 8601 with Z)."""
    return dt.datetime.fromisoformat(text).timestamp()


class FeedMetrics:
    """Every instrument, the tiny hooks the feed calls, and an aggregated read-out."""

    def __init__(self, enabled: bool = True):
        self.enabled = enabled
        self.directory = multiprocess_dir()
        if self.directory:
            _use_multiprocess_values()
            # Multiprocess figures are read from the files, never from a registry.
            registry = None
        else:
            registry = self.registry = CollectorRegistry()
        self._watched: tuple[Hub, ReadCache, Latencies, Transactions] | None = None
        self._mirrored: dict[tuple, int] = {}
        self._greenlets_due = 0.0

        def counter(name, doc, labels=()):
            return Counter(name, doc, labels, registry=registry)

        def gauge(name, doc, mode, labels=()):
            return Gauge(name, doc, labels, registry=registry, multiprocess_mode=mode)

        def histogram(name, doc, labels=()):
            return Histogram(name, doc, labels, registry=registry, buckets=LATENCY_BUCKETS)

        self.http_requests = counter(
            "tidings_http_requests", "HTTP requests answered.", ("route", "method", "status")
        )
        self.http_duration = histogram(
            "tidings_http_request_duration_seconds",
            "Time to answer a request (streams and long polls excluded).",
            ("route", "method"),
        )
        self.appended = counter("tidings_events_appended", "Events committed to the log.")
        self.delivered = counter(
            "tidings_events_delivered", "Events queued for a subscriber (one per subscriber)."
        )
        self.commit_to_deliver = histogram(
            "tidings_commit_to_deliver_seconds", "From an event's commit (`at`) to its delivery."
        )
        self.publish_to_deliver = histogram(
            "tidings_publish_to_deliver_seconds",
            "From publishing an event to its delivery in the publishing process.",
        )
        self.connections = gauge(
            "tidings_connections", "Open streams and waiting long polls.", "livesum", ("transport",)
        )
        self.reconnects = counter(
            "tidings_reconnects", "Stream requests resuming with Last-Event-ID.", ("transport",)
        )
        self.resets = counter("tidings_resets", "Resets sent to subscribers.", ("reason",))
        self.slow_consumers = counter(
            "tidings_slow_consumer_actions",
            "Subscribers that fell behind their queue, by what was done.",
            ("action",),
        )
        self.read_transactions = counter(
            "tidings_read_transactions", "Read transactions begun on the database."
        )
        self.replay_reads = counter(
            "tidings_replay_reads",
            "Replay and poll pages, by where they were read: the ring in memory or the log.",
            ("source",),
        )
        self.cache_hits = counter("tidings_cache_hits", "Read cache hits.", ("kind",))
        self.cache_misses = counter("tidings_cache_misses", "Read cache misses.", ("kind",))
        self.cache_invalidations = counter(
            "tidings_cache_invalidations", "Cache entries dropped because an event arrived."
        )
        self.cache_entries = gauge(
            "tidings_cache_entries", "Entries in the read cache.", "livesum", ("kind",)
        )
        self.cache_bytes = gauge(
            "tidings_cache_bytes", "Bytes of cached bodies.", "livesum", ("kind",)
        )
        self.redis_up = gauge(
            "tidings_redis_up", "1 while every worker's Redis subscription is live.", "livemin"
        )
        self.listener_lag = gauge(
            "tidings_listener_lag_events",
            "Events in the log not yet in a worker's hub (worst worker).",
            "livemax",
        )
        self.fanout_groups = gauge(
            "tidings_fanout_groups", "Shared subscriptions written to as one group.", "livesum"
        )
        self.fanout_members = gauge(
            "tidings_fanout_members", "Live streams written to with their group.", "livesum"
        )
        self.log_head = gauge("tidings_log_head", "Newest event id in the log.", "livemax")
        self.log_tail = gauge("tidings_log_tail", "Oldest retained event id.", "livemax")
        self.rate_limited = counter(
            "tidings_rate_limited", "Requests refused with 429, by limit kind.", ("kind",)
        )
        self.rate_limits_shared = gauge(
            "tidings_rate_limits_shared",
            "1 while every worker counts rate limits in Redis, 0 while one counts its own.",
            "livemin",
        )
        self.shed_streams = counter(
            "tidings_streams_shed",
            "Streams and long polls let go to reconnect elsewhere, by reason.",
            ("reason",),
        )
        self.worker_streams = gauge(
            "tidings_worker_streams", "Open streams of each worker, as it last recorded.", "liveall"
        )
        self.balance_workers = gauge(
            "tidings_balance_workers",
            "Live workers over every node sharing Redis (0 while unknown).",
            "livemax",
        )
        self.balance_streams = gauge(
            "tidings_balance_streams", "Open streams over every node sharing Redis.", "livemax"
        )
        for reason in ("draining", "rebalance"):
            self.shed_streams.labels(reason)
        self.greenlets = gauge(
            "tidings_greenlets",
            f"Live greenlets in each worker (label pid), counted every {GREENLET_SECONDS:g} s.",
            "liveall",
        )
        for transport in ("sse", "longpoll"):
            self.connections.labels(transport)
            self.reconnects.labels(transport)
        for kind in ("snapshot", "poll"):
            self.cache_hits.labels(kind)
            self.cache_misses.labels(kind)
        self.slow_consumers.labels("catch_up")
        self.slow_consumers.labels("conflate")
        for source in ("ring", "log"):
            self.replay_reads.labels(source)

    # Hooks on the feed's paths: one increment each.

    def events_published(self, events: list[Event]) -> None:
        """Count committed events."""
        if self.enabled:
            self.appended.inc(len(events))

    def reset_sent(self, reason: str) -> None:
        """Count a reset by its reason."""
        if self.enabled:
            self.resets.labels(reason).inc()

    def connection_changed(self, transport: str, change: int) -> None:
        """Count a stream or long poll opening (+1) or closing (-1)."""
        if self.enabled:
            self.connections.labels(transport).inc(change)

    def reconnected(self, transport: str) -> None:
        """Count a request resuming with Last-Event-ID."""
        if self.enabled:
            self.reconnects.labels(transport).inc()

    def refused(self, kind: str) -> None:
        """Count a request refused by a rate limit."""
        if self.enabled:
            self.rate_limited.labels(kind).inc()

    def limits_shared(self, shared: bool) -> None:
        """Record whether this worker counts rate limits in Redis or in its own memory."""
        self.rate_limits_shared.set(1 if shared else 0)

    def shed(self, reason: str, count: int) -> None:
        """Count streams let go to reconnect elsewhere."""
        if self.enabled:
            self.shed_streams.labels(reason).inc(count)

    def balanced(self, view: "View | None") -> None:
        """Record what a rebalancing round saw (None: Redis did not answer)."""
        if not self.enabled:
            return
        counts = view.by_worker.values() if view is not None else ()
        self.worker_streams.set(view.mine if view is not None else 0)
        self.balance_workers.set(len(counts))
        self.balance_streams.set(sum(counts))

    def request_done(self, route: str, method: str, status: int, seconds: float | None) -> None:
        """Count a request; time it unless it was a stream or a long poll."""
        if not self.enabled:
            return
        self.http_requests.labels(route, method, str(status)).inc()
        if seconds is not None:
            self.http_duration.labels(route, method).observe(seconds)

    # Figures sampled in the background, off every hot path.

    def watch(
        self, hub: "Hub", cache: "ReadCache", latencies: "Latencies", transactions: "Transactions"
    ) -> None:
        """Name the engine parts whose plain counters `mirror` reads."""
        self._watched = (hub, cache, latencies, transactions)

    def sample(self, *, redis_up: bool, head: int, tail: int) -> None:
        """Mirror the engine's counters and set this worker's gauges."""
        if not self.enabled or self._watched is None:
            return
        self.mirror()
        hub, cache, *_ = self._watched
        self.redis_up.set(1 if redis_up else 0)
        self.log_head.set(head)
        self.log_tail.set(tail)
        self.listener_lag.set(max(0, head - hub.head))
        self.fanout_groups.set(len(hub.groups))
        self.fanout_members.set(sum(len(group.members) for group in hub.groups.values()))
        for kind, (entries, size) in cache.sizes().items():
            self.cache_entries.labels(kind).set(entries)
            self.cache_bytes.labels(kind).set(size)
        if time.monotonic() >= self._greenlets_due:
            self._greenlets_due = time.monotonic() + GREENLET_SECONDS
            self.greenlets.set(sum(isinstance(o, greenlet) for o in gc.get_objects()))

    def mirror(self) -> None:
        """Add what the engine's plain counters gained since the last mirror, and observe
        the latencies noted since."""
        if not self.enabled or self._watched is None:
            return
        hub, cache, latencies, transactions = self._watched
        self._add(("delivered",), hub.delivered, self.delivered)
        self._add(("reads",), transactions.reads, self.read_transactions)
        self._add(("overflows",), hub.overflows, self.slow_consumers.labels("catch_up"))
        self._add(("conflations",), hub.conflations, self.slow_consumers.labels("conflate"))
        self._add(("ring",), hub.ring.hits, self.replay_reads.labels("ring"))
        self._add(("log",), hub.ring.misses, self.replay_reads.labels("log"))
        self._add(("invalidations",), cache.invalidations, self.cache_invalidations)
        for kind in cache.hits:
            self._add(("hits", kind), cache.hits[kind], self.cache_hits.labels(kind))
            self._add(("misses", kind), cache.misses[kind], self.cache_misses.labels(kind))
        for at, delivered, since_publish in latencies.drain():
            self.commit_to_deliver.observe(max(0.0, delivered - _parse_at(at)))
            if since_publish is not None:
                self.publish_to_deliver.observe(since_publish)

    def _add(self, name: tuple, current: int, counter) -> None:
        """Add what a plain counter gained since the last mirror."""
        delta = current - self._mirrored.get(name, 0)
        self._mirrored[name] = current
        if delta > 0:
            counter.inc(delta)

    # Read-out

    def collect(self) -> Iterable:
        """Yield metric families aggregated over every worker."""
        self.mirror()
        if self.directory:
            return MultiProcessCollector(None, self.directory).collect()
        return self.registry.collect()

    def samples(self) -> dict[str, list[Sample]]:
        """Return every sample by sample name, aggregated over every worker."""
        found: dict[str, list[Sample]] = {}
        for family in self.collect():
            for sample in family.samples:
                found.setdefault(sample.name, []).append(sample)
        return found
