"""Retention: old events and idempotency keys are pruned; expired cursors get a reset."""

import time

import sqlalchemy as sa

from .api_helpers import assert_error, bread, log_head, log_start, logged, nothing_written


def feed_runtime(app):
    """Return the app's feed runtime."""
    return app.extensions["tidings"]


def age(app, table_name: str, seconds: float, where=None) -> None:
    """Move rows' created_at back in time."""
    rt = feed_runtime(app)
    table = rt.feed.db.metadata.tables[table_name]
    with app.app_context(), rt.engine.begin() as conn:
        update = table.update().values(created_at=time.time() - seconds)
        conn.execute(update if where is None else update.where(where(table.c)))


def make_events(client, count: int, prefix: str = "B") -> None:
    """Write `count` bread types, each adding at least one event."""
    for n in range(count):
        bread(client, name=f"{prefix}{n}")


def test_events_older_than_retention_hours_are_pruned(app, client):
    app.config["RETENTION_HOURS"] = 1
    make_events(client, 3)
    cutoff = log_head(app)
    make_events(client, 2, prefix="late")
    age(app, "tidings_events", 3601, where=lambda c: c.id <= cutoff)
    pruned, _ = feed_runtime(app).prune()
    assert pruned == cutoff - log_start(app)
    assert [e["id"] for e in logged(app)] == list(range(cutoff + 1, log_head(app) + 1))
    assert feed_runtime(app).prune() == (0, 0)


def test_events_beyond_retention_count_are_pruned(app, client):
    app.config["RETENTION_EVENTS"] = 3
    make_events(client, 6)
    head = log_head(app)
    pruned, _ = feed_runtime(app).prune()
    assert pruned == head - log_start(app) - 3
    assert [e["id"] for e in logged(app)] == [head - 2, head - 1, head]


def test_the_head_is_never_pruned(app, client):
    app.config["RETENTION_EVENTS"] = 0
    make_events(client, 3)
    head = log_head(app)
    age(app, "tidings_events", 10 * 24 * 3600)
    feed_runtime(app).prune()
    assert [e["id"] for e in logged(app)] == [head]
    make_events(client, 1, prefix="after")
    assert log_head(app) == head + 1 + len(logged(app, "audit_logs", after=head))


def test_expired_cursor_gets_410_with_a_reset(app, client):
    app.config["RETENTION_EVENTS"] = 2
    make_events(client, 5)
    head = log_head(app)
    feed_runtime(app).prune()
    tail = head - 1
    ok = client.get(f"/api/changes?topics=bread_types&cursor={tail - 1}")
    assert ok.status_code == 200
    with nothing_written(app):
        for cursor in (0, tail - 2):
            response = client.get(
                "/api/changes",
                query_string={
                    "topics": "bread_types",
                    "cursor": cursor,
                    "bread_types.active": "is.true",
                    "bread_types.select": "id,name",
                },
            )
            body = assert_error(response, 410, "cursor_expired")
            reset = body["reset"]
            assert reset["reason"] == "expired"
            assert reset["cursor"] == head
            assert reset["snapshot"] == "/api/bread_types?active=is.true&select=id%2Cname"
    snapshot = client.get(reset["snapshot"])
    assert snapshot.status_code == 200 and snapshot.get_json()["cursor"] == head
    assert [set(r) for r in snapshot.get_json()["rows"]] == [{"id", "name"}] * 5
    resumed = client.get(f"/api/changes?topics=bread_types&cursor={reset['cursor']}")
    assert resumed.status_code == 200 and resumed.get_json()["events"] == []


def test_old_idempotency_keys_are_pruned(app, client):
    app.config["IDEMPOTENCY_HOURS"] = 1
    key = {"Idempotency-Key": "old"}
    first = client.post("/api/bread_types", json={"name": "A", "price": 1}, headers=key)
    keep = {"Idempotency-Key": "new"}
    client.post("/api/bread_types", json={"name": "B", "price": 1}, headers=keep)
    age(app, "tidings_idempotency", 3601, where=lambda c: c.key == "old")
    _, keys = feed_runtime(app).prune()
    assert keys == 1
    rt = feed_runtime(app)
    with app.app_context(), rt.read() as conn:
        left = conn.execute(sa.select(rt.idempotency.table.c.key)).scalars().all()
    assert left == ["new"]
    again = client.post("/api/bread_types", json={"name": "C", "price": 1}, headers=key)
    assert again.status_code == 201 and again.get_json() != first.get_json()
    assert again.get_json()["row"]["name"] == "C"


def test_expired_key_is_not_honoured_before_pruning(app, client):
    app.config["IDEMPOTENCY_HOURS"] = 1
    key = {"Idempotency-Key": "stale"}
    client.post("/api/bread_types", json={"name": "A", "price": 1}, headers=key)
    age(app, "tidings_idempotency", 3601)
    again = client.post("/api/bread_types", json={"name": "B", "price": 1}, headers=key)
    assert again.status_code == 201 and again.get_json()["row"]["name"] == "B"
    bread(client, name="C")
    with nothing_written(app):
        repeat = client.post("/api/bread_types", json={"name": "D", "price": 1}, headers=key)
    assert repeat.get_json() == again.get_json()
