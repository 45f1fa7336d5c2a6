"""The bakery demo: bread types, production, sales, feedback, audit log, notifications."""

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from feed import LiveMixin
from feed.policy import EVERY_ROW, SAME_STORE, Policy
from feed.values import utcnow

from .base import db

SHIFTS = ("morning", "afternoon", "night")

# Admins and managers see and change every store's rows; staff only their own store's;
# viewers read every store and change nothing.
_EVERY_STORE = {"admin": EVERY_ROW, "manager": EVERY_ROW}
_STORE_READERS = {**_EVERY_STORE, "viewer": EVERY_ROW, "staff": SAME_STORE}
_STORE_WRITERS = {**_EVERY_STORE, "staff": SAME_STORE}
STORE_RECORDS = Policy(
    read=_STORE_READERS,
    insert=_STORE_WRITERS,
    update=_STORE_WRITERS,
    delete=_STORE_WRITERS,
    actor_columns=("recorded_by",),
    store_column="store_id",
)
# Notifications are raised by the server; staff may mark their store's as read.
NOTICES = Policy(
    read=_STORE_READERS,
    insert=_EVERY_STORE,
    update=_STORE_WRITERS,
    delete=_EVERY_STORE,
    store_column="store_id",
)
# The audit log is written only by the server, in the transaction of what it records.
AUDIT = Policy(read=_STORE_READERS)


def _store_column() -> Mapped[int | None]:
    """Return the column naming the store a row belongs to (null: the whole bakery's)."""
    return mapped_column(sa.ForeignKey("stores.id"), nullable=True, index=True)


class Store(LiveMixin, db.Model):
    """A shop of the bakery; staff work in one."""

    __tablename__ = "stores"
    name: Mapped[str] = mapped_column(sa.String(80), unique=True)
    city: Mapped[str] = mapped_column(sa.String(80), default="")


class BreadType(LiveMixin, db.Model):
    """A bread the bakery makes."""

    __tablename__ = "bread_types"
    name: Mapped[str] = mapped_column(sa.String(80), unique=True)
    price: Mapped[float] = mapped_column(sa.Numeric(10, 2))
    active: Mapped[bool] = mapped_column(sa.Boolean, default=True)


class ProductionLog(LiveMixin, db.Model):
    """Loaves baked in a shift."""

    __policy__ = STORE_RECORDS

    __tablename__ = "production_logs"
    bread_type_id: Mapped[int] = mapped_column(sa.ForeignKey("bread_types.id"), index=True)
    quantity: Mapped[int] = mapped_column(sa.Integer)
    shift: Mapped[str] = mapped_column(sa.String(20))
    recorded_by: Mapped[str] = mapped_column(sa.String(80))
    created_at: Mapped[dt.datetime] = mapped_column(sa.DateTime, default=utcnow, index=True)
    store_id: Mapped[int | None] = _store_column()


class SalesLog(LiveMixin, db.Model):
    """Loaves sold in a shift."""

    __policy__ = STORE_RECORDS

    __tablename__ = "sales_logs"
    bread_type_id: Mapped[int] = mapped_column(sa.ForeignKey("bread_types.id"), index=True)
    quantity: Mapped[int] = mapped_column(sa.Integer)
    unit_price: Mapped[float] = mapped_column(sa.Numeric(10, 2))
    shift: Mapped[str] = mapped_column(sa.String(20))
    recorded_by: Mapped[str] = mapped_column(sa.String(80))
    created_at: Mapped[dt.datetime] = mapped_column(sa.DateTime, default=utcnow, index=True)
    store_id: Mapped[int | None] = _store_column()


class ShiftFeedback(LiveMixin, db.Model):
    """A note on how a shift went."""

    __policy__ = STORE_RECORDS

    __tablename__ = "shift_feedback"
    shift: Mapped[str] = mapped_column(sa.String(20))
    note: Mapped[str] = mapped_column(sa.String(1000))
    mood: Mapped[int] = mapped_column(sa.Integer)
    recorded_by: Mapped[str] = mapped_column(sa.String(80), default="staff")
    store_id: Mapped[int | None] = _store_column()


class AuditLog(LiveMixin, db.Model):
    """Who changed what."""

    __policy__ = AUDIT

    __tablename__ = "audit_logs"
    actor: Mapped[str] = mapped_column(sa.String(80))
    action: Mapped[str] = mapped_column(sa.String(20))
    target_table: Mapped[str] = mapped_column(sa.String(80))
    target_id: Mapped[int | None] = mapped_column(sa.Integer, nullable=True)
    summary: Mapped[str] = mapped_column(sa.String(500), default="")
    store_id: Mapped[int | None] = _store_column()


class Notification(LiveMixin, db.Model):
    """A message for the dashboard's notification feed."""

    __policy__ = NOTICES

    __tablename__ = "notifications"
    level: Mapped[str] = mapped_column(sa.String(10), default="info")
    title: Mapped[str] = mapped_column(sa.String(200))
    body: Mapped[str] = mapped_column(sa.String(1000), default="")
    read: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    store_id: Mapped[int | None] = _store_column()
