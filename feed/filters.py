"""Parse PostgREST-style filters and projections, and apply them to events and queries."""

import csv
import datetime as dt
import math
import operator
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import orjson
import sqlalchemy as sa

from .errors import ApiError
from .live import LiveTable, iso, parse_datetime, type_name

# Query parameters that are not filters.
STREAM_RESERVED = frozenset({"topics", "cursor", "limit", "wait", "access_token"})
SNAPSHOT_RESERVED = frozenset({"select", "order", "limit", "offset"})

_COMPARISONS = {
    "eq": operator.eq,
    "neq": operator.ne,
    "lt": operator.lt,
    "lte": operator.le,
    "gt": operator.gt,
    "gte": operator.ge,
}
# What a subscriber that falls behind keeps exact longest, most first.
PRIORITIES = ("high", "normal", "low")
_IS_VALUES = {"null": None, "true": True, "false": False}
# Filter values are kept in their JSON form; these turn them back into column values.
_NATIVE = {"datetime": parse_datetime, "date": dt.date.fromisoformat}


def _bad_filter(message: str, **details: Any) -> ApiError:
    return ApiError(400, "invalid_filter", message, details)


@dataclass(frozen=True)
class Condition:
    """One `column=op.value` test."""

    column: str
    op: str
    value: Any

    def test(self, row: Mapping | None) -> bool:
        """Tell whether a JSON row satisfies the condition (SQL semantics for nulls)."""
        if row is None:
            return False
        actual = row.get(self.column)
        if self.op == "is":
            return actual is self.value
        if actual is None:
            return False
        try:
            if self.op == "in":
                return actual in self.value
            return _COMPARISONS[self.op](actual, self.value)
        except TypeError:
            return False

    def clause(self, column: sa.Column) -> sa.ColumnElement:
        """Return the SQL form of the condition, for snapshots."""
        if self.op == "is":
            return column.is_(self.value)
        native = _NATIVE.get(type_name(column), lambda value: value)
        if self.op == "in":
            return column.in_([native(v) for v in self.value])
        return _COMPARISONS[self.op](column, native(self.value))


def _coerce(kind: str | None, text: str, column: str) -> Any:
    """Turn a filter value into the JSON value it is compared with."""
    try:
        if kind is None:
            return _untyped(text)
        if kind == "integer":
            value = int(text)
            # Nothing wider is stored, and no database takes a wider parameter.
            if not -(2**63) <= value < 2**63:
                raise ValueError(text)
            return value
        if kind == "number":
            number = float(text)
            if not math.isfinite(number):
                raise ValueError(text)
            return number
        if kind == "boolean":
            return {"true": True, "false": False}[text]
        if kind == "datetime":
            return iso(parse_datetime(text))
        if kind == "date":
            return dt.date.fromisoformat(text).isoformat()
        return text
    except (ValueError, KeyError):
        raise _bad_filter(
            f"Filter value {text!r} does not fit column {column!r} ({kind}).",
            column=column,
            value=text,
        ) from None


def _untyped(text: str) -> Any:
    """Read a filter value on a custom topic: a JSON scalar, or else the text itself."""
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return text
    return text if isinstance(value, list | dict) else value


def _in_items(text: str) -> list[str]:
    """Split the inside of `in.(...)`; items may be double-quoted to hold commas."""
    return [item for item in next(csv.reader([text], skipinitialspace=True)) if item != ""]


def parse_condition(table: LiveTable | None, column: str, expression: str) -> Condition:
    """Parse `op.value` for a column; a table checks the column and types the value."""
    kind = type_name(table.column(column)) if table is not None else None
    op, dot, text = expression.partition(".")
    if not dot:
        raise _bad_filter(
            f"Filter on {column!r} must look like op.value, e.g. eq.5.",
            column=column,
            filter=expression,
        )
    if op not in _COMPARISONS and op not in ("in", "is"):
        raise _bad_filter(
            f"Unknown filter operator {op!r}; use eq, neq, lt, lte, gt, gte, in or is.",
            column=column,
            op=op,
        )
    if op == "is":
        if text not in _IS_VALUES:
            raise _bad_filter(
                f"is. takes null, true or false, not {text!r}.", column=column, value=text
            )
        # SQL would call 1 IS TRUE true where the event filter does not: keep them alike.
        if text != "null" and kind not in (None, "boolean"):
            raise _bad_filter(
                f"is.{text} needs a boolean column; {column!r} is {kind}.",
                column=column,
                value=text,
            )
        return Condition(column, op, _IS_VALUES[text])
    if kind == "json":
        raise _bad_filter(
            f"Column {column!r} holds JSON; it can only be filtered with is.null.",
            column=column,
            op=op,
        )
    if op == "in":
        if not (text.startswith("(") and text.endswith(")")):
            raise _bad_filter("in. takes a list like in.(1,2,3).", column=column, value=text)
        try:
            items = _in_items(text[1:-1])
        except csv.Error:
            raise _bad_filter(
                f"The in. list for {column!r} is malformed.", column=column, value=text
            ) from None
        return Condition(column, op, frozenset(_coerce(kind, item, column) for item in items))
    return Condition(column, op, _coerce(kind, text, column))


def parse_select(table: LiveTable | None, text: str) -> tuple[str, ...]:
    """Parse a `select=` list, checking columns against the table when there is one."""
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    if not names:
        raise ApiError(400, "invalid_select", "select= needs at least one column.")
    if table is not None:
        for name in names:
            table.column(name)
    return names


def _project(row: dict | None, select: tuple[str, ...] | None) -> dict | None:
    if row is None or select is None:
        return row
    return {name: row[name] for name in select if name in row}


@dataclass(frozen=True)
class TopicView:
    """What one subscriber wants of one topic: row conditions, a projection, and how much
    it cares to stay exact when it falls behind (its priority)."""

    topic: str
    conditions: tuple[Condition, ...] = ()
    select: tuple[str, ...] | None = None
    priority: str = "normal"

    def matches(self, row: Mapping | None) -> bool:
        """Tell whether a row is inside this view."""
        return row is not None and all(c.test(row) for c in self.conditions)

    def effective_op(self, data: Mapping) -> str | None:
        """Return the op this view sees for an event, or None when it sees nothing."""
        op = data["op"]
        if not self.conditions:
            return op
        if op == "UPDATE":
            was, now = self.matches(data["old"]), self.matches(data["row"])
            if was and now:
                return "UPDATE"
            if now:
                return "INSERT"
            return "DELETE" if was else None
        row = data["old"] if op == "DELETE" else data["row"]
        return op if self.matches(row) else None

    def shape(self, data: dict, op: str) -> dict:
        """Return the event as this view delivers it."""
        if op == data["op"] and self.select is None:
            return data
        shaped = dict(data, op=op)
        if op == "DELETE" and data["op"] == "UPDATE":
            shaped["row"] = None
        shaped["row"] = _project(shaped["row"], self.select)
        shaped["old"] = _project(shaped["old"], self.select)
        return shaped


@dataclass(frozen=True)
class Subscription:
    """A set of topic views: what a stream, a poll or a long-poll waiter receives."""

    views: Mapping[str, TopicView]

    @property
    def topics(self) -> Iterable[str]:
        """Return the subscribed topic names."""
        return self.views.keys()


def parse_subscription(
    args: Any, tables: Mapping[str, LiveTable], custom_topics: Iterable[str]
) -> Subscription:
    """Build a subscription from stream or poll query parameters."""
    known = set(tables) | set(custom_topics)
    topics = [t.strip() for t in args.get("topics", "").split(",") if t.strip()]
    if not topics:
        raise ApiError(400, "missing_topics", "Say what to receive with topics=a,b.")
    unknown = [t for t in topics if t not in known]
    if unknown:
        raise ApiError(
            400,
            "unknown_topic",
            f"Unknown topic {unknown[0]!r}: use a live table or a declared custom topic.",
            {"topics": unknown, "known": sorted(known)},
        )
    conditions: dict[str, list[Condition]] = {t: [] for t in topics}
    selects: dict[str, tuple[str, ...]] = {}
    priorities: dict[str, str] = {}
    for key, value in args.items(multi=True):
        if key in STREAM_RESERVED or key.startswith("_"):
            continue
        topic, dot, column = key.partition(".")
        if not dot or not column:
            raise ApiError(
                400,
                "unknown_parameter",
                f"Unknown parameter {key!r}; filters look like <topic>.<column>=op.value.",
                {"parameter": key},
            )
        if topic not in conditions:
            raise ApiError(
                400,
                "unknown_topic",
                f"Filter {key!r} names topic {topic!r}, which is not in topics=.",
                {"parameter": key, "topic": topic},
            )
        table = tables.get(topic)
        if column == "select":
            selects[topic] = parse_select(table, value)
        elif column == "priority":
            priorities[topic] = _priority(key, value)
        else:
            conditions[topic].append(parse_condition(table, column, value))
    return Subscription(
        {
            t: TopicView(t, tuple(conditions[t]), selects.get(t), priorities.get(t, "normal"))
            for t in topics
        }
    )


def _priority(key: str, value: str) -> str:
    """Check a `<topic>.priority=` value."""
    if value not in PRIORITIES:
        raise ApiError(
            400,
            "invalid_priority",
            f"{key} must be high, normal or low.",
            {"parameter": key, "value": value},
        )
    return value


def parse_snapshot_filters(args: Any, table: LiveTable) -> list[Condition]:
    """Return the row conditions of a snapshot query."""
    conditions = []
    for key, value in args.items(multi=True):
        if key in SNAPSHOT_RESERVED or key.startswith("_"):
            continue
        conditions.append(parse_condition(table, key, value))
    return conditions


def view_query(view: TopicView) -> str:
    """Render a view as snapshot query parameters, for a reset's snapshot link."""
    params = [(c.column, _render(c)) for c in view.conditions]
    if view.select:
        params.append(("select", ",".join(view.select)))
    return urlencode(params)


def _render(condition: Condition) -> str:
    """Write a condition back as `op.value`, the way parse_condition reads it."""

    def one(value: Any) -> str:
        if isinstance(value, bool) or value is None:
            return orjson.dumps(value).decode()
        text = str(value)
        if condition.op == "in" and any(ch in text for ch in ',"() \r\n'):
            return '"' + text.replace('"', '""') + '"'
        return text

    if condition.op == "in":
        return "in.(" + ",".join(sorted(one(v) for v in condition.value)) + ")"
    return f"{condition.op}.{one(condition.value)}"
