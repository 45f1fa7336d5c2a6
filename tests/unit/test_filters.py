"""What a filtered, projected view sees of each event, and filters written back as text."""

from urllib.parse import parse_qsl

import pytest
from werkzeug.datastructures import MultiDict

from feed.conditions import Condition, parse_condition
from feed.errors import ApiError
from feed.filters import TopicView, parse_subscription, view_query

from .model import GADGETS

NIGHT = TopicView("gadgets", (Condition("name", "eq", "night"),))
PROJECTED = TopicView("gadgets", NIGHT.conditions, ("id", "name"))


def row(name: str | None, size: int | None = 3) -> dict:
    return {"id": 7, "name": name, "size": size, "version": 2}


def event(op: str, new: dict | None, old: dict | None) -> dict:
    return {
        "id": 41,
        "topic": "gadgets",
        "op": op,
        "pk": 7,
        "version": 2,
        "row": new,
        "old": old,
        "at": "2026-01-01T00:00:00.000Z",
        "mutation": "m-1",
    }


@pytest.mark.parametrize(
    ("data", "op"),
    [
        (event("UPDATE", row("night"), row("night")), "UPDATE"),
        (event("UPDATE", row("day"), row("night")), "DELETE"),
        (event("UPDATE", row("night"), row("day")), "INSERT"),
        (event("UPDATE", row("day"), row("day")), None),
        (event("INSERT", row("night"), None), "INSERT"),
        (event("INSERT", row("day"), None), None),
        (event("DELETE", None, row("night")), "DELETE"),
        (event("DELETE", None, row("day")), None),
    ],
)
def test_effective_op_follows_the_row_in_and_out_of_the_view(data, op):
    assert NIGHT.effective_op(data) == op


def test_custom_topic_publish_is_matched_on_its_row():
    alerts = TopicView("alerts", (Condition("level", "gte", 3),))
    assert alerts.effective_op(event("PUBLISH", {"level": 3}, None)) == "PUBLISH"
    assert alerts.effective_op(event("PUBLISH", {"level": 2}, None)) is None
    assert alerts.effective_op(event("PUBLISH", {"other": 9}, None)) is None


def test_view_without_conditions_sees_every_op_and_the_event_itself():
    view = TopicView("gadgets")
    for op in ("INSERT", "UPDATE", "DELETE"):
        data = event(op, row("day"), row("day"))
        assert view.effective_op(data) == op
        assert view.shape(data, op) is data


def test_update_inside_the_view_is_delivered_as_stored():
    data = event("UPDATE", row("night", 4), row("night", 3))
    assert NIGHT.shape(data, "UPDATE") is data


def test_update_leaving_the_view_is_a_delete_with_no_row():
    data = event("UPDATE", row("day"), row("night"))
    before = dict(data)
    assert NIGHT.shape(data, "DELETE") == before | {"op": "DELETE", "row": None}
    assert data == before


def test_update_entering_the_view_is_an_insert_keeping_old():
    data = event("UPDATE", row("night"), row("day"))
    assert NIGHT.shape(data, "INSERT") == data | {"op": "INSERT"}
    assert data["op"] == "UPDATE"


def test_projection_applies_to_row_and_old_and_keeps_the_envelope():
    data = event("UPDATE", row("night", 4), row("night", 3))
    assert PROJECTED.shape(data, "UPDATE") == data | {
        "row": {"id": 7, "name": "night"},
        "old": {"id": 7, "name": "night"},
    }
    left = PROJECTED.shape(event("UPDATE", row("day"), row("night")), "DELETE")
    assert (left["op"], left["row"], left["old"]) == ("DELETE", None, {"id": 7, "name": "night"})
    gone = PROJECTED.shape(event("DELETE", None, row("night")), "DELETE")
    assert (gone["row"], gone["old"]) == (None, {"id": 7, "name": "night"})


def test_projection_skips_columns_a_row_lacks():
    view = TopicView("alerts", select=("level", "missing"))
    shaped = view.shape(event("PUBLISH", {"level": 1, "text": "x"}, None), "PUBLISH")
    assert (shaped["row"], shaped["old"]) == ({"level": 1}, None)


@pytest.mark.parametrize(
    ("condition", "value", "expected"),
    [
        (Condition("size", "eq", 3), 3, True),
        (Condition("size", "eq", 3), 3.0, True),
        (Condition("size", "neq", 3), 4, True),
        (Condition("size", "lt", 3), 2, True),
        (Condition("size", "lte", 3), 3, True),
        (Condition("size", "gt", 3), 3, False),
        (Condition("size", "gte", 3), 3, True),
        (Condition("size", "in", frozenset({1, 3})), 3, True),
        (Condition("size", "in", frozenset()), 3, False),
        # Null is neither equal, unequal, smaller nor in any list: SQL's unknown.
        (Condition("size", "eq", 3), None, False),
        (Condition("size", "neq", 3), None, False),
        (Condition("size", "lt", 3), None, False),
        (Condition("size", "gte", 3), None, False),
        (Condition("size", "in", frozenset({3})), None, False),
        (Condition("size", "is", None), None, True),
        (Condition("size", "is", None), 0, False),
        (Condition("active", "is", True), True, True),
        (Condition("active", "is", True), 1, False),
        (Condition("active", "is", False), 0, False),
        (Condition("active", "is", False), None, False),
        # Values of another type never match rather than fail.
        (Condition("name", "lt", "m"), 5, False),
        (Condition("name", "in", frozenset({"a"})), ["a"], False),
    ],
)
def test_condition_compares_with_sql_null_semantics(condition, value, expected):
    assert condition.test({condition.column: value}) is expected


def test_condition_on_a_missing_row_or_column():
    assert Condition("size", "eq", 3).test(None) is False
    assert Condition("size", "is", None).test({}) is True
    assert Condition("size", "neq", 3).test({}) is False


def test_update_from_null_into_the_view_is_an_insert():
    view = TopicView("gadgets", (Condition("size", "neq", 3),))
    assert view.effective_op(event("UPDATE", row("a", 4), row("a", None))) == "INSERT"
    assert view.effective_op(event("UPDATE", row("a", None), row("a", 4))) == "DELETE"
    assert view.effective_op(event("UPDATE", row("a", None), row("a", None))) is None


def test_every_condition_must_hold():
    view = TopicView("gadgets", (Condition("name", "eq", "night"), Condition("size", "gt", 3)))
    assert view.matches(row("night", 4)) is True
    assert view.matches(row("night", 3)) is False
    assert view.matches(row("day", 4)) is False
    assert view.matches(None) is False


def test_view_query_renders_snapshot_parameters():
    view = TopicView(
        "gadgets",
        (
            Condition("size", "gte", 3),
            Condition("name", "in", frozenset({"b", "a,b", 'say "hi"'})),
            Condition("active", "is", True),
            Condition("specs", "is", None),
        ),
        ("id", "name"),
    )
    assert view_query(view) == (
        "size=gte.3"
        "&name=in.%28%22a%2Cb%22%2C%22say+%22%22hi%22%22%22%2Cb%29"
        "&active=is.true&specs=is.null&select=id%2Cname"
    )
    assert view_query(TopicView("gadgets")) == ""


FILTERS = [
    ("id", "eq.5"),
    ("size", "neq.-3"),
    ("size", "in.(3,1,2)"),
    ("size", "in.()"),
    ("size", "is.null"),
    ("weight", "lt.2.5"),
    ("weight", "gte.1e+16"),
    ("weight", "in.(0.5,2)"),
    ("active", "eq.true"),
    ("active", "is.false"),
    ("active", "in.(true,false)"),
    ("made_on", "gte.2026-02-28"),
    ("seen_at", "lt.2026-01-01T10:30:00.5+01:00"),
    ("seen_at", "in.(2026-01-01T00:00:00Z,2026-01-02T00:00:00.123Z)"),
    ("name", "eq.a.b c"),
    ("name", "eq."),
    ("name", 'in.("a,b", plain ,"x ""y""","(z)")'),
    ("specs", "is.null"),
]


@pytest.mark.parametrize(("column", "expression"), FILTERS)
def test_view_query_parses_back_to_the_same_conditions(column, expression):
    condition = parse_condition(GADGETS, column, expression)
    [(name, text)] = parse_qsl(view_query(TopicView("gadgets", (condition,))))
    assert name == column
    assert parse_condition(GADGETS, name, text) == condition


def test_parse_condition_types_values_by_column():
    assert parse_condition(GADGETS, "size", "in.(3, 1)") == Condition(
        "size", "in", frozenset({1, 3})
    )
    assert parse_condition(GADGETS, "weight", "eq.2") == Condition("weight", "eq", 2.0)
    assert parse_condition(GADGETS, "seen_at", "eq.2026-01-01T10:30:00.5+01:00") == Condition(
        "seen_at", "eq", "2026-01-01T09:30:00.500Z"
    )
    assert parse_condition(GADGETS, "name", "eq.5") == Condition("name", "eq", "5")
    assert parse_condition(None, "level", "eq.5") == Condition("level", "eq", 5)
    assert parse_condition(None, "level", "eq.five") == Condition("level", "eq", "five")


def _subscribe(**args: str):
    return parse_subscription(MultiDict({"topics": "gadgets", **args}), {"gadgets": GADGETS}, ())


def test_priority_is_a_reserved_word_of_subscriptions_not_a_column_filter():
    assert _subscribe().views["gadgets"].priority == "normal"
    view = _subscribe(**{"gadgets.priority": "high", "gadgets.size": "gt.2"}).views["gadgets"]
    assert view.priority == "high"
    assert view.conditions == (Condition("size", "gt", 2),)
    with pytest.raises(ApiError) as refused:
        _subscribe(**{"gadgets.priority": "urgent"})
    assert (refused.value.status, refused.value.code) == (400, "invalid_priority")
