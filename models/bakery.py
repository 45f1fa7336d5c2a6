"""The bakery demo: bread types, production, sales, feedback, audit log, notifications."""

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from feed import LiveMixin
from feed.live import utcnow

from .base import db

SHIFTS = ("morning", "afternoon", "night")


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

    __tablename__ = "production_logs"
    bread_type_id: Mapped[int] = mapped_column(sa.ForeignKey("bread_types.id"), index=True)
    quantity: Mapped[int] = mapped_column(sa.Integer)
    shift: Mapped[str] = mapped_column(sa.String(20))
    recorded_by: Mapped[str] = mapped_column(sa.String(80))
    created_at: Mapped[dt.datetime] = mapped_column(sa.DateTime, default=utcnow, index=True)
    store_id: Mapped[int | None] = _store_column()


class SalesLog(LiveMixin, db.Model):
    """Loaves sold in a shift."""

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

    __tablename__ = "shift_feedback"
    shift: Mapped[str] = mapped_column(sa.String(20))
    note: Mapped[str] = mapped_column(sa.String(1000))
    mood: Mapped[int] = mapped_column(sa.Integer)
    recorded_by: Mapped[str] = mapped_column(sa.String(80), default="staff")
    store_id: Mapped[int | None] = _store_column()


class AuditLog(LiveMixin, db.Model):
    """Who changed what."""

    __tablename__ = "audit_logs"
    actor: Mapped[str] = mapped_column(sa.String(80))
    action: Mapped[str] = mapped_column(sa.String(20))
    target_table: Mapped[str] = mapped_column(sa.String(80))
    target_id: Mapped[int | None] = mapped_column(sa.Integer, nullable=True)
    summary: Mapped[str] = mapped_column(sa.String(500), default="")
    store_id: Mapped[int | None] = _store_column()


class Notification(LiveMixin, db.Model):
    """A message for the dashboard's notification feed."""

    __tablename__ = "notifications"
    level: Mapped[str] = mapped_column(sa.String(10), default="info")
    title: Mapped[str] = mapped_column(sa.String(200))
    body: Mapped[str] = mapped_column(sa.String(1000), default="")
    read: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    store_id: Mapped[int | None] = _store_column()
