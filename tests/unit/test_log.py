"""The events table: consecutive ids, reads by topic and range, bounds, retention."""

import time

import orjson
import pytest

from feed.log import Bounds, Event


def append(engine, log, *topics: str) -> list[Event]:
    with engine.begin() as conn:
        return log.append(conn, [{"id": None, "topic": t, "op": "PUBLISH"} for t in topics])


def test_append_gives_consecutive_ids_from_the_head(engine, log):
    first = append(engine, log, "a", "b")
    second = append(engine, log, "a")
    assert [e.id for e in first + second] == [1, 2, 3]
    assert [e.topic for e in first + second] == ["a", "b", "a"]
    assert second[0].data == {"id": 3, "topic": "a", "op": "PUBLISH"}
    assert second[0].raw == orjson.dumps(second[0].data)


def test_read_by_cursor_topic_until_and_limit(engine, log):
    append(engine, log, "a", "b", "a", "c", "a")
    with engine.connect() as conn:
        assert [e.id for e in log.read(conn, 0)] == [1, 2, 3, 4, 5]
        assert [e.id for e in log.read(conn, 2)] == [3, 4, 5]
        assert [e.id for e in log.read(conn, 0, topics=["a"])] == [1, 3, 5]
        assert [e.id for e in log.read(conn, 0, topics=["b", "c"])] == [2, 4]
        assert [e.id for e in log.read(conn, 0, topics=[])] == []
        assert [e.id for e in log.read(conn, 1, until=4)] == [2, 3, 4]
        assert [e.id for e in log.read(conn, 0, limit=2)] == [1, 2]
        assert [e.id for e in log.read(conn, 1, topics=["a"], until=5, limit=1)] == [3]
        assert log.read(conn, 5) == []
        [event] = log.read(conn, 3, limit=1)
    assert event.data == {"id": 4, "topic": "c", "op": "PUBLISH"}
    assert event.raw == orjson.dumps(event.data)


def test_bounds_and_head(engine, log):
    with engine.connect() as conn:
        assert log.bounds(conn) == Bounds(tail=1, head=0)
        assert log.head(conn) == 0
    append(engine, log, "a", "a", "a")
    with engine.connect() as conn:
        assert log.bounds(conn) == Bounds(tail=1, head=3)
        assert log.head(conn) == 3


@pytest.mark.parametrize(
    ("cursor", "expired", "other_epoch"),
    [(0, True, False), (3, True, False), (4, False, False), (9, False, False), (10, False, True)],
)
def test_a_cursor_is_expired_when_its_next_event_was_pruned(cursor, expired, other_epoch):
    # Events 1 to 4 were pruned: the log no longer holds its whole history.
    bounds = Bounds(tail=5, head=9, whole=False)
    assert bounds.expired(cursor) is expired
    assert bounds.from_other_epoch(cursor) is other_epoch


def test_an_empty_log_takes_cursor_zero_only():
    empty = Bounds(tail=1, head=0)
    assert (empty.expired(0), empty.from_other_epoch(0)) == (False, False)
    assert empty.from_other_epoch(1) is True


def test_prune_by_count_keeps_the_newest(engine, log):
    append(engine, log, *"abcdefghij")
    with engine.begin() as conn:
        assert log.prune(conn, max_age_seconds=3600, max_events=3) == 7
        assert log.bounds(conn) == Bounds(tail=8, head=10, whole=False)
        assert log.prune(conn, max_age_seconds=3600, max_events=3) == 0


def test_prune_by_age_drops_only_old_events(engine, log):
    append(engine, log, "a", "a", "a", "a")
    with engine.begin() as conn:
        c = log.table.c
        conn.execute(log.table.update().where(c.id <= 2).values(created_at=time.time() - 7200))
        assert log.prune(conn, max_age_seconds=3600, max_events=100) == 2
        assert log.bounds(conn) == Bounds(tail=3, head=4, whole=False)


def test_prune_never_deletes_the_head(engine, log):
    append(engine, log, "a", "b", "c")
    with engine.begin() as conn:
        conn.execute(log.table.update().values(created_at=time.time() - 7200))
        assert log.prune(conn, max_age_seconds=0, max_events=0) == 2
        assert log.bounds(conn) == Bounds(tail=3, head=3, whole=False)
        assert [e.id for e in log.read(conn, 0)] == [3]
    # The next id follows the kept head: ids are never handed out twice.
    assert [e.id for e in append(engine, log, "d")] == [4]


def test_prune_of_an_empty_log_deletes_nothing(engine, log):
    with engine.begin() as conn:
        assert log.prune(conn, max_age_seconds=0, max_events=0) == 0
