"""The Flask extension: wires capture, log, bus and hub to an app and its database."""

import logging
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, nullcontext

import gevent
import redis
import sqlalchemy as sa
from flask import Flask, current_app
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import event as sa_event
from sqlalchemy.orm import Session

from . import ids
from .bus import Bus
from .cache import ReadCache
from .capture import _APPENDED, MUTATION, Capture, event_body
from .hub import Hub
from .idempotency import IdempotencyStore
from .live import LiveTable, is_live, live_table
from .log import Event, EventLog, epoch_of
from .metrics import FeedMetrics
from .monitor import Monitor

logger = logging.getLogger("tidings")

# Custom topics every Tidings app has.
BUILTIN_TOPICS = ("presence", "monitor")
# Names under /api/ that are routes, so no live table may take them.
RESERVED_NAMES = frozenset({"tables", "changes", "batch", "publish"})


def check_names(tables: Iterable[str], custom_topics: Iterable[str]) -> None:
    """Refuse live table names that a fixed /api/ route or a custom topic already takes."""
    clashes = set(tables) & (RESERVED_NAMES | set(custom_topics))
    if clashes:
        raise RuntimeError(
            f"live table names {sorted(clashes)} clash with fixed /api/ routes or custom "
            "topics; rename them"
        )


class Feed:
    """The change feed for one Flask-SQLAlchemy database; `init_app` attaches it to apps."""

    def __init__(self, db: SQLAlchemy, topics: tuple[str, ...] = ()):
        self.db = db
        self.topics = BUILTIN_TOPICS + tuple(topics)
        self.log = EventLog(db.metadata)
        self.idempotency = IdempotencyStore(db.metadata)
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


def _tune_sqlite(engine: sa.Engine) -> None:
    """Use WAL, and real transactions: BEGIN for reads, BEGIN IMMEDIATE for writes."""

    @sa_event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):
        # Let SQLAlchemy, not the driver, decide when transactions begin.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        for pragma in (
            "journal_mode=WAL",
            "synchronous=NORMAL",
            "busy_timeout=10000",
            "foreign_keys=ON",
        ):
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()

    @sa_event.listens_for(engine, "begin")
    def _on_begin(conn):
        write = conn.get_execution_options().get("tidings_write")
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


class FeedRuntime:
    """The feed's per-app state: tables, topics, hub, bus and background work."""

    def __init__(self, app: Flask, feed: Feed):
        self.app = app
        self.feed = feed
        self.config = app.config
        self.log = feed.log
        self.idempotency = feed.idempotency
        self.hub = Hub()
        self.metrics = FeedMetrics(app.config["METRICS_ENABLED"])
        self.cache = ReadCache(
            self.log,
            self.metrics,
            max_bytes=app.config["CACHE_MAX_BYTES"],
            ttl=app.config["CACHE_TTL_SECONDS"],
        )
        self.monitor = Monitor(self)
        with app.app_context():
            self.engine: sa.Engine = feed.db.engine
        self.sqlite = self.engine.dialect.name == "sqlite"
        if self.sqlite:
            _tune_sqlite(self.engine)
        # SQLite lets one writer in at a time; greenlets of this process queue here
        # instead of blocking the whole process inside the driver.
        self._write_lock = threading.Lock() if self.sqlite else None
        self._ingest_lock = threading.Lock()
        self.redis = redis.Redis.from_url(
            app.config["REDIS_URL"],
            socket_timeout=10,
            socket_connect_timeout=1,
            health_check_interval=30,
        )
        self.bus = Bus(
            self.redis,
            app.config["FEED_CHANNEL"],
            ingest=self.ingest,
            catch_up=self.catch_up,
            positions=self._positions,
            rewind=self.rewind,
            relay_seconds=app.config["RELAY_SECONDS"],
        )
        self.started = False
        self._greenlets: list[gevent.Greenlet] = []
        self._tables: dict[str, LiveTable] | None = None
        self._tables_seen = 0
        # A name clash is a configuration error: refuse to start rather than misroute.
        self._load_tables()
        ids.migrate(self.engine, self._tables.values())

    # Tables and topics

    @property
    def tables(self) -> dict[str, LiveTable]:
        """Return the live tables by name."""
        if len(self.feed.db.Model.registry.mappers) != self._tables_seen:
            self._load_tables()
        return self._tables

    def _load_tables(self) -> None:
        """Describe the live models and check their names."""
        mappers = self.feed.db.Model.registry.mappers
        models = (m.class_ for m in mappers if is_live(m.class_))
        tables = {table.name: table for table in map(live_table, models)}
        check_names(tables, self.custom_topics)
        self._tables, self._tables_seen = tables, len(mappers)

    @property
    def custom_topics(self) -> tuple[str, ...]:
        """Return the declared custom topics."""
        return self.feed.topics + tuple(self.config["TOPICS"])

    # Transactions

    @contextmanager
    def write(self, mutation: str | None = None) -> Iterator[Session]:
        """Run a write transaction on the session; commit on success, roll back on error."""
        session = self.feed.db.session()
        with self._write_lock or nullcontext():
            if session.in_transaction():
                session.rollback()
            session.connection(execution_options={"tidings_write": True})
            session.info[MUTATION] = mutation
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise
            finally:
                session.info.pop(MUTATION, None)

    def append_to_topic(
        self, session: Session, topic: str, data, *, mutation: str | None = None
    ) -> Event:
        """Append a PUBLISH event to a custom topic in the session's transaction."""
        if topic not in self.custom_topics:
            raise ValueError(f"{topic!r} is not a declared custom topic")
        body = event_body(topic, "PUBLISH", row=data, mutation=mutation)
        return self.feed.capture.append(session, [body])[0]

    @staticmethod
    def appended(session: Session) -> list[Event]:
        """Return the events this transaction appended so far."""
        session.flush()
        return list(session.info.get(_APPENDED, ()))

    @contextmanager
    def read(self) -> Iterator[sa.Connection]:
        """Run a read-only transaction that sees one consistent state of the database."""
        with self.engine.connect() as conn:
            if not self.sqlite:
                conn = conn.execution_options(isolation_level="REPEATABLE READ")
            with conn.begin():
                yield conn

    # Delivery into this process's hub

    def published(self, events: list[Event]) -> None:
        """Take the events of a commit: publish them to every process."""
        self.metrics.events_published(events)
        self.bus.publish(events)

    def ingest(self, events: list[Event]) -> None:
        """Deliver events to the hub in id order, filling any hole from the log."""
        with self._ingest_lock:
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
        with self._ingest_lock:
            self._deliver_from_log(until=None)

    def _deliver_from_log(self, until: int | None) -> None:
        page = 1000
        while True:
            with self.read() as conn:
                head = self.log.head(conn)
                if epoch_of(head) != epoch_of(self.hub.head):
                    events = None
                else:
                    events = self.log.read(conn, self.hub.head, until=until, limit=page)
            if events is None:
                self._follow_log()
                return
            for event in events:
                self._to_hub(event)
            if len(events) < page:
                return

    def _to_hub(self, event: Event) -> None:
        # Cached reads of the topic go first, so woken long polls read afresh.
        self.cache.invalidate(event.topic, event.id)
        self.hub.deliver(event)
        self.metrics.event_delivered(event)

    def rewind(self) -> None:
        """Follow a log that went back or moved to another epoch: streams get a reset."""
        with self._ingest_lock:
            self._follow_log()

    def _follow_log(self) -> None:
        with self.read() as conn:
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
        with self.app.app_context(), self.write() as session:
            conn = session.connection()
            self.log.renew(conn, epoch)
            return self.log.head(conn)

    def _renew_if_restored(self) -> None:
        """Give a log restored while no server ran a new epoch: Redis saw more of it."""
        with self.read() as conn:
            epoch = epoch_of(self.log.head(conn))
        # Redis first, the head after: what was published was committed before, so a live
        # log's head is never below it, however busy other processes are meanwhile.
        published = self.bus.high_water(epoch)
        with self.read() as conn:
            head = self.log.head(conn)
        if published is not None and published > head and epoch_of(head) == epoch:
            logger.warning("the log is at %d but %d was published: new epoch", head, published)
            self._renew(epoch_of(head))

    def _positions(self) -> tuple[int, int]:
        with self.read() as conn:
            return self.log.head(conn), self.hub.head

    # Background work

    def start(self) -> None:
        """Start the listener, the relay and retention in this (gevent-patched) process."""
        if self.started:
            return
        self.started = True
        with self.app.app_context():
            self._renew_if_restored()
            with self.read() as conn:
                self.hub.head = self.log.head(conn)
        self.bus.start()
        self._greenlets.append(gevent.spawn(self._prune_forever))
        self._greenlets.append(gevent.spawn(self.monitor.run))

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
        self.redis.close()
        self.engine.dispose()

    def prune(self) -> tuple[int, int]:
        """Apply retention to the log and the idempotency keys once."""
        hours = self.config["RETENTION_HOURS"]
        with self.app.app_context(), self.write() as session:
            conn = session.connection()
            events = self.log.prune(
                conn, max_age_seconds=hours * 3600, max_events=self.config["RETENTION_EVENTS"]
            )
            keys = self.idempotency.prune(conn, self.config["IDEMPOTENCY_HOURS"] * 3600)
        return events, keys

    def _prune_forever(self) -> None:
        while True:
            gevent.sleep(self.config["PRUNE_SECONDS"])
            try:
                pruned, _ = self.prune()
                if pruned:
                    logger.info("retention pruned %d events", pruned)
            except Exception:
                logger.exception("retention pass failed")
