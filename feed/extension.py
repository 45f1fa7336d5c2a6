"""The Flask extension: the composition root that wires the feed's parts to an app.

`Feed` belongs to a database (its log, idempotency store and capture hooks); `init_app`
builds one `FeedRuntime` per app, which owns the parts and their background work. Each
rule lives in the part named for it: registry (tables, topics), transactions, relay
(ordered ingest), bus, hub, cache, retention, monitor.
"""

from contextlib import AbstractContextManager

import gevent
import redis
import sqlalchemy as sa
from flask import Flask, current_app
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy.orm import Session

from . import ids, schema, writes
from .balance import Balancer, Rule
from .bus import Bus
from .cache import ReadCache
from .capture import Capture
from .credentials import Credentials
from .drain import Drain
from .hub import Hub
from .idempotency import IdempotencyStore
from .latency import Latencies
from .live import LiveTable
from .log import Event, EventLog
from .metrics import FeedMetrics
from .monitor import Monitor
from .openings import Openings
from .pipeliner import Pipeliner
from .policy import TOPIC_POLICIES, TopicPolicies
from .presence import Presence
from .registry import BUILTIN_TOPICS, Registry
from .relay import Relay
from .retention import Retention
from .ring import Ring
from .transactions import Transactions


class Feed:
    """The change feed for one Flask-SQLAlchemy database; `init_app` attaches it to apps."""

    def __init__(
        self,
        db: SQLAlchemy,
        topics: tuple[str, ...] = (),
        topic_policies: TopicPolicies = TOPIC_POLICIES,
    ):
        self.db = db
        self.topics = BUILTIN_TOPICS + tuple(topics)
        self.topic_policies = topic_policies
        self.log = EventLog(db.metadata)
        self.idempotency = IdempotencyStore(db.metadata)
        # The engine's tables, created at start; app migrations pass over them.
        self.own_tables = (self.log.table, self.log.meta, self.idempotency.table)
        # For Alembic's `include_object` (Flask-Migrate's `Migrate(..., include_object=)`).
        self.include_object = schema.excluder(self.own_tables)
        self.capture = Capture(self.log, on_commit=lambda events: runtime().published(events))
        self.capture.attach(db.session)

    def init_app(self, app: Flask) -> "FeedRuntime":
        """Attach the feed to an app and return its runtime."""
        state = FeedRuntime(app, self)
        app.extensions["tidings"] = state
        return state


def runtime() -> "FeedRuntime":
    """Return the feed runtime of the current app."""
    return current_app.extensions["tidings"]


class FeedRuntime:
    """One app's feed: its parts, built once, and their background work."""

    def __init__(self, app: Flask, feed: Feed):
        config = self.config = app.config
        self.app = app
        self.feed = feed
        self.log = feed.log
        self.idempotency = feed.idempotency
        # A name clash is a configuration error: refuse to start rather than misroute.
        self.registry = Registry(feed.db, feed.topics, feed.topic_policies, config)
        with app.app_context():
            self.engine: sa.Engine = feed.db.engine
        self.transactions = Transactions(feed.db, self.engine, config["GROUP_COMMIT_WRITES"])
        self.hub = Hub(
            Ring(
                # Never more than the log keeps: a cursor the log let go of gets its reset.
                min(config["RING_EVENTS"], config["RETENTION_EVENTS"]),
                config["RING_BYTES"],
                config["RETENTION_HOURS"] * 3600,
            )
        )
        self.credentials = Credentials()
        self.metrics = FeedMetrics(config["METRICS_ENABLED"])
        self.latencies = Latencies(config["METRICS_ENABLED"])
        self.cache = ReadCache(
            self.log, max_bytes=config["CACHE_MAX_BYTES"], ttl=config["CACHE_TTL_SECONDS"]
        )
        self.metrics.watch(self.hub, self.cache, self.latencies, self.transactions)
        self.relay = Relay(
            self.log,
            self.hub,
            self.credentials,
            self.cache,
            self.transactions,
            self.latencies,
            app_context=app.app_context,
            tick_seconds=config["RELAY_SECONDS"],
        )
        # Commands of every part (limits, presence, publishing, balance) share one small
        # pool and its pipeline; the subscription has a connection of its own.
        self.pipeliner = Pipeliner.connect(config["REDIS_URL"])
        self.redis = self.pipeliner.client
        self.listener = redis.Redis.from_url(
            config["REDIS_URL"],
            socket_timeout=10,
            socket_connect_timeout=1,
            health_check_interval=30,
        )
        self.bus = Bus(self.redis, self.listener, config["FEED_CHANNEL"], self.relay)
        self.presence = Presence(
            config["REDIS_URL"],
            config["FEED_CHANNEL"],
            lambda data: writes.publish(self, "presence", data),
            app.app_context,
            lease_seconds=config["PRESENCE_LEASE_SECONDS"],
            pipeliner=self.pipeliner,
        )
        self.drain = Drain(self.hub, config["DRAIN_SECONDS"], self.metrics.shed)
        self.openings = Openings(config["STREAM_OPENINGS"])
        self.balancer = Balancer(
            self.redis,
            config["FEED_CHANNEL"] + ":streams",
            self.drain,
            Rule(config["BALANCE_TOLERANCE"], config["BALANCE_SLACK"], config["BALANCE_STEP"]),
            config["BALANCE_SECONDS"],
            self.metrics.balanced,
        )
        self.retention = Retention(app, self.log, self.idempotency, self.transactions)
        self.monitor = Monitor(self)
        self.started = False
        self._greenlets: list[gevent.Greenlet] = []
        schema.ensure(self.engine, feed.own_tables)
        ids.migrate(self.engine, self.registry.tables.values())

    # The parts' entry points, under the names the app and its scripts use

    @property
    def tables(self) -> dict[str, LiveTable]:
        """Return the live tables by name."""
        return self.registry.tables

    @property
    def custom_topics(self) -> tuple[str, ...]:
        """Return the declared custom topics."""
        return self.registry.custom_topics

    def write(self, mutation: str | None = None) -> AbstractContextManager[Session]:
        """Run a write transaction on the session; commit on success, roll back on error."""
        return self.transactions.write(mutation)

    def read(self) -> AbstractContextManager[sa.Connection]:
        """Run a read-only transaction that sees one consistent state of the database."""
        return self.transactions.read()

    def append_to_topic(
        self, session: Session, topic: str, data, *, mutation: str | None = None
    ) -> Event:
        """Append a PUBLISH event to a custom topic in the session's transaction."""
        return writes.append_to_topic(self, session, topic, data, mutation=mutation)

    def prune(self) -> tuple[int, int]:
        """Apply retention to the log and the idempotency keys once."""
        return self.retention.prune()

    def published(self, events: list[Event]) -> None:
        """Take the events of a commit: count and stamp them, and publish them to every
        process."""
        self.metrics.events_published(events)
        self.latencies.published(events)
        self.bus.publish(events)

    # Background work

    def start(self) -> None:
        """Start the listener, the relay, retention and the monitor in this (gevent-patched)
        process."""
        if self.started:
            return
        self.started = True
        with self.app.app_context():
            self.relay.renew_if_restored(self.bus)
            self.relay.start_at_head()
        self.bus.start()
        self._greenlets = [
            gevent.spawn(self.relay.run, self.bus),
            gevent.spawn(self.retention.run),
            gevent.spawn(self.monitor.run),
            gevent.spawn(self.presence.run),
        ]
        if self.config["BALANCE_SECONDS"] > 0:
            self._greenlets.append(gevent.spawn(self.balancer.run))

    def stop(self) -> None:
        """Stop background work."""
        self.bus.stop()
        gevent.killall(self._greenlets, block=True, timeout=2)
        self._greenlets = []
        self.started = False

    def close(self) -> None:
        """Release what the feed holds for its app: background work, Redis and database
        connections. For owners that end an app before the process (tests, scripts)."""
        if self.started:
            self.stop()
        self.listener.close()
        self.redis.connection_pool.disconnect()
        self.engine.dispose()
