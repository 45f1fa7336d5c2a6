"""The change log: the events table and its epoch, appends in commit order, reads, retention."""

import secrets
import time
from dataclasses import dataclass

import orjson
import sqlalchemy as sa

# Any constant works; it names the lock that serialises appends on PostgreSQL.
_PG_APPEND_LOCK = 0x7469_6469_6E67

# An event id is its log's epoch in the high bits and a counter in the low COUNTER_BITS:
# 16 + 37 bits stay below 2^53, so JavaScript reads every id exactly. 2^37 events are
# 4.3 years at 1,000 events a second; a log that uses them up moves to a new epoch.
COUNTER_BITS = 37
EPOCH_BITS = 16


def epoch_of(event_id: int) -> int:
    """Return the epoch an event id (or cursor) belongs to."""
    return event_id >> COUNTER_BITS


def first_id(epoch: int) -> int:
    """Return the cursor before an epoch's first event (the head of its empty log)."""
    return epoch << COUNTER_BITS


def same_log(cursor: int, head: int) -> bool:
    """Tell whether a cursor may be read on against a log head: 0 (nothing seen) always may."""
    return cursor == 0 or epoch_of(cursor) == epoch_of(head)


def _new_epoch(current: int | None) -> int:
    """Draw an epoch at random, never 0 (the logs made before epochs) nor the current one."""
    while True:
        epoch = 1 + secrets.randbelow(2**EPOCH_BITS - 1)
        if epoch != current:
            return epoch


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
    """The log's oldest retained id (tail), newest id (head) and epoch; `whole` when the log
    holds every event since it was created (its epoch was never renewed, nothing pruned)."""

    tail: int
    head: int
    epoch: int = 0
    whole: bool = True

    def expired(self, cursor: int) -> bool:
        """Tell whether events after this cursor were already pruned."""
        if cursor == 0:
            return not self.whole
        return epoch_of(cursor) == self.epoch and cursor < self.tail - 1

    def from_other_epoch(self, cursor: int) -> bool:
        """Tell whether the cursor belongs to another log: another epoch, or past the head."""
        return cursor != 0 and (epoch_of(cursor) != self.epoch or cursor > self.head)


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
        # One row: the epoch whose range new ids come from, and whether it was renewed
        # (the log was restored or emptied under it) rather than chosen with the log.
        self.meta = sa.Table(
            "tidings_log",
            metadata,
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
            sa.Column("epoch", sa.BigInteger, nullable=False),
            sa.Column("renewed", sa.Boolean, nullable=False, default=False),
        )
        sa.event.listen(
            self.meta, "after_create", lambda _table, conn, **_kw: self.choose_epoch(conn)
        )
        # Built once: building them took longer than running them, on every append.
        epoch, renewed = self._state()
        self._epoch_query = sa.select(epoch)
        self._position_query = sa.select(epoch, self._end(epoch, newest=True))
        self._bounds_query = sa.select(
            epoch, renewed, self._end(epoch, newest=False), self._end(epoch, newest=True)
        )

    def choose_epoch(self, conn: sa.Connection) -> None:
        """Give a log its epoch: the one its ids already use, or a random one when empty."""
        if conn.execute(sa.select(self.meta.c.id)).first() is not None:
            return
        newest = None
        if sa.inspect(conn).has_table(self.table.name):
            newest = conn.execute(sa.select(sa.func.max(self.table.c.id))).scalar()
        # A log from before epochs keeps its small ids as epoch 0: its cursors stay valid.
        epoch = _new_epoch(None) if newest is None else epoch_of(newest)
        conn.execute(self.meta.insert().values(id=1, epoch=epoch, renewed=False))

    def _state(self) -> tuple[sa.ColumnElement, sa.ColumnElement]:
        """Return the current epoch and renewed flag as SQL (epoch 0 for a log without)."""
        m = self.meta.c
        epoch = sa.func.coalesce(sa.select(m.epoch).where(m.id == 1).scalar_subquery(), 0)
        renewed = sa.func.coalesce(sa.select(m.renewed).where(m.id == 1).scalar_subquery(), False)
        return epoch, renewed

    def _end(self, epoch: sa.ColumnElement, *, newest: bool) -> sa.ScalarSelect:
        """Return the epoch's newest (or oldest) event id as SQL, NULL while it has none."""
        c = self.table.c
        in_epoch = sa.and_(c.id > epoch * 2**COUNTER_BITS, c.id < (epoch + 1) * 2**COUNTER_BITS)
        # ORDER BY + LIMIT walks the primary key from one end; SQLite's max() over a range
        # scans the whole range, every event of the epoch.
        order = c.id.desc() if newest else c.id.asc()
        return sa.select(c.id).where(in_epoch).order_by(order).limit(1).scalar_subquery()

    def renew(self, conn: sa.Connection, expected: int) -> int | None:
        """Move a log to a new epoch, unless it left `expected` already; return the new one.

        Its events go: their ids belong to another log now, whose cursors all reset.
        """
        if conn.dialect.name == "postgresql":
            conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_PG_APPEND_LOCK)))
        current = conn.execute(self._epoch_query).scalar()
        if current != expected:
            return None
        epoch = _new_epoch(current)
        m = self.meta
        updated = conn.execute(m.update().where(m.c.id == 1).values(epoch=epoch, renewed=True))
        if not updated.rowcount:
            conn.execute(m.insert().values(id=1, epoch=epoch, renewed=True))
        conn.execute(self.table.delete())
        return epoch

    def append(
        self, conn: sa.Connection, events: list[dict], *, after: int | None = None
    ) -> list[Event]:
        """Give the events the next ids, insert them, and return them.

        `after` is the last id this transaction appended, if it did: then it is the head,
        and on PostgreSQL the ordering lock is held already.
        """
        if after is not None and epoch_of(after + len(events)) == epoch_of(after):
            head = after
        else:
            head = self._reserve(conn, len(events))
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

    def _reserve(self, conn: sa.Connection, count: int) -> int:
        """Take the ordering lock and return the head `count` new ids follow."""
        if conn.dialect.name == "postgresql":
            # Held to commit, so ids are handed out in commit order with no holes.
            conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_PG_APPEND_LOCK)))
        epoch, head = self._position(conn)
        if epoch_of(head + count) != epoch:
            # The epoch's counter is used up: go on in a new range, as another log.
            head = first_id(self.renew(conn, epoch))
        return head

    def _position(self, conn: sa.Connection) -> tuple[int, int]:
        """Return the epoch and the head (the epoch's first id while it has no event)."""
        epoch, head = conn.execute(self._position_query).one()
        return epoch, head or first_id(epoch)

    def bounds(self, conn: sa.Connection) -> Bounds:
        """Return the log's tail, head and epoch."""
        epoch, renewed, tail, head = conn.execute(self._bounds_query).one()
        head = head or first_id(epoch)
        tail = tail or head + 1
        return Bounds(tail, head, epoch, not renewed and tail == first_id(epoch) + 1)

    def head(self, conn: sa.Connection) -> int:
        """Return the newest event id; for a log without events, its epoch's first id."""
        return self._position(conn)[1]

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
