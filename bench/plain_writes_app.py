"""The write peer: a plain Flask + Flask-SQLAlchemy endpoint storing what Tidings stores per
POST /api/shift_feedback (the row and the demo's audit row), without the feed.

Same columns as models.bakery (version and updated_at included), the same SQLite pragmas
(WAL, synchronous=NORMAL, foreign keys) and pysqlite's own busy wait; run by gunicorn + gevent
from bench/ (`python -m bench writes`). Needs PLAIN_DATABASE_URL.
"""

import datetime as dt
import os

import sqlalchemy as sa
from flask import Flask, request
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import event
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    """Declarative base of the peer's models."""


db = SQLAlchemy(model_class=Base)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


class Store(db.Model):
    """The table shift_feedback's store_id names."""

    __tablename__ = "stores"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(80), unique=True)


class ShiftFeedback(db.Model):
    """models.bakery.ShiftFeedback's columns."""

    __tablename__ = "shift_feedback"
    id: Mapped[int] = mapped_column(primary_key=True)
    version: Mapped[int] = mapped_column(default=1)
    updated_at: Mapped[dt.datetime] = mapped_column(default=_now)
    shift: Mapped[str] = mapped_column(sa.String(20))
    note: Mapped[str] = mapped_column(sa.String(1000))
    mood: Mapped[int] = mapped_column()
    recorded_by: Mapped[str] = mapped_column(sa.String(80), default="staff")
    store_id: Mapped[int | None] = mapped_column(sa.ForeignKey("stores.id"), index=True)


class AuditLog(db.Model):
    """models.bakery.AuditLog's columns: the row the demo adds to every feedback write."""

    __tablename__ = "audit_logs"
    id: Mapped[int] = mapped_column(primary_key=True)
    version: Mapped[int] = mapped_column(default=1)
    updated_at: Mapped[dt.datetime] = mapped_column(default=_now)
    actor: Mapped[str] = mapped_column(sa.String(80))
    action: Mapped[str] = mapped_column(sa.String(20))
    target_table: Mapped[str] = mapped_column(sa.String(80))
    target_id: Mapped[int | None] = mapped_column()
    summary: Mapped[str] = mapped_column(sa.String(500), default="")
    store_id: Mapped[int | None] = mapped_column(sa.ForeignKey("stores.id"), index=True)


app = Flask(__name__)
app.config["SQLALCHEMY_DATABASE_URI"] = os.environ["PLAIN_DATABASE_URL"]
db.init_app(app)

with app.app_context():
    if db.engine.dialect.name == "sqlite":

        @event.listens_for(db.engine, "connect")
        def _pragmas(dbapi_connection, _record):
            cursor = dbapi_connection.cursor()
            for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "foreign_keys=ON"):
                cursor.execute(f"PRAGMA {pragma}")
            cursor.close()

    db.create_all()


@app.get("/healthz")
def healthz():
    """Answer that the app is up."""
    return {"ok": True}


@app.post("/api/shift_feedback")
def create():
    """Insert the body's feedback row and its audit row in one transaction; answer the row."""
    body = request.get_json()
    row = ShiftFeedback(
        shift=body["shift"], note=body["note"], mood=body["mood"], store_id=body.get("store_id")
    )
    db.session.add(row)
    db.session.flush()
    db.session.add(
        AuditLog(
            actor="admin",
            action="insert",
            target_table="shift_feedback",
            target_id=row.id,
            summary=f"insert feedback for the {row.shift} shift (mood {row.mood})",
        )
    )
    db.session.commit()
    columns = ("id", "version", "shift", "note", "mood", "recorded_by", "store_id")
    answer = {name: getattr(row, name) for name in columns}
    answer["updated_at"] = row.updated_at.isoformat()
    return {"row": answer}, 201
