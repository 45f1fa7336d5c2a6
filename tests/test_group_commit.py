"""Group commit: writes waiting together share one transaction, a savepoint each, and are
answered only once it committed."""

import fcntl
import os
import threading
import time
from types import SimpleNamespace

import pytest
import sqlalchemy as sa
from gevent import GreenletExit

from feed import ApiError, group_commit, runtime, writes
from feed.transactions import lock_path

from .api_helpers import log_head, logged
from .delivery_tools import wait_for

ROW = {"shift": "morning", "mood": 3}


def _post(app, note, key=None):
    """Return a write's (status, body), or the ApiError it raised."""
    with app.app_context():
        try:
            body = ROW | {"note": note} if note is not None else ROW
            return writes.write(runtime(), "POST", "shift_feedback", body=body, key=key)
        except ApiError as error:
            return error


def _together(app, calls) -> list:
    """Queue the calls while another process holds the writer lock, then let them go;
    return their outcomes in call order, once all answered."""
    group = runtime_of(app).transactions._group
    holder = os.open(lock_path(runtime_of(app).engine), os.O_RDWR | os.O_CREAT)
    fcntl.flock(holder, fcntl.LOCK_EX)
    outcomes = [None] * len(calls)

    def call(index: int) -> None:
        outcomes[index] = calls[index]()

    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(calls))]
    try:
        for thread in threads:
            thread.start()
            # Queued in call order: the next starts once this one waits in the queue.
            queued = threads.index(thread) + 1
            wait_for(lambda n=queued: len(group._queue) >= n, 5, "the write to queue")
    finally:
        fcntl.flock(holder, fcntl.LOCK_UN)
        os.close(holder)
    for thread in threads:
        thread.join(timeout=15)
    return outcomes


def runtime_of(app):
    return app.extensions["tidings"]


@pytest.fixture
def published(app, monkeypatch):
    """Record the batches of events the feed hands on (to Redis, the hub) at each commit."""
    batches: list[list[int]] = []
    monkeypatch.setattr(
        runtime_of(app), "published", lambda events: batches.append([e.id for e in events])
    )
    return batches


@pytest.fixture
def commits(app):
    """Record each commit of the feed's engine: how many answers had been given by then."""
    seen: list[int] = []
    answered: list = []
    engine = runtime_of(app).engine

    def listener(conn):
        if conn.get_execution_options().get("tidings_write"):
            seen.append(len(answered))

    sa.event.listen(engine, "commit", listener)
    yield seen, answered
    sa.event.remove(engine, "commit", listener)


def test_a_failing_write_fails_alone_the_others_commit_together_in_order(app, commits, published):
    seen, answered = commits
    start = log_head(app)
    notes = ["first", None, "third", "fourth"]

    def write(note):
        def call():
            outcome = _post(app, note)
            answered.append(outcome)
            return outcome

        return call

    outcomes = _together(app, [write(note) for note in notes])
    # One commit for the group, before any answer.
    assert seen == [0]
    failed = outcomes[1]
    assert isinstance(failed, ApiError) and failed.status == 400
    stored = [outcomes[i][1] for i in (0, 2, 3)]
    assert [status for status, _ in (outcomes[0], outcomes[2], outcomes[3])] == [201] * 3
    events = logged(app, "shift_feedback", after=start)
    assert [e["row"]["note"] for e in events] == ["first", "third", "fourth"]
    assert [e["id"] for e in events] == [body["event"] for body in stored]
    # Gapless: the failed write's ids were taken again by the next one (each write also
    # logs its audit row).
    every = logged(app, after=start)
    assert [e["id"] for e in every] == list(range(start + 1, start + 1 + len(every)))
    assert len(every) == 6
    # Handed on once, at the commit, in the log's order: nothing of the failed write.
    assert published == [[e["id"] for e in every]]


def test_no_write_is_answered_before_its_commit_and_a_failed_commit_fails_them_all(app, published):
    engine = runtime_of(app).engine
    start = log_head(app)
    answered: list = []

    def refuse(conn):
        if not conn.get_execution_options().get("tidings_write"):
            return
        # Every write of the group is still waiting while the commit runs.
        time.sleep(0.2)
        assert not answered
        raise sa.exc.OperationalError("COMMIT", None, Exception("disk I/O error"))

    def write(note):
        def call():
            try:
                outcome = _post(app, note)
            except sa.exc.OperationalError as error:
                outcome = error
            answered.append(outcome)
            return outcome

        return call

    sa.event.listen(engine, "commit", refuse)
    try:
        outcomes = _together(app, [write(f"note {n}") for n in range(3)])
    finally:
        sa.event.remove(engine, "commit", refuse)
    assert all(isinstance(o, sa.exc.OperationalError) for o in outcomes), outcomes
    assert logged(app, after=start) == [] == published
    status, _ = _post(app, "after")
    assert status == 201


def test_the_same_key_twice_in_one_group_writes_once_and_answers_alike(app):
    start = log_head(app)
    outcomes = _together(app, [lambda: _post(app, "once", key="k-1")] * 2)
    assert outcomes[0] == outcomes[1]
    assert outcomes[0][0] == 201
    assert len(logged(app, "shift_feedback", after=start)) == 1


def test_a_write_inside_a_writes_transaction_is_refused_rather_than_waiting_for_itself(app):
    start = log_head(app)
    with app.app_context():
        rt = runtime()
        with pytest.raises(RuntimeError, match="wait for itself"):
            rt.transactions.run(lambda _session: _post(app, "inner"))
    assert logged(app, after=start) == []
    assert _post(app, "after")[0] == 201


def test_writes_to_one_row_in_one_group_are_each_told_their_own_event(app):
    status, created = _post(app, "row")
    assert status == 201
    row_id = created["row"]["id"]

    def patch(mood):
        def call():
            with app.app_context():
                return writes.write(
                    runtime(), "PATCH", "shift_feedback", row_id, body={"mood": mood}
                )

        return call

    outcomes = _together(app, [patch(mood) for mood in (1, 2, 5)])
    events = logged(app, "shift_feedback", after=created["event"])
    # Each PATCH's answer names the event of its own change, in commit order.
    assert [body["event"] for _, body in outcomes] == [e["id"] for e in events]
    assert [e["row"]["mood"] for e in events] == [1, 2, 5]
    assert [body["row"]["mood"] for _, body in outcomes] == [1, 2, 5]


class StoppableEvent(threading.Event):
    """A write's wake-up whose waiter can be stopped, as a killed greenlet is: `stop()` at
    once, or `stop_when_woken` for the moment it is woken (handed the lead)."""

    def __init__(self):
        super().__init__()
        self.stopped = threading.Event()
        self.stop_when_woken = False

    def stop(self) -> None:
        self.stopped.set()
        with self._cond:
            self._cond.notify_all()

    def set(self) -> None:
        if self.stop_when_woken:
            self.stop()
        else:
            super().set()

    def wait(self, timeout=None) -> bool:
        with self._cond:
            self._cond.wait_for(lambda: self.is_set() or self.stopped.is_set())
        if self.stopped.is_set():
            raise GreenletExit
        return True


@pytest.fixture
def stoppable(monkeypatch):
    """Give every queued write a StoppableEvent as its wake-up."""
    patched = SimpleNamespace(
        Event=StoppableEvent, Lock=threading.Lock, get_ident=threading.get_ident
    )
    monkeypatch.setattr(group_commit, "threading", patched)


def _run_in_thread(app, name: str, ran: list, gate: threading.Event | None = None):
    """Run one write through the app's group in a thread; return the thread and its
    outcome."""
    group = runtime_of(app).transactions._group
    outcome: dict = {}

    def work(_session):
        ran.append(name)
        if gate is not None:
            assert gate.wait(10)
        return name

    def call() -> None:
        try:
            with app.app_context():
                outcome["result"] = group.run(work, mutation=None, principal=None)
        except BaseException as error:
            outcome["error"] = error

    thread = threading.Thread(target=call)
    thread.start()
    return thread, outcome


def _two_waiting_behind_a_leader(app, stop):
    """Have a leader at work in its transaction and two writes, "stopped" then "waiting",
    queued for the next group; `stop(write)` is done to the first; then let the leader
    finish. Return what ran, in order, and each write's outcome once all are done."""
    group = runtime_of(app).transactions._group
    gate, ran = threading.Event(), []
    leader = _run_in_thread(app, "leader", ran, gate)
    wait_for(lambda: ran == ["leader"], 5, "the leader to start")
    waiters = [_run_in_thread(app, name, ran) for name in ("stopped", "waiting")]
    wait_for(lambda: len(group._queue) == 2, 5, "the writes to queue")
    stop(group._queue[0])
    gate.set()
    for thread, _ in (leader, *waiters):
        thread.join(10)
    assert not group._queue and not group._leading
    return ran, [outcome for _, outcome in (leader, *waiters)]


def test_a_write_stopped_while_it_waits_leaves_its_group_and_the_others_commit(app, stoppable):
    group = runtime_of(app).transactions._group

    def stop(write) -> None:
        write.woken.stop()
        wait_for(lambda: len(group._queue) == 1, 5, "the stopped write to leave the queue")

    ran, (led, stopped, waited) = _two_waiting_behind_a_leader(app, stop)
    assert isinstance(stopped["error"], GreenletExit)
    assert (led, waited) == ({"result": "leader"}, {"result": "waiting"})
    assert ran == ["leader", "waiting"]


def test_a_write_stopped_as_it_is_handed_the_lead_hands_it_on(app, stoppable):
    def stop_when_woken(write) -> None:
        write.woken.stop_when_woken = True

    ran, (led, stopped, waited) = _two_waiting_behind_a_leader(app, stop_when_woken)
    assert isinstance(stopped["error"], GreenletExit)
    assert (led, waited) == ({"result": "leader"}, {"result": "waiting"})
    assert ran == ["leader", "waiting"]
    # The group still takes writes.
    assert _post(app, "after")[0] == 201
