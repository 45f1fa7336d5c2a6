"""Row scope: the rows and events one caller may see, as every read and write path takes it.

Each engine path asks `row_scope` once and applies what it returns in one place: its SQL
`where` conditions on snapshot, get-one and write lookups, and `admits` on rows a write
produces. Today every caller sees every row; the policy work replaces `row_scope`.
"""

from collections.abc import Callable
from dataclasses import dataclass

import sqlalchemy as sa

from .live import LiveTable
from .principal import Principal


def _everything(_row: dict) -> bool:
    return True


@dataclass(frozen=True)
class RowScope:
    """Extra SQL conditions on a table's rows, and the same rule as a test of one row."""

    where: tuple[sa.ColumnElement[bool], ...] = ()
    admits: Callable[[dict], bool] = _everything


UNSCOPED = RowScope()


def row_scope(table: LiveTable, principal: Principal | None) -> RowScope:
    """Return the part of a table a principal may read and write."""
    return UNSCOPED
