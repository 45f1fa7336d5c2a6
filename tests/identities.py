"""Users for tests: the two demo stores, an admin with an API token, and users of any role."""

import datetime as dt
import functools
import itertools
from dataclasses import dataclass

from flask import Flask

from feed import runtime
from identity import tokens
from identity.passwords import hash_password
from models import Store, User

PASSWORD = "correct horse battery staple"
STORES = (("North", "Leeds"), ("South", "Brighton"))
_names = itertools.count(1)


@functools.cache
def password_hash() -> str:
    """Hash the tests' password once: argon2 is slow on purpose."""
    return hash_password(PASSWORD)


@dataclass(frozen=True)
class Identity:
    """A user made for a test, with an API token."""

    user_id: int
    username: str
    role: str
    store_id: int | None
    token: str

    @property
    def headers(self) -> dict:
        """Return the Authorization header of this user's token."""
        return {"Authorization": f"Bearer {self.token}"}


def seed_stores(app: Flask) -> list[int]:
    """Add the two stores; return their ids."""
    with app.app_context(), runtime().write() as session:
        stores = [Store(name=name, city=city) for name, city in STORES]
        session.add_all(stores)
        session.flush()
        return [store.id for store in stores]


def make_user(app: Flask, role: str, store_id: int | None = None, name: str = "") -> Identity:
    """Add a user of a role (and store) with the tests' password and an API token."""
    username = name or f"{role}-{next(_names)}"
    with app.app_context(), runtime().write() as session:
        # Not accounts.create: hashing once per user would slow every test down.
        user = User(username=username, password_hash=password_hash(), role=role, store_id=store_id)
        session.add(user)
        session.flush()
        _, secret = tokens.issue(session, user.id, "tests", 86400)
        return Identity(user.id, username, role, store_id, secret)


def bearer_client(app: Flask, identity: Identity | None):
    """Return a test client sending an identity's token on every request (None: nobody)."""
    client = app.test_client()
    if identity is not None:
        client.environ_base["HTTP_AUTHORIZATION"] = identity.headers["Authorization"]
    return client


def provision_admin(database_url: str, redis_url: str) -> str:
    """Create the tables, the stores and an admin on a database; return the admin's token."""
    from app import create_app
    from models import db

    app = create_app({"SQLALCHEMY_DATABASE_URI": database_url, "REDIS_URL": redis_url})
    try:
        with app.app_context():
            db.create_all()
        seed_stores(app)
        return make_user(app, "admin", name="admin").token
    finally:
        app.extensions["tidings"].close()


def sign_in_browser(context, url: str, username: str = "admin") -> dict:
    """Sign a Playwright browser profile in with the session cookie of a real login (its
    pages' writes carry the CSRF token of the page themselves). Return the login's body."""
    import requests

    from identity.sessions import COOKIE

    response = requests.post(
        f"{url}/api/auth/login", json={"username": username, "password": PASSWORD}, timeout=10
    )
    assert response.status_code == 200, response.text
    context.add_cookies([{"name": COOKIE, "value": response.cookies[COOKIE], "url": url}])
    return response.json()


def sign_in_context(context, app: Flask, identity: Identity) -> None:
    """Sign a Playwright browser profile in as an identity for every local server of the
    test's database: a session opened in the database and its cookie for 127.0.0.1 (any
    port)."""
    from identity import sessions

    with app.app_context(), runtime().write() as session:
        opened = sessions.start(session, identity.user_id)
        sid = opened.id
    cookie = sessions.cookie_value(app.config["SECRET_KEY"], sid)
    context.add_cookies([{"name": sessions.COOKIE, "value": cookie, "url": "http://127.0.0.1"}])


def recreate_database(app: Flask, *keep: Identity) -> None:
    """Drop and create every table, as a database made anew; the stores and the given
    users (with their tokens) come back as they were, so the same clients still work."""
    from feed.values import utcnow
    from identity.secret import digest
    from models import ApiToken, db

    with app.app_context():
        db.drop_all()
        db.create_all()
    seed_stores(app)
    with app.app_context(), runtime().write() as session:
        for identity in keep:
            user = User(
                id=identity.user_id,
                username=identity.username,
                password_hash=password_hash(),
                role=identity.role,
                store_id=identity.store_id,
            )
            session.add(user)
            session.flush()
            now = utcnow()
            session.add(
                ApiToken(
                    user_id=user.id,
                    name="tests",
                    secret_hash=digest(identity.token),
                    created_at=now,
                    expires_at=now + dt.timedelta(days=1),
                )
            )
