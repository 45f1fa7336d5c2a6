"""The feed's own tables: the engine creates them at start, and app migrations leave them be.

They belong to the engine, not to the app: an app without Alembic gets them all the same,
and a later engine version changes them itself (as `ids` does), not through the app's
migration history.
"""

import logging
from collections.abc import Callable, Iterable

import sqlalchemy as sa

logger = logging.getLogger("tidings")

# Held while tables are created, so nodes starting together on PostgreSQL create them once.
_PG_SCHEMA_LOCK = 0x7469_6469_6E68


def ensure(engine: sa.Engine, tables: Iterable[sa.Table]) -> None:
    """Create whichever of the tables are missing (none while the database is unreachable)."""
    tables = list(tables)
    try:
        with engine.connect() as conn:
            # BEGIN IMMEDIATE on SQLite: two processes starting at once create them once.
            conn = conn.execution_options(tidings_write=True)
            with conn.begin():
                if conn.dialect.name == "postgresql":
                    conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_PG_SCHEMA_LOCK)))
                tables[0].metadata.create_all(conn, tables=tables, checkfirst=True)
    except sa.exc.OperationalError as exc:
        # The app starts without its database (and answers 503); the next start creates them.
        logger.warning("feed tables not checked, the database is unreachable: %s", exc.orig)


def excluder(tables: Iterable[sa.Table]) -> Callable[..., bool]:
    """Return an Alembic `include_object` hook that leaves these tables out of migrations."""
    names = frozenset(table.name for table in tables)

    def include_object(_obj, name, type_, _reflected, _compare_to) -> bool:
        # Alembic looks at no column, index or constraint of a table left out.
        return not (type_ == "table" and name in names)

    return include_object
