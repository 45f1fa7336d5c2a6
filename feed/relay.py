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
from collections.abc import Callable
from contextlib import AbstractContextManager

import gevent

from . import credentials
from .cache import ReadCache
from .credentials import Credentials
from .hub import Hub
from .latency import Latencies
from .log import Event, EventLog, epoch_of
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
        app_context: Callable[[], AbstractContextManager],
        tick_seconds: float,
    ):
        self.log = log
        self.hub = hub
        self.credentials = credentials
        self.cache = cache
        self.transactions = transactions
        self.latencies = latencies
        self.app_context = app_context
        self.tick_seconds = tick_seconds
        self._lock = threading.Lock()

    def start_at_head(self) -> None:
        """Begin at the log's head: what is already logged is history, not news."""
        with self.transactions.read() as conn:
            self.hub.start_at(self.log.head(conn))

    # What the bus hands over

    def ingest(self, events: list[Event]) -> None:
        """Deliver events to the hub in id order, filling any hole from the log."""
        with self._lock:
            again = False
            for event in events:
                if epoch_of(event.id) != epoch_of(self.hub.head):
                    # Stale, or the log moved to another epoch: the log says which.
                    self._follow_log()
                    if epoch_of(event.id) != epoch_of(self.hub.head):
                        continue
                if event.id <= self.hub.head:
                    again = True
                    continue
                if event.id > self.hub.head + 1:
                    self._deliver_from_log(until=event.id - 1)
                if event.id > self.hub.head:
                    self._to_hub(event)
            if again:
                # An id seen before: a duplicate, or the first write to a log restored under
                # us, handing its ids out anew. The log head tells, before it grows past ours.
                self._follow_log()

    def catch_up(self) -> None:
        """Deliver every event the log holds beyond the hub's head."""
        with self._lock:
            self._deliver_from_log(until=None)

    # The log

    def rewind(self) -> None:
        """Follow a log that went back or moved to another epoch: streams get a reset."""
        with self._lock:
            self._follow_log()

    def renew_if_restored(self, bus) -> None:
        """Give a log restored while no server ran a new epoch: Redis saw more of it."""
        with self.transactions.read() as conn:
            epoch = epoch_of(self.log.head(conn))
        # Redis first, the head after: what was published was committed before, so a live
        # log's head is never below it, however busy other processes are meanwhile.
        published = bus.high_water(epoch)
        with self.transactions.read() as conn:
            head = self.log.head(conn)
        if published is not None and published > head and epoch_of(head) == epoch:
            logger.warning("the log is at %d but %d was published: new epoch", head, published)
            self._renew(epoch)

    def _follow_log(self) -> None:
        with self.transactions.read() as conn:
            head = self.log.head(conn)
        if epoch_of(head) == epoch_of(self.hub.head):
            if head >= self.hub.head:
                return
            # Restored from a copy or emptied: the ids after its head would be handed out
            # again, so it goes on as another log, in a new epoch.
            logger.warning("the log went back from %d to %d: new epoch", self.hub.head, head)
            head = self._renew(epoch_of(head))
        logger.warning("the log is at %d, epoch %d: resetting streams", head, epoch_of(head))
        self.hub.rewind(head)

    def _renew(self, epoch: int) -> int:
        """Move the log on from an epoch (unless another process did); return its head."""
        with self.app_context(), self.transactions.write() as session:
            conn = session.connection()
            self.log.renew(conn, epoch)
            return self.log.head(conn)

    def positions(self) -> tuple[int, int]:
        """Return the log's head and the hub's head."""
        with self.transactions.read() as conn:
            return self.log.head(conn), self.hub.head

    def _deliver_from_log(self, until: int | None) -> None:
        while True:
            with self.transactions.read() as conn:
                head = self.log.head(conn)
                same = epoch_of(head) == epoch_of(self.hub.head)
                events = self.log.read(conn, self.hub.head, until=until, limit=PAGE) if same else []
            if not same:
                self._follow_log()
                return
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
                if log_head < hub_head or epoch_of(log_head) != epoch_of(hub_head):
                    self.rewind()
                elif log_head > hub_head and (not bus.up or hub_head < seen_head):
                    self.catch_up()
                seen_head = log_head
            except Exception:
                logger.exception("relay pass failed")
