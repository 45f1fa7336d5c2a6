"""Filters and projections: SQL (snapshot) and Python (poll) select the same rows."""

import datetime as dt

import pytest

from feed import runtime, writes

from .api_helpers import bread, log_head

SALES = [
    # quantity, unit_price, shift, created_at
    (1, 0.5, "morning", "2026-01-01T08:00:00.000Z"),
    (2, 2.25, "afternoon", "2026-01-01T09:30:00.500Z"),
    (2, 2.25, "night", "2026-01-02T00:00:00.000Z"),
    (5, 3.0, "morning", "2026-01-01T09:30:00.500Z"),
    (10, 10.75, "Night", "2025-12-31T23:59:59.999Z"),
]


def when(text: str) -> dt.datetime:
    """Parse an ISO datetime to aware UTC, for the oracle."""
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(dt.UTC)


NOON = when("2026-01-01T09:30:00.500Z")

# (column, filter, oracle on (quantity, unit_price, shift, created_at))
CASES = [
    ("quantity", "eq.2", lambda q, p, s, c: q == 2),
    ("quantity", "neq.2", lambda q, p, s, c: q != 2),
    ("quantity", "lt.2", lambda q, p, s, c: q < 2),
    ("quantity", "lte.2", lambda q, p, s, c: q <= 2),
    ("quantity", "gt.2", lambda q, p, s, c: q > 2),
    ("quantity", "gte.5", lambda q, p, s, c: q >= 5),
    ("quantity", "in.(1,10)", lambda q, p, s, c: q in (1, 10)),
    ("quantity", "in.( 5 , 7 )", lambda q, p, s, c: q == 5),
    ("quantity", "in.()", lambda q, p, s, c: False),
    ("unit_price", "eq.2.25", lambda q, p, s, c: p == 2.25),
    ("unit_price", "eq.3", lambda q, p, s, c: p == 3),
    ("unit_price", "neq.2.25", lambda q, p, s, c: p != 2.25),
    ("unit_price", "lt.3", lambda q, p, s, c: p < 3),
    ("unit_price", "lte.3", lambda q, p, s, c: p <= 3),
    ("unit_price", "gt.2.25", lambda q, p, s, c: p > 2.25),
    ("unit_price", "gte.2.25", lambda q, p, s, c: p >= 2.25),
    ("unit_price", "in.(0.5,10.75)", lambda q, p, s, c: p in (0.5, 10.75)),
    ("shift", "eq.morning", lambda q, p, s, c: s == "morning"),
    ("shift", "eq.Night", lambda q, p, s, c: s == "Night"),
    ("shift", "neq.morning", lambda q, p, s, c: s != "morning"),
    ("shift", "lt.night", lambda q, p, s, c: s < "night"),
    ("shift", "lte.morning", lambda q, p, s, c: s <= "morning"),
    ("shift", "gt.m", lambda q, p, s, c: s > "m"),
    ("shift", "gte.night", lambda q, p, s, c: s >= "night"),
    ("shift", "in.(morning,night)", lambda q, p, s, c: s in ("morning", "night")),
    ("shift", 'in.("night","a,b")', lambda q, p, s, c: s == "night"),
    ("created_at", "eq.2026-01-01T09:30:00.500Z", lambda q, p, s, c: when(c) == NOON),
    ("created_at", "eq.2026-01-01T10:30:00.5+01:00", lambda q, p, s, c: when(c) == NOON),
    ("created_at", "neq.2026-01-01T09:30:00.500Z", lambda q, p, s, c: when(c) != NOON),
    ("created_at", "lt.2026-01-01T09:30:00.500Z", lambda q, p, s, c: when(c) < NOON),
    ("created_at", "lte.2026-01-01T09:30:00.500Z", lambda q, p, s, c: when(c) <= NOON),
    ("created_at", "gt.2026-01-01T09:30:00.500Z", lambda q, p, s, c: when(c) > NOON),
    ("created_at", "gte.2026-01-01T09:30:00.500Z", lambda q, p, s, c: when(c) >= NOON),
    ("created_at", "gt.2026-01-01T09:30:00.5004Z", lambda q, p, s, c: when(c) > NOON),
    ("created_at", "gte.2026-01-01T09:30:00.5004Z", lambda q, p, s, c: when(c) >= NOON),
    ("created_at", "gte.2026-01-01", lambda q, p, s, c: c >= "2026-01-01"),
    (
        "created_at",
        "in.(2026-01-01T08:00:00Z,2026-01-02T00:00:00.000Z)",
        lambda q, p, s, c: c in ("2026-01-01T08:00:00.000Z", "2026-01-02T00:00:00.000Z"),
    ),
]


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


@pytest.mark.parametrize(("column", "expression", "oracle"), CASES)
def test_snapshot_and_poll_select_the_same_rows(client, sales, column, expression, oracle):
    expected = [sid for sid, values in zip(sales, SALES, strict=True) if oracle(*values)]
    filters = [(column, expression)]
    assert snapshot_ids(client, "sales_logs", filters) == expected
    assert [e["pk"] for e in polled(client, "sales_logs", filters)] == expected


def test_every_case_selects_a_proper_subset_somewhere():
    """The cases above would prove little if most selected everything or nothing."""
    proper = [
        case for case in CASES if 0 < sum(bool(case[2](*values)) for values in SALES) < len(SALES)
    ]
    assert len(proper) >= len(CASES) - 2


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("eq.true", [True]),
        ("eq.false", [False]),
        ("neq.true", [False]),
        ("is.true", [True]),
        ("is.false", [False]),
        ("in.(true,false)", [True, False]),
    ],
)
def test_boolean_filters(client, expression, expected):
    breads = [bread(client, name=f"B{n}", active=n % 2 == 0) for n in range(4)]
    want = [b["id"] for b in breads if b["active"] in expected]
    assert snapshot_ids(client, "bread_types", [("active", expression)]) == want
    assert [e["pk"] for e in polled(client, "bread_types", [("active", expression)])] == want


@pytest.mark.parametrize(
    ("expression", "expected"),
    [("is.null", [None]), ("eq.7", [7]), ("neq.7", [3]), ("gt.0", [3, 7]), ("in.(3,7)", [3, 7])],
)
def test_nulls_follow_sql_semantics(app, client, expression, expected):
    head_ids = set(snapshot_ids(client, "audit_logs", []))
    ours = []
    for target in (None, 3, 7):
        body = {"actor": "t", "action": "x", "target_table": "t", "target_id": target}
        # Only the server writes the audit log: as the app itself, with no principal.
        with app.app_context():
            status, written = writes.write(runtime(), "POST", "audit_logs", body=body)
        assert status == 201
        ours.append((written["row"]["id"], target))
    want = [rid for rid, target in ours if target in expected]
    found = snapshot_ids(client, "audit_logs", [("target_id", expression)])
    assert [rid for rid in found if rid not in head_ids] == want
    events = polled(client, "audit_logs", [("target_id", expression)])
    assert [e["pk"] for e in events if e["pk"] not in head_ids] == want


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
