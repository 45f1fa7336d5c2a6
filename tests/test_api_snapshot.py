"""Snapshots, single rows and table descriptions, and the cursor a snapshot carries."""

import random
import threading

from .api_helpers import bread, log_head, logged, sale
from .identities import bearer_client
from .monitor_tools import cache_result


def rows(client, **params) -> list[dict]:
    """Return a snapshot's rows."""
    response = client.get("/api/sales_logs", query_string=params)
    assert response.status_code == 200, response.get_json()
    return response.get_json()["rows"]


def test_tables_describe_columns(client):
    body = client.get("/api/tables").get_json()
    tables = {t["name"]: t for t in body["tables"]}
    assert {"bread_types", "sales_logs", "audit_logs"} <= set(tables)
    columns = {c["name"]: c for c in tables["bread_types"]["columns"]}
    assert columns["id"] == {
        "name": "id",
        "type": "integer",
        "nullable": False,
        "primary_key": True,
    }
    assert columns["price"]["type"] == "number"
    assert columns["name"]["type"] == "string"
    assert columns["active"]["type"] == "boolean"
    assert columns["updated_at"]["type"] == "datetime"
    assert columns["version"] == {
        "name": "version",
        "type": "integer",
        "nullable": False,
        "primary_key": False,
    }
    assert tables["audit_logs"]["columns"][4]["name"] == "target_id"
    assert tables["audit_logs"]["columns"][4]["nullable"] is True
    valid = {"integer", "number", "string", "boolean", "datetime", "date", "json"}
    assert {c["type"] for t in body["tables"] for c in t["columns"]} <= valid


def test_order_limit_offset_and_select(client):
    bread_id = bread(client)["id"]
    made = [sale(client, bread_id, quantity=q) for q in (3, 1, 3, 2)]
    ids = [row["id"] for row in made]
    assert [r["id"] for r in rows(client)] == ids
    by_quantity = [r["id"] for r in rows(client, order="quantity.desc")]
    assert by_quantity == [ids[0], ids[2], ids[3], ids[1]]
    assert [r["id"] for r in rows(client, order="quantity,id.desc")] == [
        ids[1],
        ids[3],
        ids[2],
        ids[0],
    ]
    assert [r["id"] for r in rows(client, order="quantity.desc", limit=2, offset=1)] == [
        ids[2],
        ids[3],
    ]
    assert rows(client, limit=0) == []
    assert rows(client, offset=10) == []
    assert rows(client, select="quantity", order="id.desc", limit=1) == [{"quantity": 2}]
    assert rows(client, select="id,quantity", limit=1) == [{"id": ids[0], "quantity": 3}]
    assert rows(client)[0] == made[0]


def test_cursor_header_equals_body_cursor_and_log_head(client, app):
    bread(client)
    response = client.get("/api/bread_types")
    cursor = response.get_json()["cursor"]
    assert response.headers["X-Cursor"] == str(cursor)
    assert cursor == log_head(app) > 0


def test_a_cached_snapshot_reports_the_head_now(client, app):
    bread(client)
    first = client.get("/api/bread_types")
    assert cache_result(client.get("/api/bread_types")) == "hit"
    # An event of another table moves the head; the cached bread rows still hold.
    feedback = {"shift": "morning", "note": "Calm.", "mood": 4, "recorded_by": "ana"}
    assert client.post("/api/shift_feedback", json=feedback).status_code == 201
    head = log_head(app)
    assert head > first.get_json()["cursor"]
    again = client.get("/api/bread_types")
    assert cache_result(again) == "hit"
    assert again.get_json() == {"rows": first.get_json()["rows"], "cursor": head}
    assert again.headers["X-Cursor"] == str(head)
    unchanged = client.get("/api/bread_types", headers={"If-None-Match": first.headers["ETag"]})
    assert unchanged.status_code == 304
    assert unchanged.headers["X-Cursor"] == str(head)


def test_etag_and_if_none_match(client):
    bread_id = bread(client)["id"]
    first = client.get("/api/bread_types")
    etag = first.headers["ETag"]
    assert etag.startswith('"') and etag.endswith('"')
    assert client.get("/api/bread_types").headers["ETag"] == etag
    for header in (etag, f"W/{etag}", f'"other", {etag}', "*"):
        again = client.get("/api/bread_types", headers={"If-None-Match": header})
        assert again.status_code == 304, header
        assert again.get_data() == b""
        assert again.headers["ETag"] == etag
        assert again.headers["X-Cursor"] == first.headers["X-Cursor"]
    assert client.get("/api/bread_types", headers={"If-None-Match": '"x"'}).status_code == 200
    filtered = client.get("/api/bread_types?select=id", headers={"If-None-Match": etag})
    assert filtered.status_code == 200
    client.patch(f"/api/bread_types/{bread_id}", json={"price": 9})
    changed = client.get("/api/bread_types", headers={"If-None-Match": etag})
    assert changed.status_code == 200
    assert changed.headers["ETag"] != etag


def test_read_one(client):
    made = bread(client)
    response = client.get(f"/api/bread_types/{made['id']}")
    assert response.status_code == 200
    assert response.get_json() == {"row": made}
    assert response.headers["ETag"] == '"1"'


def replay(events: list[dict], topic: str, start: dict | None = None) -> dict[int, dict]:
    """Rebuild a table from its events, applied to a starting state."""
    table: dict[int, dict] = dict(start or {})
    for event in events:
        if event["topic"] != topic:
            continue
        if event["op"] == "DELETE":
            del table[event["pk"]]
        else:
            table[event["pk"]] = event["row"]
    return table


def test_snapshot_reflects_exactly_the_events_up_to_its_cursor(app, admin):
    """Concurrent writers; every snapshot equals the log replayed up to its cursor."""
    writer_client, reader_client = bearer_client(app, admin), bearer_client(app, admin)
    bread_id = bread(writer_client)["id"]
    stop = threading.Event()
    failures: list[BaseException] = []

    def write() -> None:
        rng = random.Random(3)
        ids: list[int] = []
        try:
            for _ in range(150):
                if ids and rng.random() < 0.3:
                    writer_client.patch(
                        f"/api/sales_logs/{rng.choice(ids)}", json={"quantity": rng.randint(1, 9)}
                    )
                elif len(ids) > 3 and rng.random() < 0.2:
                    writer_client.delete(f"/api/sales_logs/{ids.pop(rng.randrange(len(ids)))}")
                else:
                    ids.append(sale(writer_client, bread_id, quantity=rng.randint(1, 9))["id"])
        except BaseException as exc:  # surfaced by the main thread
            failures.append(exc)
        finally:
            stop.set()

    thread = threading.Thread(target=write, daemon=True)
    thread.start()
    snapshots = []
    while not stop.is_set() or not snapshots:
        body = reader_client.get("/api/sales_logs?limit=10000").get_json()
        snapshots.append(body)
    thread.join(timeout=60)
    assert not thread.is_alive() and not failures
    events = logged(app)
    assert len({s["cursor"] for s in snapshots}) > 1
    for snapshot in snapshots:
        upto = [e for e in events if e["id"] <= snapshot["cursor"]]
        assert {r["id"]: r for r in snapshot["rows"]} == replay(upto, "sales_logs")
    final = reader_client.get("/api/sales_logs?limit=10000").get_json()
    later = reader_client.get(
        "/api/changes",
        query_string={"topics": "sales_logs", "cursor": snapshots[0]["cursor"], "limit": 1000},
    ).get_json()
    assert later["more"] is False and later["cursor"] <= final["cursor"]
    start = {r["id"]: r for r in snapshots[0]["rows"]}
    rebuilt = replay(later["events"], "sales_logs", start)
    assert rebuilt == {r["id"]: r for r in final["rows"]}
    assert any(e["op"] == "DELETE" for e in later["events"])
