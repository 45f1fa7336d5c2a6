"""The bakery demo's tables, as they were before identity.

Bread types, production, sales, feedback, audit log and notifications; the feed's
tidings_* tables are not here: the engine creates its own at start.

Revision ID: 0001_bakery
Revises:
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0001_bakery"
down_revision = None
branch_labels = None
depends_on = None


def _live_table(name: str, *columns: sa.Column | sa.Constraint) -> None:
    """Create a live table: its own columns, the feed's id, version and updated_at."""
    op.create_table(
        name,
        *columns,
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        # SQLite would otherwise hand a deleted newest row's id out again.
        sqlite_autoincrement=True,
    )


def _shift_record(name: str, *columns: sa.Column) -> None:
    """Create a table of loaves counted in a shift, indexed by bread and time."""
    _live_table(
        name,
        sa.Column("bread_type_id", sa.Integer(), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        *columns,
        sa.Column("shift", sa.String(length=20), nullable=False),
        sa.Column("recorded_by", sa.String(length=80), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["bread_type_id"], ["bread_types.id"]),
    )
    op.create_index(f"ix_{name}_bread_type_id", name, ["bread_type_id"])
    op.create_index(f"ix_{name}_created_at", name, ["created_at"])


def upgrade() -> None:
    _live_table(
        "bread_types",
        sa.Column("name", sa.String(length=80), nullable=False),
        sa.Column("price", sa.Numeric(precision=10, scale=2), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.UniqueConstraint("name"),
    )
    _shift_record("production_logs")
    _shift_record(
        "sales_logs", sa.Column("unit_price", sa.Numeric(precision=10, scale=2), nullable=False)
    )
    _live_table(
        "shift_feedback",
        sa.Column("shift", sa.String(length=20), nullable=False),
        sa.Column("note", sa.String(length=1000), nullable=False),
        sa.Column("mood", sa.Integer(), nullable=False),
        sa.Column("recorded_by", sa.String(length=80), nullable=False),
    )
    _live_table(
        "audit_logs",
        sa.Column("actor", sa.String(length=80), nullable=False),
        sa.Column("action", sa.String(length=20), nullable=False),
        sa.Column("target_table", sa.String(length=80), nullable=False),
        sa.Column("target_id", sa.Integer(), nullable=True),
        sa.Column("summary", sa.String(length=500), nullable=False),
    )
    _live_table(
        "notifications",
        sa.Column("level", sa.String(length=10), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("body", sa.String(length=1000), nullable=False),
        sa.Column("read", sa.Boolean(), nullable=False),
    )


def downgrade() -> None:
    for name in (
        "notifications",
        "audit_logs",
        "shift_feedback",
        "sales_logs",
        "production_logs",
        "bread_types",
    ):
        op.drop_table(name)
