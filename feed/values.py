"""Column values: their JSON form, and the checks that keep them inside what databases hold."""

import contextlib
import datetime as dt
import decimal
import math
from typing import Any

import sqlalchemy as sa


def _to_ms(value: dt.datetime) -> dt.datetime:
    """Drop sub-millisecond digits, which the JSON form cannot carry."""
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


def utcnow() -> dt.datetime:
    """Return the current UTC time, naive, at millisecond precision."""
    return _to_ms(dt.datetime.now(dt.UTC).replace(tzinfo=None))


def iso(value: dt.datetime) -> str:
    """Format a UTC datetime as ISO 8601 with milliseconds and Z."""
    if value.tzinfo is not None:
        value = value.astimezone(dt.UTC).replace(tzinfo=None)
    # Not strftime: its %Y drops the leading zeros of years before 1000 on glibc.
    return value.isoformat(timespec="milliseconds") + "Z"


def type_name(column: sa.Column) -> str:
    """Map a column's SQL type to the protocol's type names."""
    kind = column.type
    if isinstance(kind, sa.Boolean):
        return "boolean"
    if isinstance(kind, sa.Integer):
        return "integer"
    if isinstance(kind, sa.Numeric | sa.Float):
        return "number"
    if isinstance(kind, sa.DateTime):
        return "datetime"
    if isinstance(kind, sa.Date):
        return "date"
    if isinstance(kind, sa.JSON):
        return "json"
    return "string"


def to_json(value: Any) -> Any:
    """Turn a column value into its JSON form."""
    if isinstance(value, dt.datetime):
        return iso(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return float(value)
    return value


def parse_datetime(text: str) -> dt.datetime:
    """Parse an ISO 8601 datetime into naive UTC at millisecond precision.

    Stored values then equal their JSON form, so snapshots, events and filters agree.
    """
    value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    if value.tzinfo is not None:
        try:
            value = value.astimezone(dt.UTC).replace(tzinfo=None)
        except OverflowError:
            # 0001-01-01T00:00+01:00 is a year 0 in UTC, which nothing can hold.
            raise ValueError(f"{text!r} is outside the years 1 to 9999 in UTC") from None
    return _to_ms(value)


# The widest integer either database holds (SQLite INTEGER, PostgreSQL BIGINT).
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def parse_bigint(value: int) -> int:
    """Check that an integer fits the databases' 64 bits, raising ValueError when not."""
    if not INT64_MIN <= value <= INT64_MAX:
        raise ValueError("must fit in 64 bits")
    return value


# Integer widths the databases enforce (the narrowest first: both are Integer subclasses).
_INTEGER_BITS = ((sa.SmallInteger, 16), (sa.BigInteger, 64), (sa.Integer, 32))


def integer_bits(kind: sa.types.TypeEngine) -> int:
    """Return how many bits an integer column holds."""
    return next(bits for cls, bits in _INTEGER_BITS if isinstance(kind, cls))


def integer_value(kind: sa.types.TypeEngine, value: int) -> int:
    """Check that an integer fits the column, so no database fails on it later."""
    bits = integer_bits(kind)
    if not -(2 ** (bits - 1)) <= value < 2 ** (bits - 1):
        raise ValueError(f"must fit in {bits} bits")
    return value


def _scaled(kind: sa.types.TypeEngine, value: Any) -> Any:
    """Round a number to a NUMERIC column's scale, as the database stores it (6.555 → 6.56)."""
    if isinstance(kind, sa.Float) or not isinstance(kind, sa.Numeric) or kind.scale is None:
        return value
    return decimal.Decimal(str(value)).quantize(
        decimal.Decimal(1).scaleb(-kind.scale),
        rounding=decimal.ROUND_HALF_UP,
        context=decimal.Context(prec=400),
    )


def _number(kind: sa.types.TypeEngine, value: int | float) -> float | decimal.Decimal:
    """Check that a number fits the column and round it to the column's scale."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("must be a finite number")
    value = _scaled(kind, value)
    precision, scale = getattr(kind, "precision", None), getattr(kind, "scale", None)
    if precision is not None and scale is not None and abs(value) >= 10 ** (precision - scale):
        raise ValueError(f"must be less than 10^{precision - scale} in size")
    if isinstance(value, decimal.Decimal):
        return value
    try:
        return float(value)
    except OverflowError:
        raise ValueError("must fit in a double") from None


def stored_form(column: sa.Column, value: Any) -> Any:
    """Return a value as the database will hand it back.

    Events are built from the Python values of a flush and snapshots from stored ones;
    values are brought to their stored form first so that both say the same.
    """
    if isinstance(value, dt.datetime):
        return _to_ms(value)
    if isinstance(value, int | float | decimal.Decimal) and not isinstance(value, bool):
        return _scaled(column.type, value)
    return value


def from_json(column: sa.Column, value: Any) -> Any:
    """Check and convert a JSON value for a column, raising ValueError when it does not fit."""
    if value is None:
        if not column.nullable:
            raise ValueError("may not be null")
        return None
    kind = type_name(column)
    if kind == "boolean":
        if not isinstance(value, bool):
            raise ValueError("must be true or false")
        return value
    if kind == "integer":
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError("must be an integer")
        return integer_value(column.type, value)
    if kind == "number":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError("must be a number")
        return _number(column.type, value)
    if kind in ("datetime", "date"):
        parse = parse_datetime if kind == "datetime" else dt.date.fromisoformat
        if isinstance(value, str):
            with contextlib.suppress(ValueError):
                return parse(value)
        raise ValueError(f"must be an ISO 8601 {kind} string")
    if kind == "json":
        return value
    if not isinstance(value, str):
        raise ValueError("must be a string")
    length = getattr(column.type, "length", None)
    if length and len(value) > length:
        raise ValueError(f"must be at most {length} characters")
    return value
