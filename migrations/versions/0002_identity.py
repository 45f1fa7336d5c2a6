"""Identity: stores, users, their API tokens and sessions.

Each bakery table gains the store its rows belong to.
Rows from before keep a null store_id: they are the whole bakery's.

Revision ID: 0002_identity
Revises: 0001_bakery
Create Date: 2026-12-01
"""

from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa
from alembic import op

revision = "0002_identity"
down_revision = "0001_bakery"
branch_labels = None
depends_on = None

STORE_TABLES = ("production_logs", "sales_logs", "shift_feedback", "audit_logs", "notifications")


@contextmanager
def _rebuilt(name: str) -> Iterator:
    """Alter a live table in batch mode (SQLite rebuilds it), keeping AUTOINCREMENT and the
    highest id it ever handed out, which a rebuild would otherwise forget."""
    bind = op.get_bind()
    sqlite = bind.dialect.name == "sqlite"
    seq = 0
    if sqlite:
        query = sa.text("SELECT seq FROM sqlite_sequence WHERE name = :name")
        seq = bind.execute(query, {"name": name}).scalar() or 0
    with op.batch_alter_table(name, table_kwargs={"sqlite_autoincrement": True}) as batch:
        yield batch
    if sqlite:
        bind.execute(sa.text("DELETE FROM sqlite_sequence WHERE name = :name"), {"name": name})
        bind.execute(
            sa.text(
                "INSERT INTO sqlite_sequence (name, seq)"
                f' SELECT :name, max(:seq, coalesce(max(id), 0)) FROM "{name}"'
            ),
            {"name": name, "seq": seq},
        )


def upgrade() -> None:
    op.create_table(
        "stores",
        sa.Column("name", sa.String(length=80), nullable=False),
        sa.Column("city", sa.String(length=80), nullable=False),
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
        sqlite_autoincrement=True,
    )
    for name in STORE_TABLES:
        with _rebuilt(name) as batch:
            batch.add_column(sa.Column("store_id", sa.Integer(), nullable=True))
            # PostgreSQL's own name for it, as `create_all` gets.
            batch.create_foreign_key(f"{name}_store_id_fkey", "stores", ["store_id"], ["id"])
            batch.create_index(f"ix_{name}_store_id", ["store_id"])
    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("username", sa.String(length=80), nullable=False),
        sa.Column("password_hash", sa.String(length=200), nullable=False),
        sa.Column("role", sa.String(length=20), nullable=False),
        sa.Column("store_id", sa.Integer(), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.CheckConstraint("role IN ('admin', 'manager', 'staff', 'viewer')", name="user_role"),
        sa.ForeignKeyConstraint(["store_id"], ["stores.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("username"),
    )
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=80), nullable=False),
        sa.Column("secret_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.Column("revoked_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("secret_hash"),
    )
    op.create_index("ix_api_tokens_user_id", "api_tokens", ["user_id"])
    op.create_table(
        "user_sessions",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("csrf_token", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("ended_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_user_sessions_user_id", "user_sessions", ["user_id"])


def downgrade() -> None:
    for name in ("user_sessions", "api_tokens", "users"):
        op.drop_table(name)
    for name in STORE_TABLES:
        with _rebuilt(name) as batch:
            batch.drop_index(f"ix_{name}_store_id")
            batch.drop_column("store_id")
    op.drop_table("stores")
