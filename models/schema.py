"""The app's migration history as seen from a database: taking in one made before it."""

import logging

import sqlalchemy as sa
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

logger = logging.getLogger("tidings")

BAKERY = "0001_bakery"
IDENTITY = "0002_identity"
HEAD = IDENTITY
# Before migrations, `create_all` made the tables: the newest table present tells which
# revision such a database is at. Frozen: later revisions only ever meet versioned databases.
_UNVERSIONED = (("users", IDENTITY), ("bread_types", BAKERY))
# Held by `flask db upgrade` on PostgreSQL, so nodes upgrading at once migrate once.
PG_MIGRATION_LOCK = 0x7469_6469_6E69


def unversioned_revision(conn: sa.Connection) -> str | None:
    """Return the revision a database made by `create_all` is at; None if it is versioned
    or has none of the app's tables."""
    tables = set(sa.inspect(conn).get_table_names())
    if "alembic_version" in tables:
        return None
    return next((revision for table, revision in _UNVERSIONED if table in tables), None)


def prepare(context: MigrationContext, script: ScriptDirectory) -> None:
    """Wait for other nodes' upgrades, then stamp a database made before migrations."""
    conn = context.connection
    if conn.dialect.name == "postgresql":
        conn.execute(sa.select(sa.func.pg_advisory_xact_lock(PG_MIGRATION_LOCK)))
    revision = unversioned_revision(conn)
    if revision is not None:
        logger.info("database made before migrations: stamped at %s", revision)
        context.stamp(script, revision)
        if not context.impl.transactional_ddl:
            # SQLite: no migration may follow to commit the stamp with it.
            conn.commit()
