"""Database faults under SQLite: another connection holding the write lock, the disk full."""

import resource
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..servers import TidingsServer


def sqlite_path(database_url: str) -> Path:
    """Return the file of a sqlite:/// URL."""
    return Path(database_url.removeprefix("sqlite:///"))


@contextmanager
def write_locked(database_url: str) -> Iterator[sqlite3.Connection]:
    """Hold SQLite's write lock from another connection for the block, as a long batch job
    or a backup tool would; every other writer waits for it."""
    connection = sqlite3.connect(sqlite_path(database_url), isolation_level=None)
    try:
        connection.execute("BEGIN IMMEDIATE")
        yield connection
        connection.execute("ROLLBACK")
    finally:
        connection.close()


def lock_for(database_url: str, seconds: float) -> threading.Thread:
    """Hold the write lock for some seconds in a thread; return the started thread once the
    lock is held."""
    held = threading.Event()

    def hold() -> None:
        with write_locked(database_url):
            held.set()
            threading.Event().wait(seconds)

    thread = threading.Thread(target=hold, daemon=True)
    thread.start()
    held.wait(10)
    return thread


def _database_bytes(database_url: str) -> int:
    """Return the size of the biggest file SQLite writes for a database (file, WAL)."""
    path = sqlite_path(database_url)
    sizes = [p.stat().st_size for p in (path, Path(f"{path}-wal")) if p.exists()]
    return max(sizes)


def _limit_files(pids: list[int], size: int) -> None:
    for pid in pids:
        resource.prlimit(pid, resource.RLIMIT_FSIZE, (size, resource.RLIM_INFINITY))


@contextmanager
def disk_full(server: TidingsServer, database_url: str) -> Iterator[None]:
    """Let the server's workers grow no file beyond the database's present size for the block,
    as a full disk would (writes fail with EFBIG; Python ignores SIGXFSZ); then give the space
    back."""
    pids = server.worker_pids()
    _limit_files(pids, _database_bytes(database_url))
    try:
        yield
    finally:
        _limit_files(pids, resource.RLIM_INFINITY)
