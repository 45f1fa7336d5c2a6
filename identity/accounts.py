"""Users: create them, change their password, find them, and describe them to clients."""

import sqlalchemy as sa
from sqlalchemy.orm import Session

from feed.principal import ROLES
from models import Store, User

from .passwords import hash_password


class AccountError(ValueError):
    """A user that cannot be made as asked (unknown role or store, name taken)."""


def create(
    session: Session, username: str, password: str, role: str, store_id: int | None = None
) -> User:
    """Add a user in the session's transaction."""
    if role not in ROLES:
        raise AccountError(f"role must be one of {', '.join(ROLES)}")
    if not 0 < len(username) <= 80:
        raise AccountError("a username is 1 to 80 characters")
    _check_password(password)
    if store_id is not None and session.get(Store, store_id) is None:
        raise AccountError(f"there is no store {store_id}")
    if named(session, username) is not None:
        raise AccountError(f"a user named {username!r} exists")
    user = User(
        username=username,
        password_hash=hash_password(password),
        role=role,
        store_id=store_id,
        active=True,
    )
    session.add(user)
    session.flush()
    return user


def _check_password(password: str) -> None:
    if not password:
        raise AccountError("the password is empty")


def named(session: Session, username: str) -> User | None:
    """Return the user with this name, or None."""
    return session.scalars(sa.select(User).where(User.username == username)).first()


def set_password(session: Session, username: str, password: str) -> bool:
    """Change a user's password; tell whether the user exists."""
    user = named(session, username)
    if user is None:
        return False
    _check_password(password)
    user.password_hash = hash_password(password)
    return True


def describe(user) -> dict:
    """Return the user as the API shows it."""
    return {"id": user.id, "username": user.username, "role": user.role, "store_id": user.store_id}
