"""Server-side sessions: a random id in a signed cookie, ended for everyone at logout."""

import datetime as dt

import sqlalchemy as sa
from flask.sessions import SessionInterface
from itsdangerous import BadSignature, Signer
from sqlalchemy.orm import Session

from feed.values import utcnow
from models import User, UserSession

from .secret import new_secret

COOKIE = "tidings_session"
_SALT = "tidings.session-cookie"


class NoFlaskSession(SessionInterface):
    """Flask's own cookie session, never opened: sessions here live in the database. Opened,
    it built a signing serializer on every request for nothing; and any use of
    `flask.session` now fails instead of setting a second cookie."""

    def open_session(self, app, request) -> None:
        """Open nothing: Flask hands the request its read-only null session."""
        return None

    def save_session(self, app, session, response) -> None:
        """Save nothing."""


def start(session: Session, user_id: int) -> UserSession:
    """Open a session for a user in the session's transaction."""
    opened = UserSession(
        id=new_secret(), user_id=user_id, csrf_token=new_secret(), created_at=utcnow()
    )
    session.add(opened)
    session.flush()
    return opened


def cookie_value(secret_key: str, session_id: str) -> str:
    """Return the cookie that names a session, signed so it cannot be made up."""
    return Signer(secret_key, salt=_SALT).sign(session_id).decode()


def session_id(secret_key: str, cookie: str) -> str | None:
    """Return the session id a cookie names, or None when its signature is wrong."""
    try:
        return Signer(secret_key, salt=_SALT).unsign(cookie).decode()
    except BadSignature:
        return None


def _oldest_live(hours: float) -> dt.datetime:
    return utcnow() - dt.timedelta(hours=hours)


def find_active(conn: sa.Connection, sid: str, hours: float) -> sa.Row | None:
    """Return the open session with this id, with its active user's columns, or None."""
    query = (
        sa.select(
            UserSession.id.label("session_id"),
            UserSession.csrf_token,
            UserSession.created_at.label("opened_at"),
            User.__table__,
        )
        .join(User, User.id == UserSession.user_id)
        .where(
            UserSession.id == sid,
            UserSession.ended_at.is_(None),
            UserSession.created_at > _oldest_live(hours),
            User.active.is_(True),
        )
    )
    return conn.execute(query).first()


def end(session: Session, sid: str) -> bool:
    """End an open session; tell whether it was open."""
    found = session.get(UserSession, sid, with_for_update=True)
    if found is None or found.ended_at is not None:
        return False
    found.ended_at = utcnow()
    return True
