"""Transactions: one write at a time on SQLite, consistent reads, and SQLite's tuning."""

import fcntl
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

import sqlalchemy as sa
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import event as sa_event
from sqlalchemy.orm import Session

from .capture import APPENDED, MUTATION, PRINCIPAL
from .group_commit import GroupCommit, Work
from .log import Event
from .principal import Principal

# How long a write waits for SQLite's write lock before it fails (then a 503).
LOCK_WAIT_SECONDS = 10.0
# SQLite's own busy handler sleeps inside the driver, which stops every greenlet of the
# process; it only covers short waits (a checkpoint), writers wait for the lock in Python.
BUSY_TIMEOUT_MS = 20


def _begin_immediate(conn: sa.Connection) -> None:
    """Take SQLite's write lock, waiting for it without blocking other greenlets."""
    deadline = time.monotonic() + LOCK_WAIT_SECONDS
    pause = 0.002
    while True:
        try:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
            return
        except sa.exc.OperationalError as error:
            if "locked" not in str(error.orig) or time.monotonic() + pause > deadline:
                raise
        # time.sleep is gevent's under gunicorn: the process serves others meanwhile.
        time.sleep(pause)
        pause = min(pause * 2, 0.05)


class FileLock:
    """The lock every process writing one SQLite file takes before BEGIN IMMEDIATE.

    Waiting on it leaves the process's other greenlets running; waiting inside SQLite's busy
    handler (or for BEGIN IMMEDIATE to stop failing) stopped the whole process, so a second
    worker was no faster than one.
    """

    PAUSE_SECONDS = 0.0005

    def __init__(self, path: str):
        self.path = path
        self._fd: int | None = None
        self._pid = 0

    def _file(self) -> int:
        # One descriptor per process: one inherited across fork would be the same lock.
        if self._pid != os.getpid():
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            self._pid = os.getpid()
        return self._fd

    def __enter__(self) -> "FileLock":
        fd = self._file()
        deadline = time.monotonic() + LOCK_WAIT_SECONDS
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return self
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise sa.exc.OperationalError(
                        "flock", None, Exception("database is locked")
                    ) from None
            # gevent's sleep under gunicorn: the process serves others meanwhile.
            time.sleep(self.PAUSE_SECONDS)

    def __exit__(self, *exc) -> None:
        fcntl.flock(self._fd, fcntl.LOCK_UN)


def lock_path(engine: sa.Engine) -> str | None:
    """Return the lock file beside a SQLite database file (none for an in-memory one)."""
    database = engine.url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return os.path.abspath(database) + "-writer"


def tune_sqlite(engine: sa.Engine) -> None:
    """Use WAL, and real transactions: BEGIN for reads, BEGIN IMMEDIATE for writes."""

    @sa_event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):
        # Let SQLAlchemy, not the driver, decide when transactions begin.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        for pragma in (
            "journal_mode=WAL",
            "synchronous=NORMAL",
            f"busy_timeout={BUSY_TIMEOUT_MS}",
            "foreign_keys=ON",
        ):
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()

    @sa_event.listens_for(engine, "begin")
    def _on_begin(conn):
        write = conn.get_execution_options().get("tidings_write")
        if write:
            _begin_immediate(conn)
        else:
            conn.exec_driver_sql("BEGIN")


class Transactions:
    """Open write transactions on the app's session and read transactions on its engine."""

    def __init__(self, db: SQLAlchemy, engine: sa.Engine, group_writes: int = 1):
        self.db = db
        self.engine = engine
        self.sqlite = engine.dialect.name == "sqlite"
        # Read transactions begun, for /metrics.
        self.reads = 0
        if self.sqlite:
            tune_sqlite(engine)
        # SQLite lets one writer in at a time; greenlets of this process queue here
        # instead of blocking the whole process inside the driver.
        self._write_lock = threading.Lock() if self.sqlite else None
        path = lock_path(engine) if self.sqlite else None
        self._file_lock = FileLock(path) if path else None
        # SQLite only. On PostgreSQL a group's later writes would take row locks while it
        # holds the append lock its first write took, and groups of two nodes deadlock on
        # each other's rows (measured: 503s under 8 writers over 2 nodes).
        grouped = group_writes > 1 and self.sqlite
        self._group = GroupCommit(self, group_writes) if grouped else None

    def run(
        self, work: Work, *, mutation: str | None = None, principal: Principal | None = None
    ) -> Any:
        """Return `work(session)` once the write transaction it ran in committed: with other
        writes of this process (group commit, each in its savepoint) or alone."""
        if self._group is not None:
            return self._group.run(work, mutation=mutation, principal=principal)
        with self.write(mutation=mutation, principal=principal) as session:
            return work(session)

    @contextmanager
    def write(
        self, mutation: str | None = None, principal: Principal | None = None
    ) -> Iterator[Session]:
        """Run a write transaction on the session; commit on success, roll back on error.

        The principal is kept in the session for hooks that record who acted (the audit log).
        """
        session = self.db.session()
        with self._write_lock or nullcontext(), self._file_lock or nullcontext():
            if session.in_transaction():
                session.rollback()
            session.connection(execution_options={"tidings_write": True})
            session.info[MUTATION] = mutation
            session.info[PRINCIPAL] = principal
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise
            finally:
                session.info.pop(MUTATION, None)
                session.info.pop(PRINCIPAL, None)

    @contextmanager
    def read(self) -> Iterator[sa.Connection]:
        """Run a read-only transaction that sees one consistent state of the database."""
        self.reads += 1
        with self.engine.connect() as conn:
            if not self.sqlite:
                conn = conn.execution_options(isolation_level="REPEATABLE READ")
            with conn.begin():
                yield conn

    def answers(self) -> bool:
        """Tell whether the database answers `SELECT 1`."""
        try:
            with self.engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
            return True
        except sa.exc.SQLAlchemyError:
            return False

    @staticmethod
    def appended(session: Session) -> list[Event]:
        """Return the events this transaction appended so far."""
        session.flush()
        return list(session.info.get(APPENDED, ()))
