"""API tokens: a random secret shown once, stored as its SHA-256, expiring and revocable."""

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.orm import Session

from feed.values import iso, utcnow
from models import ApiToken, User

from .secret import digest, new_secret

# Marks a Tidings API token in a header or a leaked file, so it is easy to spot and rotate.
PREFIX = "tdg_"


def issue(session: Session, user_id: int, name: str, seconds: float) -> tuple[ApiToken, str]:
    """Create a token for a user in the session's transaction; return it and its secret."""
    secret = PREFIX + new_secret()
    now = utcnow()
    token = ApiToken(
        user_id=user_id,
        name=name,
        secret_hash=digest(secret),
        created_at=now,
        expires_at=now + dt.timedelta(seconds=seconds),
    )
    session.add(token)
    session.flush()
    return token, secret


def _active(conn: sa.Connection, which: sa.ColumnElement[bool]) -> sa.Row | None:
    """Return the live token that `which` picks, with its active user's columns, or None."""
    query = (
        sa.select(ApiToken.id.label("token_id"), ApiToken.expires_at, User.__table__)
        .join(User, User.id == ApiToken.user_id)
        .where(
            which,
            ApiToken.revoked_at.is_(None),
            ApiToken.expires_at > utcnow(),
            User.active.is_(True),
        )
    )
    return conn.execute(query).first()


def active_by_digest(conn: sa.Connection, secret_hash: str) -> sa.Row | None:
    """Return the live token whose secret has this digest, and its user, or None."""
    return _active(conn, ApiToken.secret_hash == secret_hash)


def active_by_id(conn: sa.Connection, token_id: int) -> sa.Row | None:
    """Return the live token with this id and its user, or None."""
    return _active(conn, ApiToken.id == token_id)


def listed(conn: sa.Connection, user_id: int) -> list[dict]:
    """Return a user's tokens, newest first, without their secrets."""
    query = (
        sa.select(ApiToken.__table__)
        .where(ApiToken.user_id == user_id)
        .order_by(ApiToken.id.desc())
    )
    return [describe(token) for token in conn.execute(query)]


def describe(token: ApiToken | sa.Row) -> dict:
    """Return a token's public fields."""
    return {
        "id": token.id,
        "name": token.name,
        "created_at": iso(token.created_at),
        "expires_at": iso(token.expires_at),
        "revoked_at": iso(token.revoked_at) if token.revoked_at else None,
    }


def revoke(session: Session, user_id: int, token_id: int) -> ApiToken | None:
    """Revoke one of a user's live tokens; return it, or None when the user has no such token."""
    token = session.get(ApiToken, token_id, with_for_update=True)
    if token is None or token.user_id != user_id or token.revoked_at is not None:
        return None
    token.revoked_at = utcnow()
    return token
