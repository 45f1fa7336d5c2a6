"""Writes: shapes and statuses, If-Match, Idempotency-Key, batches and publish."""

import pytest

from app import create_app
from models import db

from .api_helpers import (
    assert_error,
    bread,
    database_state,
    log_head,
    logged,
    nothing_written,
    sale,
)
from .identities import bearer_client, make_user


def test_post_patch_delete(client, app):
    created = client.post("/api/bread_types", json={"name": "Rye", "price": 5})
    assert created.status_code == 201
    body = created.get_json()
    assert set(body) == {"row", "event"}
    row = body["row"]
    assert (row["name"], row["price"], row["active"], row["version"]) == ("Rye", 5.0, True, 1)
    [event] = [e for e in logged(app, "bread_types") if e["id"] == body["event"]]
    assert event["op"] == "INSERT" and event["row"] == row

    patched = client.patch(f"/api/bread_types/{row['id']}", json={"active": False})
    assert patched.status_code == 200
    body = patched.get_json()
    assert set(body) == {"row", "event"}
    assert body["row"] == row | {
        "active": False,
        "version": 2,
        "updated_at": body["row"]["updated_at"],
    }
    [event] = [e for e in logged(app, "bread_types") if e["id"] == body["event"]]
    assert event["op"] == "UPDATE" and event["row"] == body["row"] and event["old"] == row

    deleted = client.delete(f"/api/bread_types/{row['id']}")
    assert deleted.status_code == 200
    assert set(deleted.get_json()) == {"event"}
    [event] = [e for e in logged(app, "bread_types") if e["id"] == deleted.get_json()["event"]]
    assert event["op"] == "DELETE" and event["old"] == body["row"] and event["row"] is None
    assert_error(client.get(f"/api/bread_types/{row['id']}"), 404, "not_found")


def test_patch_without_change_writes_no_event(client, app):
    row = bread(client)
    with nothing_written(app):
        response = client.patch(f"/api/bread_types/{row['id']}", json={"name": "Rye"})
    assert response.status_code == 200
    assert response.get_json() == {"row": row, "event": None}


def test_missing_rows_are_404_and_write_nothing(client, app):
    bread(client)
    with nothing_written(app):
        assert_error(client.patch("/api/bread_types/99", json={"price": 1}), 404, "not_found")
        assert_error(client.delete("/api/bread_types/99"), 404, "not_found")


@pytest.mark.parametrize("form", ['"{v}"', 'W/"{v}"', "{v}"])
def test_if_match_forms(client, app, form):
    row = bread(client)
    url = f"/api/bread_types/{row['id']}"
    client.patch(url, json={"price": 6})
    current = client.get(url).get_json()["row"]
    with nothing_written(app):
        stale = client.patch(url, json={"price": 7}, headers={"If-Match": form.format(v=1)})
        body = assert_error(stale, 412, "version_conflict")
        assert body["current"] == current
        stale_delete = client.delete(url, headers={"If-Match": form.format(v=1)})
        assert assert_error(stale_delete, 412, "version_conflict")["current"] == current
    fresh = client.patch(url, json={"price": 7}, headers={"If-Match": form.format(v=2)})
    assert fresh.status_code == 200 and fresh.get_json()["row"]["version"] == 3
    gone = client.delete(url, headers={"If-Match": form.format(v=3)})
    assert gone.status_code == 200


def test_if_match_star_and_garbage(client, app):
    row = bread(client)
    url = f"/api/bread_types/{row['id']}"
    assert client.patch(url, json={"price": 2}, headers={"If-Match": "*"}).status_code == 200
    with nothing_written(app):
        assert_error(client.patch(url, json={"price": 3}, headers={"If-Match": "abc"}), 400)


def test_idempotent_post_returns_the_first_response(client, app):
    first = client.post(
        "/api/bread_types", json={"name": "Rye", "price": 5}, headers={"Idempotency-Key": "k-1"}
    )
    assert first.status_code == 201
    [event] = logged(app, "bread_types")
    assert event["mutation"] == "k-1"
    with nothing_written(app):
        again = client.post(
            "/api/bread_types",
            json={"name": "Other", "price": 1},
            headers={"Idempotency-Key": "k-1"},
        )
    assert again.status_code == 201
    assert again.get_json() == first.get_json()


def test_idempotency_keys_are_scoped_by_table_and_method(client, app):
    bread_id = bread(client)["id"]
    key = {"Idempotency-Key": "shared"}
    one = client.post("/api/sales_logs", json=sale_body(bread_id), headers=key)
    other_table = client.post("/api/bread_types", json={"name": "Spelt", "price": 2}, headers=key)
    assert one.status_code == other_table.status_code == 201
    sale_id = one.get_json()["row"]["id"]
    patched = client.patch(f"/api/sales_logs/{sale_id}", json={"quantity": 9}, headers=key)
    assert patched.status_code == 200 and patched.get_json()["row"]["quantity"] == 9
    deleted = client.delete(f"/api/sales_logs/{sale_id}", headers=key)
    assert deleted.status_code == 200
    events = logged(app, "sales_logs", "bread_types")
    assert [(e["topic"], e["op"], e["mutation"]) for e in events][1:] == [
        ("sales_logs", "INSERT", "shared"),
        ("bread_types", "INSERT", "shared"),
        ("sales_logs", "UPDATE", "shared"),
        ("sales_logs", "DELETE", "shared"),
    ]
    with nothing_written(app):
        again = client.delete(f"/api/sales_logs/{sale_id}", headers=key)
    assert again.status_code == 200 and again.get_json() == deleted.get_json()


def test_failed_write_does_not_use_up_its_key(client, app):
    key = {"Idempotency-Key": "retry-me"}
    with nothing_written(app):
        assert_error(client.post("/api/bread_types", json={"name": "Rye"}, headers=key), 400)
    fixed = client.post("/api/bread_types", json={"name": "Rye", "price": 1}, headers=key)
    assert fixed.status_code == 201


def test_idempotency_key_length(client, app):
    with nothing_written(app):
        too_long = {"Idempotency-Key": "k" * 201}
        body = {"name": "Rye", "price": 1}
        assert_error(
            client.post("/api/bread_types", json=body, headers=too_long),
            400,
            "invalid_idempotency_key",
        )


def sale_body(bread_id: int, **more) -> dict:
    """Return a valid sales_logs body."""
    return {
        "bread_type_id": bread_id,
        "quantity": 1,
        "unit_price": 2,
        "shift": "morning",
        "recorded_by": "ana",
    } | more


def test_batch_applies_each_op_in_its_own_transaction(client, app):
    bread_id = bread(client)["id"]
    existing = sale(client, bread_id)
    ops = [
        {"method": "POST", "table": "sales_logs", "row": sale_body(bread_id), "key": "b-1"},
        {"method": "PATCH", "table": "sales_logs", "id": existing["id"], "row": {"quantity": 5}},
        {"method": "POST", "table": "sales_logs", "row": {"quantity": "many"}},
        {"method": "PATCH", "table": "sales_logs", "id": existing["id"], "row": {}, "if_match": 1},
        {"method": "DELETE", "table": "nope", "id": 1},
        {"method": "PUT", "table": "sales_logs", "id": 1},
        "not an op",
        {"method": "DELETE", "table": "sales_logs", "id": existing["id"], "if_match": '"2"'},
    ]
    head = log_head(app)
    response = client.post("/api/batch", json={"ops": ops})
    assert response.status_code == 200
    results = response.get_json()["results"]
    assert [r["status"] for r in results] == [201, 200, 400, 412, 404, 400, 400, 200]
    assert results[0]["body"]["row"]["quantity"] == 1
    assert results[1]["body"]["row"]["quantity"] == 5
    assert results[2]["body"]["error"] == "invalid_row"
    assert results[3]["body"]["current"]["version"] == 2
    assert results[4]["body"]["error"] == "unknown_table"
    for failed in results[2:7]:
        assert set(failed["body"]) >= {"error", "message", "details"}
    events = logged(app, "sales_logs", after=head)
    assert [(e["op"], e["id"]) for e in events] == [
        ("INSERT", results[0]["body"]["event"]),
        ("UPDATE", results[1]["body"]["event"]),
        ("DELETE", results[7]["body"]["event"]),
    ]
    assert events[0]["mutation"] == "b-1"
    state = database_state(app)
    replayed = client.post("/api/batch", json={"ops": ops[:1]}).get_json()["results"]
    assert replayed == results[:1]
    assert database_state(app) == state


def test_batch_rejects_a_malformed_body(client, app):
    with nothing_written(app):
        assert_error(client.post("/api/batch", json={"ops": "x"}), 400, "invalid_body")
        assert_error(client.post("/api/batch", json=[]), 400, "invalid_body")
        big = {"ops": [{"method": "DELETE", "table": "bread_types", "id": 1}] * 1001}
        assert_error(client.post("/api/batch", json=big), 400, "batch_too_large")
    assert client.post("/api/batch", json={"ops": []}).get_json() == {"results": []}


def test_publish_to_declared_topics_only(client, app):
    # TOPICS naming a table stops the app at startup (test_capture); tables are refused here.
    app.config["TOPICS"] = ["alerts"]
    response = client.post(
        "/api/publish",
        json={"topic": "alerts", "data": {"text": "oven\r\nhot"}},
        headers={"Idempotency-Key": "p-1"},
    )
    assert response.status_code == 201
    [event] = logged(app, "alerts")
    assert response.get_json() == {"event": event["id"]}
    assert event == {
        "id": event["id"],
        "topic": "alerts",
        "op": "PUBLISH",
        "pk": None,
        "version": None,
        "row": {"text": "oven\r\nhot"},
        "old": None,
        "at": event["at"],
        "mutation": "p-1",
    }
    with nothing_written(app):
        # The server alone publishes presence.
        refused = client.post("/api/publish", json={"topic": "presence", "data": 1})
        assert_error(refused, 403, "forbidden")
        for topic in ("nope", "sales_logs", 5):
            bad = client.post("/api/publish", json={"topic": topic, "data": {}})
            assert_error(bad, 400)
        assert_error(client.post("/api/publish", json={"topic": "alerts"}), 400, "invalid_body")
        repeat = client.post(
            "/api/publish",
            json={"topic": "alerts", "data": {"other": 1}},
            headers={"Idempotency-Key": "p-1"},
        )
        assert repeat.get_json() == response.get_json()


def test_topics_setting_declares_custom_topics(monkeypatch, database_url, redis_server):
    monkeypatch.setenv("TOPICS", "alerts, bench")
    app = create_app(
        {"TESTING": True, "SQLALCHEMY_DATABASE_URI": database_url, "REDIS_URL": redis_server.url}
    )
    with app.app_context():
        db.create_all()
    client = bearer_client(app, make_user(app, "admin"))
    try:
        for topic in ("alerts", "bench"):
            assert client.post("/api/publish", json={"topic": topic, "data": 1}).status_code == 201
        assert_error(client.post("/api/publish", json={"topic": "other", "data": 1}), 400)
        changes = client.get("/api/changes?topics=alerts,bench&cursor=0").get_json()
        assert [e["topic"] for e in changes["events"]] == ["alerts", "bench"]
    finally:
        app.extensions["tidings"].close()


def test_publish_token(client, app):
    app.config["TOPICS"] = ["alerts"]
    app.config["PUBLISH_TOKEN"] = "s3cret"
    body = {"topic": "alerts", "data": {}}
    with nothing_written(app):
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}):
            denied = client.post("/api/publish", json=body, headers=headers)
            assert_error(denied, 401, "unauthorized")
            assert denied.headers["WWW-Authenticate"] == "Bearer"
    allowed = client.post("/api/publish", json=body, headers={"Authorization": "Bearer s3cret"})
    assert allowed.status_code == 201
