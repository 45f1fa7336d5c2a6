"""A test-only live model with one column of every protocol type, on its own metadata."""

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from feed.live import LiveMixin, live_table


class Base(DeclarativeBase):
    """Declarative base of the test-only model: nothing of the bakery shares it."""


class Gadget(LiveMixin, Base):
    """A row to capture and filter."""

    __tablename__ = "gadgets"
    name: Mapped[str] = mapped_column(sa.String(40))
    size: Mapped[int | None] = mapped_column(sa.Integer, nullable=True)
    weight: Mapped[float | None] = mapped_column(sa.Float, nullable=True)
    active: Mapped[bool] = mapped_column(sa.Boolean, default=True)
    made_on: Mapped[dt.date | None] = mapped_column(sa.Date, nullable=True)
    seen_at: Mapped[dt.datetime | None] = mapped_column(sa.DateTime, nullable=True)
    specs: Mapped[dict | None] = mapped_column(sa.JSON, nullable=True)


GADGETS = live_table(Gadget)
