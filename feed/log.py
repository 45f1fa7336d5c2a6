"""The change log: the events table, appends in commit order, reads, retention."""

import time
from dataclasses import dataclass

import orjson
import sqlalchemy as sa

# Any constant works; it names the lock that serialises appends on PostgreSQL.
_PG_APPEND_LOCK = 0x7469_6469_6E67


class Event:
    """One committed change as the feed moves it around: parsed once, raw bytes kept."""

    __slots__ = ("id", "topic", "data", "raw")

    def __init__(self, data: dict, raw: bytes):
        self.id: int = data["id"]
        self.topic: str = data["topic"]
        self.data = data
        self.raw = raw

    @classmethod
    def from_raw(cls, raw: bytes | str) -> "Event":
        """Parse an event from its JSON payload."""
        if isinstance(raw, str):
            raw = raw.encode()
        return cls(orjson.loads(raw), raw)


@dataclass(frozen=True)
class Bounds:
    """The log's oldest retained id (tail) and newest id (head); head 0 means empty."""

    tail: int
    head: int

    def expired(self, cursor: int) -> bool:
        """Tell whether events after this cursor were already pruned."""
        return cursor < self.tail - 1

    def from_other_epoch(self, cursor: int) -> bool:
        """Tell whether the cursor is newer than anything this log holds."""
        return cursor > self.head


class EventLog:
    """The events table and the queries on it."""

    def __init__(self, metadata: sa.MetaData):
        self.table = sa.Table(
            "tidings_events",
            metadata,
            # INTEGER on SQLite makes the id the rowid; ids are assigned, never generated.
            sa.Column(
                "id",
                sa.BigInteger().with_variant(sa.Integer, "sqlite"),
                primary_key=True,
                autoincrement=False,
            ),
            sa.Column("topic", sa.String(100), nullable=False),
            sa.Column("created_at", sa.Float, nullable=False, index=True),
            sa.Column("payload", sa.Text, nullable=False),
            sa.Index("ix_tidings_events_topic_id", "topic", "id"),
        )

    def append(self, conn: sa.Connection, events: list[dict]) -> list[Event]:
        """Give the events the next ids, insert them, and return them."""
        if conn.dialect.name == "postgresql":
            # Held to commit, so ids are handed out in commit order with no holes.
            conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_PG_APPEND_LOCK)))
        head = conn.execute(sa.select(sa.func.max(self.table.c.id))).scalar() or 0
        now = time.time()
        appended, rows = [], []
        for offset, data in enumerate(events, start=1):
            data["id"] = head + offset
            raw = orjson.dumps(data)
            appended.append(Event(data, raw))
            rows.append(
                {
                    "id": data["id"],
                    "topic": data["topic"],
                    "created_at": now,
                    "payload": raw.decode(),
                }
            )
        conn.execute(self.table.insert(), rows)
        return appended

    def bounds(self, conn: sa.Connection) -> Bounds:
        """Return the log's tail and head."""
        c = self.table.c
        tail, head = conn.execute(sa.select(sa.func.min(c.id), sa.func.max(c.id))).one()
        head = head or 0
        return Bounds(tail or head + 1, head)

    def head(self, conn: sa.Connection) -> int:
        """Return the newest event id, 0 when the log is empty."""
        return conn.execute(sa.select(sa.func.max(self.table.c.id))).scalar() or 0

    def read(
        self,
        conn: sa.Connection,
        after: int,
        *,
        topics: list[str] | None = None,
        until: int | None = None,
        limit: int = 1000,
    ) -> list[Event]:
        """Return up to `limit` events with after < id <= until, in order."""
        c = self.table.c
        query = sa.select(c.payload).where(c.id > after).order_by(c.id).limit(limit)
        if topics is not None:
            query = query.where(c.topic.in_(topics))
        if until is not None:
            query = query.where(c.id <= until)
        return [Event.from_raw(payload) for payload in conn.execute(query).scalars()]

    def prune(self, conn: sa.Connection, *, max_age_seconds: float, max_events: int) -> int:
        """Delete events past retention, never the head; return how many went."""
        c = self.table.c
        head = self.head(conn)
        if not head:
            return 0
        too_old = c.created_at < time.time() - max_age_seconds
        too_many = c.id <= head - max_events
        result = conn.execute(self.table.delete().where(c.id < head, sa.or_(too_old, too_many)))
        return result.rowcount or 0
