"""Live tables: the mixin that marks a model live, its columns and its JSON form."""

import datetime as dt
import functools
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy import inspect
from sqlalchemy.orm import Mapped, mapped_column

from .errors import ApiError
from .values import from_json, integer_value, stored_form, to_json, type_name, utcnow

# Columns the feed maintains; a client may read them but never write them.
MANAGED_COLUMNS = frozenset({"id", "version", "updated_at"})


class LiveMixin:
    """Mark a Flask-SQLAlchemy model live: captured, served over REST and streamed."""

    __live__ = True

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    version: Mapped[int] = mapped_column(sa.Integer, nullable=False, default=1)
    updated_at: Mapped[dt.datetime] = mapped_column(sa.DateTime, nullable=False, default=utcnow)

    def __init_subclass__(cls, **kwargs: Any):
        super().__init_subclass__(**kwargs)
        # Set on the mapped table, not in __table_args__, which a model may define for itself.
        # SQLite otherwise hands a deleted newest row's id out again (PostgreSQL never does).
        table = getattr(cls, "__table__", None)
        if table is not None:
            table.dialect_options["sqlite"]["autoincrement"] = True


def is_live(obj_or_cls: Any) -> bool:
    """Tell whether a model instance or class is live."""
    return getattr(obj_or_cls, "__live__", False) is True


@dataclass(frozen=True)
class LiveTable:
    """What the feed knows of one live model."""

    name: str
    model: type
    columns: dict[str, sa.Column]

    def describe(self) -> dict:
        """Describe the table for GET /api/tables."""
        return {
            "name": self.name,
            "columns": [
                {
                    "name": name,
                    "type": type_name(column),
                    "nullable": bool(column.nullable),
                    "primary_key": bool(column.primary_key),
                }
                for name, column in self.columns.items()
            ],
        }

    def normalize(self, obj: Any) -> None:
        """Bring an instance's loaded values to their stored form before it is flushed."""
        loaded = inspect(obj).dict
        for name, column in self.columns.items():
            value = loaded.get(name)
            if value is not None:
                stored = stored_form(column, value)
                if stored != value or type(stored) is not type(value):
                    setattr(obj, name, stored)

    def row(self, obj: Any) -> dict:
        """Return the JSON form of a model instance."""
        return {name: to_json(getattr(obj, name)) for name in self.columns}

    def row_from_mapping(self, mapping: Any) -> dict:
        """Return the JSON form of a result row."""
        return {name: to_json(mapping[name]) for name in self.columns}

    def key(self, row_id: int) -> int:
        """Check a row id against the id column, or raise a 400 naming it."""
        try:
            return integer_value(self.columns["id"].type, row_id)
        except ValueError as exc:
            raise ApiError(
                400,
                "invalid_id",
                f"A {self.name} id {exc}.",
                # As text: JSON (and orjson) cannot carry integers past 64 bits.
                {"table": self.name, "id": str(row_id)},
            ) from None

    def column(self, name: str) -> sa.Column:
        """Return a column by name, or raise a 400 naming it."""
        try:
            return self.columns[name]
        except KeyError:
            raise ApiError(
                400,
                "unknown_column",
                f"Table {self.name} has no column {name!r}.",
                {"table": self.name, "column": name},
            ) from None

    def values_from_body(self, body: Any, *, partial: bool) -> dict:
        """Validate a JSON write body and return column values for the model."""
        if not isinstance(body, dict):
            raise ApiError(400, "invalid_body", "The request body must be a JSON object.")
        values, problems = {}, {}
        for name, value in body.items():
            if name in MANAGED_COLUMNS:
                problems[name] = "is maintained by the server and cannot be written"
                continue
            column = self.column(name)
            try:
                values[name] = from_json(column, value)
            except ValueError as exc:
                problems[name] = str(exc)
        if not partial:
            for name, column in self.columns.items():
                has_default = column.default is not None or column.server_default is not None
                required = not column.nullable and not has_default
                if required and name not in MANAGED_COLUMNS and name not in body:
                    problems[name] = "is required"
        if problems:
            raise ApiError(
                400,
                "invalid_row",
                "Some values do not fit their columns: "
                + "; ".join(f"{name} {why}" for name, why in problems.items())
                + ".",
                {"table": self.name, "columns": problems},
            )
        return values


@functools.cache
def live_table(model: type) -> LiveTable:
    """Describe a live model."""
    # id first, the feed's bookkeeping last, the model's own columns between.
    rank = {"id": 0, "version": 2, "updated_at": 3}
    ordered = sorted(model.__table__.columns, key=lambda column: rank.get(column.name, 1))
    columns = {column.name: column for column in ordered}
    return LiveTable(model.__tablename__, model, columns)
