"""Capture: every committed ORM change becomes one event in the same transaction."""

import datetime as dt
import re

import pytest

from feed import runtime
from models import BreadType, SalesLog, db

from .api_helpers import log_head, log_start, logged

ISO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


class Boom(Exception):
    """Raised on purpose to roll a transaction back."""


def write(app, change, mutation=None):
    """Run `change(session)` in one write transaction."""
    with app.app_context(), runtime().write(mutation=mutation) as session:
        return change(session)


def add_bread(session, name="Rye", price=5.1):
    bread = BreadType(name=name, price=price)
    session.add(bread)
    session.flush()
    return bread.id


def test_insert_update_delete_events(app):
    bread_id = write(app, add_bread, mutation="m-1")

    def update(session):
        session.get(BreadType, bread_id).price = 6.25

    write(app, update)
    write(app, lambda session: session.delete(session.get(BreadType, bread_id)))
    inserted, updated, deleted = logged(app, "bread_types")

    assert inserted["id"] < updated["id"] < deleted["id"]
    assert [e["id"] for e in logged(app)] == list(range(log_start(app) + 1, log_head(app) + 1))
    assert inserted["topic"] == "bread_types" and inserted["op"] == "INSERT"
    assert inserted["pk"] == bread_id and inserted["version"] == 1
    assert inserted["old"] is None and inserted["mutation"] == "m-1"
    row = inserted["row"]
    assert row == {
        "id": bread_id,
        "name": "Rye",
        "price": 5.1,
        "active": True,
        "version": 1,
        "updated_at": row["updated_at"],
    }
    assert list(row) == ["id", "name", "price", "active", "version", "updated_at"]

    assert updated["op"] == "UPDATE" and updated["version"] == 2 and updated["mutation"] is None
    assert updated["old"] == row
    assert updated["row"] == row | {
        "price": 6.25,
        "version": 2,
        "updated_at": updated["row"]["updated_at"],
    }
    assert updated["row"]["updated_at"] >= row["updated_at"]

    assert deleted["op"] == "DELETE" and deleted["row"] is None
    assert deleted["old"] == updated["row"] and deleted["version"] == 2
    for event in (inserted, updated, deleted):
        assert list(event) == [
            "id",
            "topic",
            "op",
            "pk",
            "version",
            "row",
            "old",
            "at",
            "mutation",
        ]
        assert ISO_MS.match(event["at"])


def test_updated_at_is_iso_milliseconds_utc(app):
    before = dt.datetime.now(dt.UTC).replace(tzinfo=None) - dt.timedelta(milliseconds=1)
    write(app, add_bread)
    [event] = logged(app, "bread_types")
    stamp = event["row"]["updated_at"]
    assert ISO_MS.match(stamp)
    parsed = dt.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ")
    assert before <= parsed <= dt.datetime.now(dt.UTC).replace(tzinfo=None)
    with app.app_context():
        stored = db.session.get(BreadType, event["pk"]).updated_at
        assert stored.microsecond % 1000 == 0


def test_rollback_writes_no_event_and_consumes_no_id(app):
    bread_id = write(app, add_bread)
    head = log_head(app)

    def failing(session):
        add_bread(session, name="Doomed")
        session.get(BreadType, bread_id).price = 99
        session.flush()
        raise Boom

    with pytest.raises(Boom):
        write(app, failing)
    assert log_head(app) == head
    with app.app_context():
        assert db.session.query(BreadType).count() == 1
        assert db.session.get(BreadType, bread_id).version == 1
    write(app, lambda session: add_bread(session, name="Spelt"))
    [spelt] = logged(app, after=head)[:1]
    assert spelt["id"] == head + 1 and spelt["row"]["name"] == "Spelt"
    assert [e["id"] for e in logged(app)] == list(range(log_start(app) + 1, log_head(app) + 1))


def test_plain_session_rollback_after_flush_leaves_no_event(app):
    head = log_head(app)
    with app.app_context():
        db.session.add(BreadType(name="Flushed", price=1))
        db.session.flush()
        db.session.rollback()
    assert logged(app, after=head) == []
    write(app, add_bread)
    assert logged(app, after=head)[0]["id"] == head + 1


def test_several_changes_in_one_transaction_keep_their_order(app):
    first = write(app, add_bread)

    def many(session):
        second = add_bread(session, name="Spelt")
        session.add(
            SalesLog(bread_type_id=second, quantity=3, unit_price=2, shift="m", recorded_by="a")
        )
        session.flush()
        session.get(BreadType, first).active = False
        session.flush()
        session.get(BreadType, first).price = 7
        session.flush()
        session.delete(session.get(BreadType, first))

    head = log_head(app)
    write(app, many, mutation="many")
    events = logged(app, "bread_types", "sales_logs", after=head)
    assert [(e["topic"], e["op"], e["pk"]) for e in events] == [
        ("bread_types", "INSERT", 2),
        ("sales_logs", "INSERT", 1),
        ("bread_types", "UPDATE", first),
        ("bread_types", "UPDATE", first),
        ("bread_types", "DELETE", first),
    ]
    assert [e["id"] for e in events] == sorted(e["id"] for e in events)
    assert [e["version"] for e in events] == [1, 1, 2, 3, 3]
    assert {e["mutation"] for e in logged(app, after=head)} == {"many"}
    assert events[2]["row"]["active"] is False and events[3]["old"]["active"] is False


def test_update_without_real_change_writes_nothing(app):
    bread_id = write(app, add_bread)

    def same(session):
        bread = session.get(BreadType, bread_id)
        bread.name, bread.price, bread.active = "Rye", 5.1, True

    head = log_head(app)
    write(app, same)
    assert log_head(app) == head
    with app.app_context():
        assert db.session.get(BreadType, bread_id).version == 1


def test_version_counts_every_update(app):
    bread_id = write(app, add_bread)
    for price in (1, 2, 3):

        def update(session, price=price):
            session.get(BreadType, bread_id).price = price

        write(app, update)
    events = logged(app, "bread_types")
    assert [e["version"] for e in events] == [1, 2, 3, 4]
    assert [e["row"]["version"] for e in events] == [1, 2, 3, 4]
    with app.app_context():
        assert db.session.get(BreadType, bread_id).version == 4


def test_event_row_equals_the_stored_row(app, client):
    """The event is built from Python values; it must say what the database stored."""
    bread_id = write(app, lambda session: add_bread(session, price=6.555))
    when = "2026-03-01T10:00:00.123456+01:00"
    response = client.post(
        "/api/sales_logs",
        json={
            "bread_type_id": bread_id,
            "quantity": 1,
            "unit_price": 0.125,
            "shift": "m",
            "recorded_by": "a",
            "created_at": when,
        },
    )
    assert response.status_code == 201
    stored = {
        table: client.get(f"/api/{table}").get_json()["rows"][0]
        for table in ("bread_types", "sales_logs")
    }
    events = logged(app, "bread_types", "sales_logs")
    assert [e["row"] for e in events] == [stored["bread_types"], stored["sales_logs"]]
    assert stored["bread_types"]["price"] == 6.56
    assert stored["sales_logs"]["unit_price"] == 0.13
    assert stored["sales_logs"]["created_at"] == "2026-03-01T09:00:00.123Z"
    assert response.get_json()["row"] == stored["sales_logs"]


def test_orm_values_are_stored_as_the_event_says(app):
    """Writes that skip the API are rounded the same way before the event is built."""

    def add(session):
        session.add(BreadType(name="Fine", price=1.005))
        session.flush()

    write(app, add)

    def update(session):
        bread = session.query(BreadType).one()
        bread.price = 2.675

    write(app, update)
    events = logged(app, "bread_types")
    assert [e["row"]["price"] for e in events] == [1.01, 2.68]
    with app.app_context():
        assert float(db.session.query(BreadType).one().price) == 2.68


@pytest.mark.parametrize("name", ["tables", "changes", "batch", "publish", "alerts"])
def test_a_live_table_may_not_take_a_route_or_topic_name(name):
    from feed.registry import check_names

    with pytest.raises(RuntimeError, match=name):
        check_names(["bread_types", name], ["presence", "alerts"])
    check_names(["bread_types", "sales_logs"], ["presence", "alerts"])


def test_a_custom_topic_named_like_a_table_stops_the_app(database_url, redis_server):
    from app import create_app

    config = {"SQLALCHEMY_DATABASE_URI": database_url, "REDIS_URL": redis_server.url}
    with pytest.raises(RuntimeError, match="bread_types"):
        create_app(config | {"TOPICS": ["bread_types"]})


def test_an_app_publishes_to_a_custom_topic_in_its_own_transaction(app):
    from feed import runtime

    with app.app_context():
        rt = runtime()
        with rt.write() as session:
            event = rt.append_to_topic(session, "presence", {"user": "ana"}, mutation="m-1")
        assert (event.topic, event.data["op"], event.data["row"]) == (
            "presence",
            "PUBLISH",
            {"user": "ana"},
        )
        assert event.data["mutation"] == "m-1"
        with rt.read() as conn:
            assert [e.data for e in rt.log.read(conn, event.id - 1)] == [event.data]
        with pytest.raises(ValueError, match="bread_types"), rt.write() as session:
            rt.append_to_topic(session, "bread_types", {})
        with rt.read() as conn:
            assert rt.log.head(conn) == event.id
