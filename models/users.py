"""Who may sign in: users, their API tokens and their server-side sessions (never streamed)."""

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from feed.principal import ROLES
from feed.values import utcnow

from .base import db


class User(db.Model):
    """A person or a script's owner, with one role and maybe one store."""

    __tablename__ = "users"
    __table_args__ = (sa.CheckConstraint(sa.column("role").in_(ROLES), name="user_role"),)
    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    username: Mapped[str] = mapped_column(sa.String(80), unique=True)
    # argon2id, in its self-describing PHC string form.
    password_hash: Mapped[str] = mapped_column(sa.String(200))
    role: Mapped[str] = mapped_column(sa.String(20))
    store_id: Mapped[int | None] = mapped_column(sa.ForeignKey("stores.id"), nullable=True)
    active: Mapped[bool] = mapped_column(sa.Boolean, default=True)
    created_at: Mapped[dt.datetime] = mapped_column(sa.DateTime, default=utcnow)


class ApiToken(db.Model):
    """A bearer credential for scripts and servers, kept only as the SHA-256 of its secret."""

    __tablename__ = "api_tokens"
    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id"), index=True)
    name: Mapped[str] = mapped_column(sa.String(80))
    secret_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(sa.DateTime, default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(sa.DateTime)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(sa.DateTime, nullable=True)


class UserSession(db.Model):
    """A signed-in browser: the cookie names it, and ending it signs that browser out."""

    __tablename__ = "user_sessions"
    id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id"), index=True)
    csrf_token: Mapped[str] = mapped_column(sa.String(64))
    created_at: Mapped[dt.datetime] = mapped_column(sa.DateTime, default=utcnow)
    ended_at: Mapped[dt.datetime | None] = mapped_column(sa.DateTime, nullable=True)
