"""Redis pub/sub: publish after commit, and one listener per process."""

import logging
import time
from collections import deque
from typing import Protocol

import gevent
import redis
from gevent.event import Event as Signal

from .log import Event, epoch_of

logger = logging.getLogger("tidings.bus")

# Errors that mean "Redis is not there right now".
REDIS_DOWN = (redis.RedisError, OSError)


class Sink(Protocol):
    """Where the bus hands what it receives: the relay, which keeps the hub in order."""

    def ingest(self, events: list[Event]) -> None:
        """Take events in the order they arrived; repeats and holes are the sink's to sort."""

    def catch_up(self) -> None:
        """Read from the log whatever was committed while the bus was not listening."""


class Bus:
    """Move committed events between processes through one Redis channel.

    Redis is only the fast path: whatever it misses, the relay reads from the log.
    """

    def __init__(self, client: redis.Redis, listener: redis.Redis, channel: str, sink: Sink):
        """Publish through `client` (the process's command pool); subscribe on a connection
        of `listener`'s, held as long as the subscription."""
        self.client = client
        self.listener = listener
        self.channel = channel
        self.sink = sink
        # None until the listener's first attempt: publishing is still tried then, so a
        # worker's first writes reach the others through Redis, not a relay tick later.
        self.up: bool | None = None
        self.down_since: float | None = time.time()
        self.published = 0
        self._greenlets: list[gevent.Greenlet] = []
        self._outbox: deque[Event] = deque()
        self._outbox_signal = Signal()

    def start(self) -> None:
        """Start the publisher and the listener greenlets."""
        self._greenlets = [gevent.spawn(self._publish_queued), gevent.spawn(self._listen)]

    def stop(self) -> None:
        """Stop the background greenlets."""
        gevent.killall(self._greenlets, block=True, timeout=2)
        self._greenlets = []

    def _mark(self, up: bool) -> None:
        if up and not self.up:
            logger.info("redis reachable: live path on")
            self.down_since = None
        elif not up and self.up:
            logger.warning("redis unreachable: serving from the log")
            self.down_since = time.time()
        self.up = up

    def publish(self, events: list[Event]) -> None:
        """Publish committed events to every process.

        A serving process queues them for its publisher greenlet, so the write's response
        does not wait on Redis and commits arriving together go out in one round trip.
        A process without greenlets (a CLI command, a script) publishes at once.
        """
        if self._greenlets:
            self._outbox.extend(events)
            self._outbox_signal.set()
            return
        try:
            self._send(events)
        except REDIS_DOWN:
            self._mark(False)

    def _send(self, events: list[Event]) -> None:
        with self.client.pipeline(transaction=False) as pipe:
            for event in events:
                pipe.publish(self.channel, event.raw)
            # The newest id published per epoch, kept outside the database, tells a log
            # restored from a copy while no server ran (GT keeps the maximum).
            newest = max(event.id for event in events)
            pipe.zadd(self._heads, {str(epoch_of(newest)): newest}, gt=True)
            pipe.execute()
        self.published += len(events)

    @property
    def _heads(self) -> str:
        return f"{self.channel}:heads"

    def high_water(self, epoch: int) -> int | None:
        """Return the newest id published in an epoch, None when unknown or Redis is down."""
        try:
            score = self.client.zscore(self._heads, str(epoch))
        except REDIS_DOWN:
            return None
        return None if score is None else int(score)

    def _publish_queued(self) -> None:
        """Drain the outbox; while Redis is down, deliver here from memory instead."""
        while True:
            self._outbox_signal.wait()
            self._outbox_signal.clear()
            batch = list(self._outbox)
            self._outbox.clear()
            if not batch:
                continue
            try:
                if self.up is not False:
                    try:
                        self._send(batch)
                        continue
                    except REDIS_DOWN:
                        # Only the listener marks Redis down, because only it marks Redis
                        # up again: one that kept its connection through a stall never would.
                        logger.warning("redis publish failed: delivering here and from the log")
                # Other processes pick these up from the log through their relay.
                self.sink.ingest(batch)
            except Exception:
                # The relay delivers these from the log; keep publishing what comes next.
                logger.exception("publishing a batch failed")

    def ping(self) -> bool:
        """Tell whether Redis answers right now."""
        try:
            return bool(self.client.ping())
        except REDIS_DOWN:
            return False

    def _listen(self) -> None:
        """Hold this process's one subscription, reconnecting with backoff when it drops."""
        backoff = 0.05
        while True:
            pubsub = self.listener.pubsub(ignore_subscribe_messages=True)
            try:
                pubsub.subscribe(self.channel)
                self._mark(True)
                backoff = 0.05
                # Whatever was committed while we were away comes from the log.
                self.sink.catch_up()
                while True:
                    message = pubsub.get_message(timeout=5.0)
                    if message is None:
                        continue
                    messages = [message]
                    while (message := pubsub.get_message(timeout=0)) is not None:
                        messages.append(message)
                    batch = [event for event in map(self._parse, messages) if event]
                    self.sink.ingest(batch)
            except REDIS_DOWN as exc:
                self._mark(False)
                logger.debug("listener lost redis: %s", exc)
            except Exception:
                # Never let one bad pass end the process's only subscription: subscribe
                # again, and the catch-up that follows reads what was missed from the log.
                logger.exception("listener pass failed")
            finally:
                try:
                    pubsub.close()
                except REDIS_DOWN:
                    pass
            gevent.sleep(backoff)
            backoff = min(backoff * 2, 2.0)

    def _parse(self, message: dict) -> Event | None:
        """Return the event a message carries, or None when it is not one of ours."""
        try:
            event = Event.from_raw(message["data"])
            if isinstance(event.id, int) and isinstance(event.topic, str):
                return event
        except (ValueError, TypeError, KeyError):
            pass
        # Anything may share the channel (another app, an older version): skip it.
        logger.warning("ignored a message on %s that is not an event", self.channel)
        return None
