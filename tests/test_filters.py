"""Filters and projections: SQL (snapshot) and Python (poll) select the same rows.

The case table is tests/filter_cases.json, which the browser client's test runs too."""

import pytest

from .api_helpers import bread, log_head
from .filter_cases import CASES, case_id, insert_rows

SALES = [
    # quantity, unit_price, shift, created_at
    (1, 0.5, "morning", "2026-01-01T08:00:00.000Z"),
    (2, 2.25, "afternoon", "2026-01-01T09:30:00.500Z"),
    (2, 2.25, "night", "2026-01-02T00:00:00.000Z"),
    (5, 3.0, "morning", "2026-01-01T09:30:00.500Z"),
    (10, 10.75, "Night", "2025-12-31T23:59:59.999Z"),
]


@pytest.fixture
def shared_rows(app) -> dict[str, list[int]]:
    """Insert the shared cases' rows; return their ids by table, in file order."""
    return insert_rows(app)


@pytest.fixture
def sales(client):
    """Five sales with known values; return their ids in SALES order."""
    bread_id = bread(client)["id"]
    ids = []
    for quantity, price, shift, created in SALES:
        body = {
            "bread_type_id": bread_id,
            "quantity": quantity,
            "unit_price": price,
            "shift": shift,
            "recorded_by": "ana",
            "created_at": created,
        }
        response = client.post("/api/sales_logs", json=body)
        assert response.status_code == 201, response.get_json()
        ids.append(response.get_json()["row"]["id"])
    return ids


def snapshot_ids(client, table: str, filters: list[tuple[str, str]]) -> list[int]:
    """Return the ids a snapshot with these filters holds."""
    response = client.get(f"/api/{table}", query_string=filters)
    assert response.status_code == 200, response.get_json()
    return [row["id"] for row in response.get_json()["rows"]]


def polled(client, topic: str, filters: list[tuple[str, str]], cursor: int = 0) -> list[dict]:
    """Return the events a poll with these filters (on one topic) receives."""
    params = [("topics", topic), ("cursor", str(cursor))]
    params += [(f"{topic}.{column}", value) for column, value in filters]
    response = client.get("/api/changes", query_string=params)
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["more"] is False
    return body["events"]


@pytest.mark.parametrize("case", CASES["cases"], ids=case_id)
def test_snapshot_and_poll_select_the_shared_rows(client, shared_rows, case):
    ours = shared_rows[case["table"]]
    expected = [ours[n] for n in case["rows"]]
    filters = [(case["column"], case["filter"])]
    # The demo writes audit rows of its own: only the shared rows are compared.
    assert [i for i in snapshot_ids(client, case["table"], filters) if i in ours] == expected
    events = polled(client, case["table"], filters)
    assert [e["pk"] for e in events if e["pk"] in ours] == expected


def test_most_shared_cases_select_a_proper_subset():
    """The cases would prove little if most selected everything or nothing."""
    sizes = {table: len(rows) for table, rows in CASES["rows"].items()}
    proper = [case for case in CASES["cases"] if 0 < len(case["rows"]) < sizes[case["table"]]]
    assert len(proper) >= 0.9 * len(CASES["cases"])


@pytest.mark.parametrize("case", CASES["refused"], ids=case_id)
def test_refused_filters_answer_400_with_the_shared_message(client, case):
    table, column, expression = case["table"], case["column"], case["filter"]
    poll = [("topics", table), (f"{table}.{column}", expression)]
    answers = [
        client.get(f"/api/{table}", query_string=[(column, expression)]),
        client.get("/api/changes", query_string=poll),
    ]
    for response in answers:
        assert response.status_code == 400
        body = response.get_json()
        assert (body["error"], body["message"]) == (case["error"], case["message"])


def test_several_filters_are_anded(client, sales):
    filters = [("quantity", "gte.2"), ("shift", "eq.morning")]
    assert snapshot_ids(client, "sales_logs", filters) == [sales[3]]
    assert [e["pk"] for e in polled(client, "sales_logs", filters)] == [sales[3]]
    same_column = [("quantity", "gt.1"), ("quantity", "lt.10"), ("unit_price", "neq.3")]
    assert snapshot_ids(client, "sales_logs", same_column) == sales[1:3]
    assert [e["pk"] for e in polled(client, "sales_logs", same_column)] == sales[1:3]


def test_projection_in_snapshot_and_poll(client, sales):
    response = client.get("/api/sales_logs", query_string={"select": "quantity,id", "limit": 2})
    assert response.get_json()["rows"] == [
        {"quantity": 1, "id": sales[0]},
        {"quantity": 2, "id": sales[1]},
    ]
    head = log_head(client.application)
    client.patch(f"/api/sales_logs/{sales[0]}", json={"quantity": 4, "shift": "night"})
    params = {"topics": "sales_logs", "cursor": head, "sales_logs.select": "quantity"}
    [event] = client.get("/api/changes", query_string=params).get_json()["events"]
    assert event["row"] == {"quantity": 4} and event["old"] == {"quantity": 1}
    assert set(event) == {"id", "topic", "op", "pk", "version", "row", "old", "at", "mutation"}
    assert (event["op"], event["pk"], event["version"]) == ("UPDATE", sales[0], 2)


def test_update_transitions(client, sales):
    """A filtered view sees a row enter (INSERT), change (UPDATE) and leave (DELETE)."""
    first, second = sales[0], sales[1]
    head = log_head(client.application)
    for quantity in (6, 7, 2, 3):
        assert (
            client.patch(f"/api/sales_logs/{first}", json={"quantity": quantity}).status_code == 200
        )
    client.delete(f"/api/sales_logs/{sales[3]}")
    client.delete(f"/api/sales_logs/{second}")
    filters = [("quantity", "gte.5"), ("select", "id,quantity")]
    events = polled(client, "sales_logs", filters, cursor=head)
    seen = [(e["op"], e["pk"], e["row"], e["old"]) for e in events]
    assert seen == [
        ("INSERT", first, {"id": first, "quantity": 6}, {"id": first, "quantity": 1}),
        ("UPDATE", first, {"id": first, "quantity": 7}, {"id": first, "quantity": 6}),
        ("DELETE", first, None, {"id": first, "quantity": 7}),
        ("DELETE", sales[3], None, {"id": sales[3], "quantity": 5}),
    ]
    assert [e["version"] for e in events] == [2, 3, 4, 1]
    unfiltered = polled(client, "sales_logs", [], cursor=head)
    assert [e["op"] for e in unfiltered] == ["UPDATE"] * 4 + ["DELETE"] * 2
    assert snapshot_ids(client, "sales_logs", [("quantity", "gte.5")]) == [sales[4]]


def test_custom_topic_filters_read_json_values(client, app):
    app.config["TOPICS"] = ["alerts"]
    for data in ({"level": 3, "kind": "a"}, {"level": 5, "kind": "b"}, {"kind": "c"}):
        assert (
            client.post("/api/publish", json={"topic": "alerts", "data": data}).status_code == 201
        )
    for filters, kinds in [
        ([("level", "gte.4")], ["b"]),
        ([("level", "is.null")], ["c"]),
        ([("kind", "in.(a,c)")], ["a", "c"]),
        ([("kind", "eq.[1]")], []),
        ([("level", "in.([1],3)")], ["a"]),
    ]:
        events = polled(client, "alerts", filters)
        assert [e["row"]["kind"] for e in events] == kinds, filters
