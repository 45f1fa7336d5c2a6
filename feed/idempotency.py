"""Remembered responses to writes that carried an Idempotency-Key."""

import time

import orjson
import sqlalchemy as sa


class IdempotencyStore:
    """The first response to each (key, method, table), kept for a while."""

    def __init__(self, metadata: sa.MetaData):
        self.table = sa.Table(
            "tidings_idempotency",
            metadata,
            sa.Column("key", sa.String(200), primary_key=True),
            sa.Column("scope", sa.String(200), primary_key=True),
            sa.Column("status", sa.Integer, nullable=False),
            sa.Column("body", sa.Text, nullable=False),
            sa.Column("created_at", sa.Float, nullable=False, index=True),
        )

    def recall(
        self, conn: sa.Connection, key: str, scope: str, max_age_seconds: float
    ) -> tuple[int, dict] | None:
        """Return the remembered (status, body) for a key, if it is recent enough."""
        c = self.table.c
        found = conn.execute(
            sa.select(c.status, c.body).where(
                c.key == key, c.scope == scope, c.created_at >= time.time() - max_age_seconds
            )
        ).first()
        return (found.status, orjson.loads(found.body)) if found else None

    def remember(
        self,
        conn: sa.Connection,
        key: str,
        scope: str,
        status: int,
        body: dict,
        max_age_seconds: float,
    ) -> None:
        """Store the response to a key, replacing an expired one.

        Only an expired one: a concurrent request with the same key that committed first
        keeps its row, and this insert fails on the primary key instead of writing twice.
        """
        c = self.table.c
        expired = c.created_at < time.time() - max_age_seconds
        conn.execute(self.table.delete().where(c.key == key, c.scope == scope, expired))
        conn.execute(
            self.table.insert().values(
                key=key,
                scope=scope,
                status=status,
                body=orjson.dumps(body).decode(),
                created_at=time.time(),
            )
        )

    def prune(self, conn: sa.Connection, max_age_seconds: float) -> int:
        """Forget keys older than the window."""
        c = self.table.c
        result = conn.execute(
            self.table.delete().where(c.created_at < time.time() - max_age_seconds)
        )
        return result.rowcount or 0
