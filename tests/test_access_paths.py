"""The bakery's policies on every path: snapshot, get one, writes, batch, publish, poll,
replay and transitions. Staff see and change only their store; viewers read every store and
change nothing; admins and managers do everything; who acted comes from the principal."""

import pytest

from .api_helpers import SALE, assert_error, bread, logged, nothing_written
from .identities import bearer_client, make_user

ROLES = (("admin", None), ("manager", None), ("viewer", None), ("staff", 1), ("staff", 2))


@pytest.fixture
def bakery(app, client):
    """A bread and one sale in each store, written by the admin; returns their ids."""
    bread_id = bread(client)["id"]
    sales = {}
    for store in (1, 2):
        response = client.post(
            "/api/sales_logs", json=SALE | {"bread_type_id": bread_id, "store_id": store}
        )
        assert response.status_code == 201, response.get_json()
        sales[store] = response.get_json()["row"]["id"]
    return {"bread": bread_id, "sales": sales}


@pytest.fixture
def as_role(app):
    """Return a client acting as a new user of a role and store."""

    def make(role: str, store: int | None = None):
        return bearer_client(app, make_user(app, role, store))

    return make


def _stores_seen(client, table: str = "sales_logs") -> set:
    response = client.get(f"/api/{table}")
    assert response.status_code == 200, response.get_json()
    return {row["store_id"] for row in response.get_json()["rows"]}


@pytest.mark.parametrize(("role", "store"), ROLES)
def test_snapshot_and_get_one_show_only_readable_rows(bakery, as_role, role, store):
    client = as_role(role, store)
    expected = {store} if role == "staff" else {1, 2}
    assert _stores_seen(client) == expected
    # Bakery-wide audit rows (a bread type's) belong to no store: staff do not see them.
    bakery_wide = set() if role == "staff" else {None}
    assert _stores_seen(client, "audit_logs") <= expected | bakery_wide
    for sale_store, sale_id in bakery["sales"].items():
        response = client.get(f"/api/sales_logs/{sale_id}")
        if sale_store in expected:
            assert response.get_json()["row"]["store_id"] == sale_store
        else:
            # Another store's row does not exist for this caller.
            body = assert_error(response, 404, "not_found")
            assert body["message"] == f"sales_logs has no row {sale_id}."
    # Everyone reads the shared bread types.
    assert [row["id"] for row in client.get("/api/bread_types").get_json()["rows"]] == [
        bakery["bread"]
    ]


def test_staff_writes_land_in_their_store_as_themselves(app, bakery, as_role):
    staff = as_role("staff", 1)
    body = SALE | {"bread_type_id": bakery["bread"], "recorded_by": "someone else"}
    response = staff.post("/api/sales_logs", json=body)
    assert response.status_code == 201, response.get_json()
    row = response.get_json()["row"]
    assert row["store_id"] == 1 and row["recorded_by"].startswith("staff-")
    [audit] = [
        e["row"]
        for e in logged(app, "audit_logs")
        if e["row"]["target_table"] == "sales_logs" and e["row"]["target_id"] == row["id"]
    ]
    assert (audit["actor"], audit["store_id"]) == (row["recorded_by"], 1)
    # An update keeps who recorded the row, whatever the request says.
    patched = staff.patch(f"/api/sales_logs/{row['id']}", json={"quantity": 9, "recorded_by": "x"})
    assert patched.get_json()["row"]["recorded_by"] == row["recorded_by"]


def test_staff_cannot_reach_or_move_rows_of_another_store(app, bakery, as_role):
    staff = as_role("staff", 1)
    own, other = bakery["sales"][1], bakery["sales"][2]
    with nothing_written(app):
        assert_error(staff.patch(f"/api/sales_logs/{other}", json={"quantity": 1}), 404)
        assert_error(staff.delete(f"/api/sales_logs/{other}"), 404)
        assert_error(staff.patch(f"/api/sales_logs/{own}", json={"store_id": 2}), 403, "forbidden")
        placed = SALE | {"bread_type_id": bakery["bread"], "store_id": 2}
        assert_error(staff.post("/api/sales_logs", json=placed), 403, "forbidden")
        assert_error(staff.post("/api/bread_types", json={"name": "Spelt", "price": 4}), 403)
        assert_error(staff.post("/api/audit_logs", json={"actor": "x", "action": "y"}), 403)


def test_viewers_change_nothing(app, bakery, as_role):
    viewer = as_role("viewer")
    sale_id = bakery["sales"][1]
    with nothing_written(app):
        assert_error(viewer.post("/api/sales_logs", json=SALE | {"store_id": 1}), 403)
        assert_error(viewer.patch(f"/api/sales_logs/{sale_id}", json={"quantity": 1}), 403)
        assert_error(viewer.delete(f"/api/sales_logs/{sale_id}"), 403)
        assert_error(viewer.post("/api/bread_types", json={"name": "Spelt", "price": 4}), 403)


def test_batch_applies_the_policy_per_op(app, bakery, as_role):
    staff = as_role("staff", 1)
    ops = [
        {
            "method": "PATCH",
            "table": "sales_logs",
            "id": bakery["sales"][1],
            "row": {"quantity": 5},
        },
        {
            "method": "PATCH",
            "table": "sales_logs",
            "id": bakery["sales"][2],
            "row": {"quantity": 5},
        },
        {"method": "DELETE", "table": "bread_types", "id": bakery["bread"]},
    ]
    results = staff.post("/api/batch", json={"ops": ops}).get_json()["results"]
    assert [r["status"] for r in results] == [200, 404, 403]
    assert results[1]["body"]["error"] == "not_found"
    assert results[2]["body"]["error"] == "forbidden"


def test_publishing_needs_the_topics_right(app, as_role):
    app.config["TOPICS"] = ["alerts"]
    assert_error(as_role("staff", 1).post("/api/publish", json={"topic": "alerts", "data": 1}), 403)
    manager = as_role("manager")
    assert manager.post("/api/publish", json={"topic": "alerts", "data": 1}).status_code == 201
    # Only the server publishes the monitor's figures.
    assert_error(manager.post("/api/publish", json={"topic": "monitor", "data": {}}), 403)


def test_a_topic_the_caller_may_not_read_is_refused_before_any_stream(as_role):
    staff = as_role("staff", 1)
    for path in ("/api/changes?topics=monitor", "/stream?topics=sales_logs,monitor"):
        body = assert_error(staff.get(path), 403, "forbidden")
        assert body["details"]["topics"] == ["monitor"]
    assert_error(staff.get("/api/changes?topics=auth"), 400, "unknown_topic")


def _poll(client, cursor: int, **filters: str) -> list[dict]:
    params = {"topics": "sales_logs", "cursor": cursor, **filters}
    response = client.get("/api/changes", query_string=params)
    assert response.status_code == 200, response.get_json()
    return response.get_json()["events"]


def test_polls_see_only_readable_events_and_moves_between_stores_as_transitions(
    app, client, bakery, as_role
):
    start = logged(app)[-1]["id"]
    first, second, viewer = as_role("staff", 1), as_role("staff", 2), as_role("viewer")
    moved = bakery["sales"][1]
    assert client.patch(f"/api/sales_logs/{moved}", json={"store_id": 2}).status_code == 200
    assert client.patch(f"/api/sales_logs/{moved}", json={"quantity": 7}).status_code == 200

    def seen(who):
        return [(e["op"], e["pk"], e["row"] and e["row"]["store_id"]) for e in _poll(who, start)]

    # Store 1 saw the row leave (a DELETE without the row), and nothing after.
    assert seen(first) == [("DELETE", moved, None)]
    # Store 2 saw it arrive, then change.
    assert seen(second) == [("INSERT", moved, 2), ("UPDATE", moved, 2)]
    assert seen(viewer) == [("UPDATE", moved, 2), ("UPDATE", moved, 2)]
    # Replay from the start of the log holds to the same rule: never another store's row.
    assert {e["row"]["store_id"] for e in _poll(first, 0) if e["row"]} == {1}
    # Visibility combines with the subscription's filter: the row entered both at once.
    quantity_seven = _poll(second, start, **{"sales_logs.quantity": "eq.7"})
    assert [(e["op"], e["pk"]) for e in quantity_seven] == [("INSERT", moved)]
