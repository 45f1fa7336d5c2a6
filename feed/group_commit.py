"""Group commit: the writes a process has waiting go into one transaction, a savepoint each.

The first write to arrive leads: once it holds the write transaction it takes every write
queued by then (up to a bound), applies each inside its own SAVEPOINT, commits once, and
only then hands each write its answer, or its own error: a write that fails rolls back its
savepoint alone. Writes that arrive meanwhile wait for the next group, led by the first of
them. Appends stay in one transaction under the log's ordering, so ids stay gapless and in
commit order; a rolled-back write's ids are taken again by the next one.
"""

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import Session

from .capture import MUTATION, PRINCIPAL
from .principal import Principal

if TYPE_CHECKING:
    from .transactions import Transactions

Work = Callable[[Session], Any]


class _Write:
    """One queued write: its work, whom it acts for, and what it came to."""

    __slots__ = ("work", "mutation", "principal", "woken", "leads", "result", "error")

    def __init__(self, work: Work, mutation: str | None, principal: Principal | None):
        self.work = work
        self.mutation = mutation
        self.principal = principal
        self.woken = threading.Event()
        self.leads = False
        self.result: Any = None
        self.error: BaseException | None = None

    def answer(self) -> Any:
        """Return the write's result, or raise its error."""
        if self.error is not None:
            raise self.error
        return self.result


class GroupCommit:
    """Apply a process's concurrent writes in shared transactions, answered after commit."""

    def __init__(self, transactions: "Transactions", max_writes: int):
        self.transactions = transactions
        self.max_writes = max_writes
        self._queue: list[_Write] = []
        self._leading = False
        # The thread (greenlet, under gevent) running the current group.
        self._leader: int | None = None
        self._lock = threading.Lock()

    def run(self, work: Work, *, mutation: str | None, principal: Principal | None) -> Any:
        """Apply `work(session)` in the next group's transaction; return what it returned
        once that transaction committed, or raise what it raised."""
        write = _Write(work, mutation, principal)
        with self._lock:
            if self._leader == threading.get_ident():
                raise RuntimeError("a write inside a group's transaction would wait for itself")
            self._queue.append(write)
            leads = write.leads = not self._leading
            self._leading = True
        if not leads:
            self._wait(write)
        if write.leads:
            self._leader = threading.get_ident()
            try:
                self._lead()
            finally:
                self._hand_over()
        return write.answer()

    def _wait(self, write: _Write) -> None:
        """Wait until the write is answered or leads; a waiter stopped meanwhile (its
        greenlet killed) leaves the queue, and hands the leading on if it had it."""
        try:
            write.woken.wait()
        except BaseException:
            with self._lock:
                if write in self._queue:
                    self._queue.remove(write)
            if write.leads:
                self._hand_over()
            raise

    def _take(self) -> list[_Write]:
        """Take the writes queued so far, oldest first, up to the bound."""
        with self._lock:
            group = self._queue[: self.max_writes]
            del self._queue[: self.max_writes]
        return group

    def _lead(self) -> None:
        """Run one group: each write in its savepoint, one commit, then every answer."""
        group: list[_Write] = []
        try:
            with self.transactions.write() as session:
                # One turn for the process's other requests first (under gevent nothing else
                # runs while a group does): those about to write join this group.
                time.sleep(0)
                # Taken once the transaction is open: what arrived during the wait joins.
                group = self._take()
                if len(group) == 1:
                    # Alone, a write needs no savepoint: its error rolls the transaction back.
                    _act_for(session, group[0])
                    group[0].result = group[0].work(session)
                else:
                    for write in group:
                        _apply(session, write)
        except BaseException as error:
            # No transaction, or its commit failed: no write of the group is stored.
            group = group or self._take()
            for write in group:
                write.result, write.error = None, error
                if not write.leads and not isinstance(error, Exception):
                    # The leader was stopped (a timeout, an exit): that is its own to raise.
                    write.error = RuntimeError("the write's group was interrupted")
            if not isinstance(error, Exception):
                raise
        finally:
            for write in group:
                if not write.leads:
                    write.woken.set()

    def _hand_over(self) -> None:
        """Let the oldest waiting write lead the next group, or end the leading."""
        with self._lock:
            self._leader = None
            if not self._queue:
                self._leading = False
                return
            following = self._queue[0]
        following.leads = True
        following.woken.set()


def _apply(session: Session, write: _Write) -> None:
    """Apply one write in a savepoint; on error roll back to it and keep the error (the
    capture forgets the savepoint's events)."""
    _act_for(session, write)
    try:
        with session.begin_nested():
            write.result = write.work(session)
    except Exception as error:
        write.error = error


def _act_for(session: Session, write: _Write) -> None:
    """Name the write's Idempotency-Key and principal to the session's hooks."""
    session.info[MUTATION] = write.mutation
    session.info[PRINCIPAL] = write.principal
