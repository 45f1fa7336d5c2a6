"""Helpers for REST API tests: seed rows, read the log, and prove nothing was written."""

from contextlib import contextmanager

import sqlalchemy as sa

from feed import runtime
from feed.log import epoch_of, first_id

SALE = {
    "quantity": 2,
    "unit_price": 6.5,
    "shift": "morning",
    "recorded_by": "ana",
    "store_id": 1,
}


def bread(client, name: str = "Rye", price: float = 5.1, **more) -> dict:
    """Create a bread type over HTTP and return its row."""
    response = client.post("/api/bread_types", json={"name": name, "price": price, **more})
    assert response.status_code == 201, response.get_json()
    return response.get_json()["row"]


def sale(client, bread_type_id: int, **more) -> dict:
    """Record a sale over HTTP and return its row."""
    response = client.post("/api/sales_logs", json=SALE | {"bread_type_id": bread_type_id} | more)
    assert response.status_code == 201, response.get_json()
    return response.get_json()["row"]


def logged(app, *topics: str, after: int = 0) -> list[dict]:
    """Return the events after an id, as dicts: all of them, or those of some topics.

    The demo's own side effects (audit rows, notifications) share the log, so tests
    name the topics they look at.
    """
    with app.app_context():
        rt = runtime()
        with rt.read() as conn:
            events = rt.log.read(conn, after, topics=list(topics) or None, limit=100_000)
            return [event.data for event in events]


def log_head(app) -> int:
    """Return the newest event id."""
    with app.app_context():
        rt = runtime()
        with rt.read() as conn:
            return rt.log.head(conn)


def log_start(app) -> int:
    """Return the cursor before the log's first event (the first id of its epoch)."""
    return first_id(epoch_of(log_head(app)))


def database_state(app) -> dict:
    """Return every row of every table, the log and idempotency keys included."""
    with app.app_context():
        rt = runtime()
        metadata = rt.feed.db.metadata
        with rt.read() as conn:
            return {
                name: sorted((tuple(row) for row in conn.execute(sa.select(table))), key=repr)
                for name, table in metadata.tables.items()
            }


@contextmanager
def nothing_written(app):
    """Assert that the block leaves every table, the log and its head as they were."""
    before = database_state(app)
    head = log_head(app)
    yield
    assert log_head(app) == head
    assert database_state(app) == before


def assert_error(response, status: int, code: str | None = None) -> dict:
    """Assert the protocol's JSON error shape and status; return the body."""
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert set(body) >= {"error", "message", "details"}
    assert isinstance(body["error"], str) and body["error"].islower()
    assert " " not in body["error"]
    assert isinstance(body["message"], str) and body["message"]
    assert isinstance(body["details"], dict)
    assert "Traceback" not in response.get_data(as_text=True)
    if code is not None:
        assert body["error"] == code
    return body
