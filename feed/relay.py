"""Ordered ingest: every event reaches this process's hub once, in id order, with no hole.

The rule: the hub's head is the newest event delivered, and the next event delivered is
always head + 1. Whatever arrives (from Redis, from this process's own publisher while
Redis is down, or from nowhere at all) goes through `ingest`, under one lock: an event at or
below the head is a repeat and is dropped; one beyond head + 1 means something was missed,
and the log fills the hole first. The relay tick reads the log for what Redis never
brought (a crash before publish, an outage), and follows a log that went back.
"""

import logging
import threading

import gevent

from . import credentials
from .cache import ReadCache
from .credentials import Credentials
from .hub import Hub
from .latency import Latencies
from .log import Event, EventLog
from .transactions import Transactions

logger = logging.getLogger("tidings.relay")

# Events read from the log per query while filling a hole or catching up.
PAGE = 1000


class Relay:
    """Feed this process's hub in id order, from the bus and from the log."""

    def __init__(
        self,
        log: EventLog,
        hub: Hub,
        credentials: Credentials,
        cache: ReadCache,
        transactions: Transactions,
        latencies: Latencies,
        *,
        tick_seconds: float,
    ):
        self.log = log
        self.hub = hub
        self.credentials = credentials
        self.cache = cache
        self.transactions = transactions
        self.latencies = latencies
        self.tick_seconds = tick_seconds
        self._lock = threading.Lock()

    def start_at_head(self) -> None:
        """Begin at the log's head: what is already logged is history, not news."""
        with self.transactions.read() as conn:
            self.hub.head = self.log.head(conn)

    # What the bus hands over

    def ingest(self, events: list[Event]) -> None:
        """Deliver events to the hub in id order, filling any hole from the log."""
        with self._lock:
            for event in events:
                if event.id <= self.hub.head:
                    continue
                if event.id > self.hub.head + 1:
                    self._deliver_from_log(until=event.id - 1)
                if event.id > self.hub.head:
                    self._to_hub(event)

    def catch_up(self) -> None:
        """Deliver every event the log holds beyond the hub's head."""
        with self._lock:
            self._deliver_from_log(until=None)

    # The log

    def rewind(self) -> None:
        """Follow a log whose head went back (recreated under us): streams get a reset."""
        with self._lock:
            with self.transactions.read() as conn:
                head = self.log.head(conn)
            if head < self.hub.head:
                logger.warning("the log went back from %d to %d: resetting", self.hub.head, head)
                self.hub.rewind(head)

    def positions(self) -> tuple[int, int]:
        """Return the log's head and the hub's head."""
        with self.transactions.read() as conn:
            return self.log.head(conn), self.hub.head

    def _deliver_from_log(self, until: int | None) -> None:
        while True:
            with self.transactions.read() as conn:
                events = self.log.read(conn, self.hub.head, until=until, limit=PAGE)
            for event in events:
                self._to_hub(event)
            if len(events) < PAGE:
                return

    def _to_hub(self, event: Event) -> None:
        # Cached reads of the topic go first, so woken long polls read afresh.
        self.cache.invalidate(event.topic, event.id)
        if event.topic == credentials.TOPIC:
            self.credentials.end(event.data["row"])
        self.hub.deliver(event)
        self.latencies.delivered(event)

    # The tick

    def run(self, bus) -> None:
        """Deliver from the log what the bus did not bring: crashes before publish, outages."""
        seen_head = 0
        while True:
            gevent.sleep(self.tick_seconds if bus.up else min(self.tick_seconds, 0.25))
            try:
                log_head, hub_head = self.positions()
                # With Redis up, events get one tick to arrive before the log is read.
                if log_head > hub_head and (not bus.up or hub_head < seen_head):
                    self.catch_up()
                elif log_head < hub_head:
                    self.rewind()
                seen_head = log_head
            except Exception:
                logger.exception("relay pass failed")
