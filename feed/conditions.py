"""Filter conditions: `column=op.value` parsed once, tested on event rows and as SQL."""

import csv
import datetime as dt
import math
import operator
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson
import sqlalchemy as sa

from .errors import ApiError
from .live import LiveTable
from .values import iso, parse_bigint, parse_datetime, type_name

_COMPARISONS = {
    "eq": operator.eq,
    "neq": operator.ne,
    "lt": operator.lt,
    "lte": operator.le,
    "gt": operator.gt,
    "gte": operator.ge,
}
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
            return parse_bigint(int(text))
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


def render(condition: Condition) -> str:
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
