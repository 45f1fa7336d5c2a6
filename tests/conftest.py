"""Fixtures: a real embedded Redis, real SQLite files, and real gunicorn servers."""

import pytest

from app import create_app
from feed.embedded import EmbeddedRedis
from models import db

from . import postgres
from .identities import Identity, bearer_client, make_user, seed_stores
from .servers import GENEROUS_LIMITS, TidingsServer, free_port


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    """A private valkey-server for the whole session, on a loopback TCP port."""
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis"), port=free_port())
    server.start()
    yield server
    server.stop()


@pytest.fixture
def fresh_redis(tmp_path):
    """A valkey-server of this test's own, free to be killed and restarted."""
    server = EmbeddedRedis(tmp_path / "redis", port=free_port())
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def postgres_server():
    """A private PostgreSQL server for the session (`make test` installs it when missing)."""
    if not postgres.available():
        pytest.fail("PostgreSQL server binaries (initdb, pg_ctl) are not on PATH")
    server = postgres.PostgresServer(free_port()).start()
    yield server
    server.stop()


@pytest.fixture
def postgres_url(postgres_server, tmp_path):
    """A fresh PostgreSQL database for one test."""
    return postgres_server.create_database(f"t_{tmp_path.name.lower()}")


@pytest.fixture
def database_url(tmp_path):
    """A fresh SQLite database file."""
    return f"sqlite:///{tmp_path / 'tidings.db'}"


@pytest.fixture
def bare_app(database_url, redis_server, tmp_path):
    """An app on a fresh database that holds only the tables the feed makes itself."""
    app = create_app(
        {
            "TESTING": True,
            "SQLALCHEMY_DATABASE_URI": database_url,
            "REDIS_URL": redis_server.url,
            "FEED_CHANNEL": f"tidings:test:{tmp_path.name}",
            **GENEROUS_LIMITS,
        }
    )
    yield app
    app.extensions["tidings"].close()
    app.extensions["tidings_limits"].close()


@pytest.fixture
def app(bare_app):
    """An app on a fresh database, with its tables created and the two stores."""
    with bare_app.app_context():
        db.create_all()
    seed_stores(bare_app)
    return bare_app


@pytest.fixture
def admin(app) -> Identity:
    """The admin every `client` and server session acts as."""
    return make_user(app, "admin", name="admin")


@pytest.fixture
def make_client(app):
    """Return a test client acting as a new user of a role (and store); no role: nobody."""

    def make(role: str | None = None, store_id: int | None = None):
        return bearer_client(app, make_user(app, role, store_id) if role else None)

    return make


@pytest.fixture
def client(app, admin):
    """A Flask test client that sends the admin's token (no streaming: use `start_server`)."""
    return bearer_client(app, admin)


@pytest.fixture
def start_server(database_url, redis_server, app, admin):
    """Start gunicorn servers on the test's database, whose `http` session acts as the
    admin; all are stopped at the end."""
    started: list[TidingsServer] = []

    def start(workers: int = 1, redis_url: str | None = None, **env: str) -> TidingsServer:
        server = TidingsServer(
            database_url, redis_url or redis_server.url, workers=workers, token=admin.token, **env
        )
        started.append(server)
        return server.start()

    yield start
    for server in started:
        server.stop()
