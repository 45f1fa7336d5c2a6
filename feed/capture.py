"""Session hooks that write an event row for every live change, in the same transaction."""

from collections.abc import Callable

import sqlalchemy as sa
from sqlalchemy import event as sa_event
from sqlalchemy import inspect
from sqlalchemy.orm import Session, SessionTransaction

from .live import LiveTable, is_live, live_table
from .log import Event, EventLog
from .principal import Principal
from .values import iso, utcnow

# Keys in Session.info.
MUTATION = "tidings.mutation"
# The principal a write transaction acts for (None: the app itself).
PRINCIPAL = "tidings.principal"
_PENDING = "tidings.pending"
APPENDED = "tidings.appended"
# How many events were appended when each open savepoint began.
_SAVEPOINTS = "tidings.savepoints"


def acting(session: Session) -> Principal | None:
    """Return the principal the session's write transaction acts for, if any."""
    return session.info.get(PRINCIPAL)


def event_body(topic: str, op: str, *, pk=None, version=None, row=None, old=None, mutation=None):
    """Return an event without its id, in the protocol's field order."""
    return {
        "id": None,
        "topic": topic,
        "op": op,
        "pk": pk,
        "version": version,
        "row": row,
        "old": old,
        "at": iso(utcnow()),
        "mutation": mutation,
    }


class Capture:
    """Turn live ORM changes into log appends, and hand committed events on."""

    def __init__(self, log: EventLog, on_commit: Callable[[list[Event]], None]):
        self.log = log
        self.on_commit = on_commit

    def attach(self, session_target) -> None:
        """Listen on a Session class or sessionmaker."""
        sa_event.listen(session_target, "before_flush", self._before_flush)
        sa_event.listen(session_target, "after_flush", self._after_flush)
        sa_event.listen(session_target, "after_transaction_create", self._after_begin)
        sa_event.listen(session_target, "after_transaction_end", self._after_end)
        sa_event.listen(session_target, "after_commit", self._after_commit)
        sa_event.listen(session_target, "after_rollback", self._after_rollback)

    def _before_flush(self, session: Session, flush_context, instances) -> None:
        """Stamp versions and note each change with the row as it was."""
        pending = session.info.setdefault(_PENDING, [])
        now = utcnow()
        for obj in session.new:
            if is_live(obj):
                live_table(type(obj)).normalize(obj)
                obj.version = 1
                obj.updated_at = now
                pending.append(("INSERT", obj, None))
        for obj in session.dirty:
            if not is_live(obj):
                continue
            table = live_table(type(obj))
            table.normalize(obj)
            if session.is_modified(obj, include_collections=False):
                old = table.row_from_mapping(_row_values(session, table, obj))
                obj.version = (obj.version or 0) + 1
                obj.updated_at = now
                pending.append(("UPDATE", obj, old))
        for obj in session.deleted:
            if is_live(obj):
                table = live_table(type(obj))
                old = table.row_from_mapping(_row_values(session, table, obj))
                pending.append(("DELETE", obj, old))

    def _after_flush(self, session: Session, flush_context) -> None:
        """Append one event per noted change to the log, on the flush's connection."""
        pending = session.info.pop(_PENDING, None)
        if not pending:
            return
        mutation = session.info.get(MUTATION)
        bodies = []
        for op, obj, old in pending:
            table = live_table(type(obj))
            row = None if op == "DELETE" else table.row(obj)
            version = old["version"] if op == "DELETE" else obj.version
            bodies.append(
                event_body(
                    table.name, op, pk=obj.id, version=version, row=row, old=old, mutation=mutation
                )
            )
        self.append(session, bodies)

    def append(self, session: Session, bodies: list[dict]) -> list[Event]:
        """Append events in the session's transaction; they are handed on at commit."""
        so_far = session.info.setdefault(APPENDED, [])
        last = so_far[-1].id if so_far else None
        appended = self.log.append(session.connection(), bodies, after=last)
        so_far.extend(appended)
        return appended

    def _after_begin(self, session: Session, transaction: SessionTransaction) -> None:
        """Mark where a savepoint's events start."""
        if transaction.nested:
            marks = session.info.setdefault(_SAVEPOINTS, {})
            marks[transaction] = len(session.info.get(APPENDED, ()))

    def _after_end(self, session: Session, transaction: SessionTransaction) -> None:
        if transaction.nested:
            session.info.get(_SAVEPOINTS, {}).pop(transaction, None)

    def _after_commit(self, session: Session) -> None:
        """Hand the transaction's events on once they are durable: at the commit, not when
        a savepoint is released (SQLAlchemy calls both a commit)."""
        if session.in_nested_transaction():
            return
        appended = session.info.pop(APPENDED, None)
        if appended:
            self.on_commit(appended)

    def _after_rollback(self, session: Session) -> None:
        """Forget events whose rows were rolled back: the transaction's, or the savepoint's."""
        session.info.pop(_PENDING, None)
        savepoint = session.get_nested_transaction()
        if savepoint is None:
            session.info.pop(APPENDED, None)
            return
        start = session.info.get(_SAVEPOINTS, {}).get(savepoint, 0)
        del session.info.get(APPENDED, [])[start:]


def _row_values(session: Session, table: LiveTable, obj: object) -> dict:
    """Return column values as they were before pending changes.

    A value set on an expired attribute (after a commit, say) has no history of what it
    replaced: then the stored row, read on the flush's connection, is what it was.
    """
    state = inspect(obj)
    values = {}
    for name in table.columns:
        history = state.attrs[name].history
        if history.deleted:
            values[name] = history.deleted[0]
        elif history.unchanged:
            values[name] = history.unchanged[0]
        elif history.added:
            return _stored_row(session, table, state.identity[0])
        else:
            values[name] = getattr(obj, name)
    return values


def _stored_row(session: Session, table: LiveTable, row_id: int) -> dict:
    """Return a row as the database holds it now, in the session's transaction."""
    query = sa.select(table.model.__table__).where(table.columns["id"] == row_id)
    return dict(session.connection().execute(query).mappings().one())
