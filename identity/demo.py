"""The demo's users: one of each role, a password everyone shares, and how to find it."""

import os
import secrets
from collections.abc import Callable

import sqlalchemy as sa
from sqlalchemy.orm import Session

from models import User

from . import accounts
from .instance_files import write_private

# (username, role, index of the store in the seeded stores, or None for every store)
DEMO_USERS = (
    ("admin", "admin", None),
    ("manager", "manager", None),
    ("staff1", "staff", 0),
    ("staff2", "staff", 1),
    ("viewer", "viewer", None),
)
PASSWORD_FILE = "demo-users.txt"


def _file_text(password: str) -> str:
    names = ", ".join(name for name, _, _ in DEMO_USERS)
    return f"Tidings demo users: {names}\npassword: {password}\n"


def seed_users(
    session: Session, stores: Callable[[], list[int]], password: str | None, instance_path: str
):
    """Add the demo users unless any user exists; return what to tell whoever starts the demo.

    `stores` returns the ids of the stores staff work in; it is called only to add users."""
    path = os.path.join(instance_path, PASSWORD_FILE)
    if session.scalars(sa.select(User.id).limit(1)).first() is not None:
        if password:
            return "demo users: sign in with the password in DEMO_PASSWORD"
        if os.path.exists(path):
            return f"demo users: their password is in {path}"
        return "users exist already; add more with `flask users create`"
    generated = password is None
    password = password or secrets.token_urlsafe(12)
    store_ids = stores()
    for name, role, store in DEMO_USERS:
        store_id = store_ids[store] if store is not None and store < len(store_ids) else None
        accounts.create(session, name, password, role, store_id)
    names = ", ".join(name for name, _, _ in DEMO_USERS)
    if not generated:
        return f"demo users {names}: sign in with the password in DEMO_PASSWORD"
    if os.path.exists(path):
        os.unlink(path)
    write_private(path, _file_text(password))
    return f"demo users {names}: password {password} (kept in {path})"
