"""Snapshots as engine calls: a table's rows with the cursor they are consistent with, and
one row.

The cursor is the log's head when the answer is made, cached rows or not: rows are served
from the cache only while no event of their table came after them, so they are consistent
with any later head.
"""

import hashlib
from collections.abc import Hashable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson
import sqlalchemy as sa

from .errors import ApiError
from .filters import parse_select, parse_snapshot_filters
from .live import LiveTable
from .policy import read_clauses, row_not_found
from .principal import Principal

if TYPE_CHECKING:
    from .extension import FeedRuntime


@dataclass(frozen=True)
class Snapshot:
    """A snapshot's rows (as JSON bytes), the cursor, and an entity tag for the rows."""

    rows: bytes
    cursor: int
    etag: str

    @property
    def body(self) -> bytes:
        """Return the JSON body: {"rows": [...], "cursor": N}."""
        return b'{"rows":' + self.rows + b',"cursor":' + str(self.cursor).encode() + b"}"


def parse_order(table: LiveTable, text: str | None) -> list[sa.ColumnElement]:
    """Parse `order=col.asc,col2.desc`; id breaks ties so limit/offset pages are stable."""
    clauses, named = [], set()
    for part in (text or "").split(","):
        if not part.strip():
            continue
        name, _, direction = part.strip().partition(".")
        column = table.column(name)
        if direction not in ("", "asc", "desc"):
            raise ApiError(
                400,
                "invalid_order",
                f"In order=, direction {direction!r} must be asc or desc.",
                {"order": text},
            )
        clauses.append(column.desc() if direction == "desc" else column.asc())
        named.add(name)
    if "id" not in named:
        clauses.append(table.columns["id"].asc())
    return clauses


def _etag(payload: bytes) -> str:
    """Return an opaque (unquoted) entity tag for a payload."""
    return hashlib.blake2b(payload, digest_size=12).hexdigest()


def read_snapshot(
    rt: "FeedRuntime",
    name: str,
    args: Any,
    *,
    limit: int,
    offset: int = 0,
    principal: Principal | None = None,
) -> Snapshot:
    """Return a table's rows matching snapshot query parameters (filters, select, order:
    a MultiDict), and the log head they are consistent with."""
    table = rt.registry.table(name)
    conditions = parse_snapshot_filters(args, table)
    select = parse_select(table, args["select"]) if "select" in args else None
    query = (
        sa.select(table.model.__table__)
        .where(
            *(c.clause(table.columns[c.column]) for c in conditions),
            *read_clauses(table, principal),
        )
        .order_by(*parse_order(table, args.get("order")))
        .limit(limit)
        .offset(offset)
    )

    def read(conn: sa.Connection) -> tuple[bytes, str]:
        rows = [table.row_from_mapping(row) for row in conn.execute(query).mappings()]
        if select is not None:
            rows = [{k: row[k] for k in select} for row in rows]
        payload = orjson.dumps(rows)
        # Hashed once with the rows, not on every cached answer.
        return payload, _etag(payload)

    group = principal.group if principal is not None else None
    key: Hashable = (name, group, tuple(sorted(args.items(multi=True))))
    with rt.transactions.read() as conn:
        (rows, etag), head = rt.cache.snapshot(conn, key, name, read)
    return Snapshot(rows, head, etag)


def read_row(
    rt: "FeedRuntime", name: str, row_id: int, *, principal: Principal | None = None
) -> dict:
    """Return one row of a table as JSON, or raise a 404."""
    table = rt.registry.table(name)
    if not table.holds_id(row_id):
        # As text: JSON encoders stop at 64 bits.
        raise row_not_found(name, str(row_id))
    query = sa.select(table.model.__table__).where(
        table.columns["id"] == row_id, *read_clauses(table, principal)
    )
    with rt.transactions.read() as conn:
        found = conn.execute(query).mappings().first()
    if found is None:
        raise row_not_found(name, row_id)
    return table.row_from_mapping(found)
