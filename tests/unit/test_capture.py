"""Capture on a plain SQLAlchemy session: event bodies, versions, commit and rollback."""

import datetime as dt
import re

import pytest
from sqlalchemy.orm import sessionmaker

from feed.capture import MUTATION, Capture, event_body
from feed.values import iso

from .model import Gadget

FIELDS = ["id", "topic", "op", "pk", "version", "row", "old", "at", "mutation"]
COLUMNS = ["id", "name", "size", "weight", "active", "made_on", "seen_at", "specs"]
COLUMNS += ["version", "updated_at"]
AT = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


@pytest.fixture
def commits():
    """The event lists capture hands on, one per commit."""
    return []


@pytest.fixture
def capture(log, commits):
    return Capture(log, on_commit=commits.append)


@pytest.fixture
def sessions(engine, capture):
    """A sessionmaker whose sessions alone are captured."""
    factory = sessionmaker(engine)
    capture.attach(factory)
    return factory


def stored(engine, log) -> list[dict]:
    with engine.connect() as conn:
        return [event.data for event in log.read(conn, 0)]


def stored_in(session, log) -> list[dict]:
    """Read the log inside the session's own transaction."""
    return [event.data for event in log.read(session.connection(), 0)]


def lamp() -> Gadget:
    return Gadget(
        name="lamp",
        size=3,
        weight=1.5,
        made_on=dt.date(2026, 2, 28),
        seen_at=dt.datetime(2026, 1, 1, 9, 30, 0, 500_999),
        specs={"watts": [40, 60]},
    )


def test_insert_event_carries_the_stored_row(engine, log, sessions, commits):
    with sessions() as session:
        gadget = lamp()
        session.add(gadget)
        session.commit()
        [[event]] = commits
        data = event.data
        assert list(data) == FIELDS
        assert list(data["row"]) == COLUMNS
        assert data | {"at": None} == {
            "id": 1,
            "topic": "gadgets",
            "op": "INSERT",
            "pk": gadget.id,
            "version": 1,
            "row": {
                "id": gadget.id,
                "name": "lamp",
                "size": 3,
                "weight": 1.5,
                "active": True,
                "made_on": "2026-02-28",
                # Sub-millisecond digits are dropped before the row is stored.
                "seen_at": "2026-01-01T09:30:00.500Z",
                "specs": {"watts": [40, 60]},
                "version": 1,
                "updated_at": iso(gadget.updated_at),
            },
            "old": None,
            "at": None,
            "mutation": None,
        }
        assert AT.match(data["at"])
        assert gadget.seen_at == dt.datetime(2026, 1, 1, 9, 30, 0, 500_000)
    assert stored(engine, log) == [data]


def test_update_bumps_the_version_and_carries_old(sessions, commits):
    with sessions() as session:
        gadget = lamp()
        session.add(gadget)
        session.commit()
        inserted = commits[0][0].data["row"]
        session.refresh(gadget)
        gadget.name, gadget.size = "desk", None
        session.commit()
        [[updated]] = commits[1:]
        data = updated.data
        assert (data["id"], data["op"], data["pk"], data["version"]) == (2, "UPDATE", 1, 2)
        assert data["old"] == inserted
        assert data["row"] == inserted | {
            "name": "desk",
            "size": None,
            "version": 2,
            "updated_at": iso(gadget.updated_at),
        }
        assert gadget.version == 2


def test_each_update_adds_one_to_the_version(sessions, commits):
    with sessions() as session:
        gadget = lamp()
        session.add(gadget)
        session.flush()
        for size in (4, 5, 6):
            gadget.size = size
            session.flush()
        session.commit()
    [events] = commits
    assert [(e.id, e.data["op"], e.data["version"]) for e in events] == [
        (1, "INSERT", 1),
        (2, "UPDATE", 2),
        (3, "UPDATE", 3),
        (4, "UPDATE", 4),
    ]
    assert [e.data["old"]["size"] for e in events[1:]] == [3, 4, 5]


def test_assigning_the_same_value_appends_nothing(engine, log, sessions, commits):
    with sessions() as session:
        gadget = lamp()
        session.add(gadget)
        session.commit()
        session.refresh(gadget)
        gadget.name = "lamp"
        session.commit()
        session.refresh(gadget)
        assert gadget.version == 1
    assert len(commits) == 1 and len(stored(engine, log)) == 1


def test_delete_event_has_no_row_and_the_last_version_in_old(sessions, commits):
    with sessions() as session:
        gadget = lamp()
        session.add(gadget)
        session.flush()
        gadget.size = 9
        session.commit()
        last = commits[0][-1].data["row"]
        session.delete(gadget)
        session.commit()
    [[deleted]] = commits[1:]
    data = deleted.data
    assert (data["id"], data["op"], data["pk"], data["version"]) == (3, "DELETE", 1, 2)
    assert (data["row"], data["old"]) == (None, last)


def test_the_mutation_key_is_stamped_on_the_transaction_events(sessions, commits):
    with sessions() as session:
        session.info[MUTATION] = "c0ffee-42"
        session.add(lamp())
        session.commit()
    assert commits[0][0].data["mutation"] == "c0ffee-42"


def test_rollback_appends_nothing_and_hands_nothing_on(engine, log, sessions, commits):
    with sessions() as session:
        session.add(lamp())
        session.flush()
        assert len(stored_in(session, log)) == 1
        session.rollback()
        assert commits == [] and stored(engine, log) == []
        session.add(Gadget(name="after"))
        session.commit()
    [[event]] = commits
    assert (event.id, event.data["row"]["name"]) == (1, "after")
    assert [e["id"] for e in stored(engine, log)] == [1]


def test_events_are_handed_on_once_after_commit(sessions, commits):
    with sessions() as session:
        session.add(lamp())
        session.flush()
        session.add(Gadget(name="second"))
        session.flush()
        assert commits == []
        session.commit()
        assert [[e.id for e in events] for events in commits] == [[1, 2]]
        session.commit()
    assert len(commits) == 1


def test_append_writes_custom_events_in_the_transaction(engine, log, capture, sessions, commits):
    with sessions() as session:
        [event] = capture.append(session, [event_body("alerts", "PUBLISH", row={"level": 3})])
        assert (event.id, event.topic, event.data["row"]) == (1, "alerts", {"level": 3})
        session.add(lamp())
        assert commits == []
        session.commit()
    [[published, inserted]] = commits
    assert (published.id, inserted.id) == (1, 2)
    assert [e["topic"] for e in stored(engine, log)] == ["alerts", "gadgets"]


def test_event_body_is_in_protocol_field_order():
    body = event_body("alerts", "PUBLISH", row={"a": 1}, mutation="k")
    assert list(body) == FIELDS
    assert body | {"at": None} == {
        "id": None,
        "topic": "alerts",
        "op": "PUBLISH",
        "pk": None,
        "version": None,
        "row": {"a": 1},
        "old": None,
        "at": None,
        "mutation": "k",
    }
    assert AT.match(body["at"])


def test_update_of_an_expired_instance_carries_the_old_value(sessions, commits):
    with sessions() as session:
        gadget = Gadget(name="lamp")
        session.add(gadget)
        session.commit()
        # The commit expired every attribute: the old name was never loaded before the set.
        gadget.name = "desk"
        session.commit()
    update = commits[1][0].data
    assert update["op"] == "UPDATE"
    assert (update["old"]["name"], update["row"]["name"]) == ("lamp", "desk")
    assert (update["old"]["version"], update["row"]["version"]) == (1, 2)
