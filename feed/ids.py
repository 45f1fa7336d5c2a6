"""Row ids that are never handed out twice: existing SQLite live tables gain AUTOINCREMENT."""

import logging
from collections.abc import Iterable

import sqlalchemy as sa
from sqlalchemy.schema import CreateTable

from .live import LiveTable

logger = logging.getLogger("tidings")

_EVENTS = "tidings_events"


def migrate(engine: sa.Engine, tables: Iterable[LiveTable]) -> list[str]:
    """Rebuild every SQLite live table created without AUTOINCREMENT; return their names."""
    if engine.dialect.name != "sqlite":
        return []
    tables = list(tables)
    try:
        conn = engine.connect()
    except sa.exc.DBAPIError as exc:
        # The app starts without its database (and answers 503); the next start migrates.
        logger.warning("ids not checked, the database is unreachable: %s", exc.orig)
        return []
    with conn:
        sqlite = conn.connection.driver_connection
        if not any(_lacks_autoincrement(sqlite, t.name) for t in tables):
            return []
        # Foreign keys cannot be switched off inside a transaction; dropping a parent
        # table with them on would delete (or refuse) its children's rows.
        sqlite.execute("PRAGMA foreign_keys=OFF")
        try:
            return [t.name for t in tables if _rebuild(sqlite, t, engine.dialect)]
        finally:
            sqlite.execute("PRAGMA foreign_keys=ON")


def _lacks_autoincrement(sqlite, name: str) -> bool:
    row = sqlite.execute(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)
    ).fetchone()
    return row is not None and "AUTOINCREMENT" not in row[0].upper()


def _rebuild(sqlite, table: LiveTable, dialect: sa.Dialect) -> bool:
    """Create the table anew, copy its rows, swap it in and set its sequence, at once."""
    name = table.name
    sqlite.execute("BEGIN IMMEDIATE")
    try:
        if not _lacks_autoincrement(sqlite, name):
            sqlite.execute("ROLLBACK")
            return False
        present = [row[1] for row in sqlite.execute(f'PRAGMA table_info("{name}")')]
        unknown = set(present) - set(table.columns)
        if unknown:
            raise RuntimeError(
                f"table {name} has columns its model lacks ({sorted(unknown)}): not rebuilt"
            )
        extras = [
            row[0]
            for row in sqlite.execute(
                "SELECT sql FROM sqlite_master WHERE tbl_name = ? AND type IN ('index', 'trigger')"
                " AND sql IS NOT NULL",
                (name,),
            )
        ]
        scratch = f"{name}__autoincrement"
        copy = _scratch_copy(table.model.__table__, scratch)
        sqlite.execute(str(CreateTable(copy).compile(dialect=dialect)))
        columns = ", ".join(f'"{column}"' for column in present)
        sqlite.execute(f'INSERT INTO "{scratch}" ({columns}) SELECT {columns} FROM "{name}"')
        sqlite.execute(f'DROP TABLE "{name}"')
        sqlite.execute(f'ALTER TABLE "{scratch}" RENAME TO "{name}"')
        for sql in extras:
            sqlite.execute(sql)
        highest = _highest_id(sqlite, name)
        sqlite.execute("DELETE FROM sqlite_sequence WHERE name = ?", (name,))
        sqlite.execute("INSERT INTO sqlite_sequence (name, seq) VALUES (?, ?)", (name, highest))
        broken = sqlite.execute(f'PRAGMA foreign_key_check("{name}")').fetchall()
        if broken:
            raise RuntimeError(f"table {name} has rows with broken foreign keys: not rebuilt")
        sqlite.execute("COMMIT")
    except BaseException:
        sqlite.execute("ROLLBACK")
        raise
    logger.info("rebuilt %s with AUTOINCREMENT; its next id is above %d", name, highest)
    return True


def _scratch_copy(table: sa.Table, name: str) -> sa.Table:
    """Copy a table under another name, with the tables its foreign keys name beside it."""
    metadata = sa.MetaData()
    for other in table.metadata.tables.values():
        if other is not table:
            other.to_metadata(metadata)
    return table.to_metadata(metadata, name=name)


def _highest_id(sqlite, name: str) -> int:
    """Return the highest id the table ever used: its rows', or one the log names."""
    highest = sqlite.execute(f'SELECT coalesce(max(id), 0) FROM "{name}"').fetchone()[0]
    has_log = sqlite.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (_EVENTS,)
    ).fetchone()
    if has_log:
        logged = sqlite.execute(
            f"SELECT max(CAST(json_extract(payload, '$.pk') AS INTEGER)) FROM {_EVENTS}"
            " WHERE topic = ?",
            (name,),
        ).fetchone()[0]
        highest = max(highest, logged or 0)
    return highest
