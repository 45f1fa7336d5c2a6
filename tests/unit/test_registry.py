"""The table registry notices live models defined after it was built, and only live ones."""

import sqlalchemy as sa
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from feed import LiveMixin
from feed.policy import TOPIC_POLICIES
from feed.registry import Registry


class Base(DeclarativeBase):
    """A declarative base of this test's own: its models stay out of the app's."""


def test_a_live_model_defined_later_is_found_and_a_plain_one_is_not():
    db = SQLAlchemy(model_class=Base)

    class Early(LiveMixin, db.Model):
        __tablename__ = "early_notes"
        text: Mapped[str] = mapped_column(sa.String(20))

    registry = Registry(db, (), TOPIC_POLICIES, {"TOPICS": []})
    assert list(registry.tables) == ["early_notes"]

    class Late(LiveMixin, db.Model):
        __tablename__ = "late_notes"
        text: Mapped[str] = mapped_column(sa.String(20))

    class Plain(db.Model):
        __tablename__ = "plain_notes"
        id: Mapped[int] = mapped_column(primary_key=True)

    assert sorted(registry.tables) == ["early_notes", "late_notes"]
    assert registry.table("late_notes").model is Late
