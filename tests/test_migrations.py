"""Schema migrations on SQLite and PostgreSQL: base to head matches the models, revision 1's
data survives the upgrade to head (and a downgrade back), `make run` joins an existing
database unchanged, and nodes upgrading one PostgreSQL at once migrate it once."""

import os
import shlex
import subprocess
import time
from pathlib import Path

import flask_migrate
import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from feed import ids, runtime
from models import db, feed, schema
from models.seed import seed, seed_demo_users

from .api_helpers import bread, sale
from .identities import bearer_client, make_user

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "demo-password"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request, tmp_path) -> str:
    """An empty database, SQLite or PostgreSQL (for `bare_app` too)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'tidings.db'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def bare_app(bare_app):
    """The suite's bare app, whose seed uses the demo password given (no file in instance/)."""
    bare_app.config["DEMO_PASSWORD"] = PASSWORD
    return bare_app


def upgrade(app, revision: str = "head") -> None:
    """Run `flask db upgrade` to a revision, in process."""
    with app.app_context():
        flask_migrate.upgrade(revision=revision)


def run(app, sql: str, **params) -> list[tuple]:
    """Run SQL in a write transaction and return its rows, if any."""
    with app.app_context(), runtime().write() as session:
        result = session.execute(sa.text(sql), params)
        return [tuple(row) for row in result] if result.returns_rows else []


def counts(app) -> dict[str, int]:
    """Return the number of rows of every table, the feed's and alembic_version included."""
    with app.app_context(), db.engine.connect() as conn:
        names = sa.inspect(conn).get_table_names()
        return {
            name: conn.execute(sa.text(f'SELECT count(*) FROM "{name}"')).scalar() for name in names
        }


def revision_of(app) -> str:
    """Return the revision the database is stamped with."""
    return run(app, "SELECT version_num FROM alembic_version")[0][0]


def test_base_to_head_gives_the_models_schema_and_a_working_app(bare_app):
    app = bare_app
    upgrade(app)
    with app.app_context(), db.engine.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"include_object": feed.include_object, "compare_type": True}
        )
        assert compare_metadata(context, db.metadata) == []
        # Live tables got AUTOINCREMENT (SQLite): the engine finds none to rebuild.
        assert ids.migrate(db.engine, runtime().tables.values()) == []
    # The feed made its own tables at start, with an epoch of its own.
    assert run(app, "SELECT id FROM tidings_log") == [(1,)]
    client = bearer_client(app, make_user(app, "admin"))
    rye = bread(client)
    sale(client, rye["id"], store_id=None)
    snapshot = client.get("/api/sales_logs").get_json()
    assert [row["bread_type_id"] for row in snapshot["rows"]] == [rye["id"]]
    assert snapshot["cursor"] > 0


@pytest.mark.parametrize("versioned", [True, False], ids=["stamped", "made-by-create_all"])
def test_revision_1_data_survives_the_upgrade_to_head(bare_app, versioned):
    app = bare_app
    upgrade(app, schema.BAKERY)
    insert = (
        "INSERT INTO sales_logs (bread_type_id, quantity, unit_price, shift, recorded_by,"
        " created_at, version, updated_at) VALUES (1, :q, 6.5, 'morning', 'ana', :t, 1, :t)"
    )
    run(
        app,
        "INSERT INTO bread_types (name, price, active, version, updated_at)"
        " VALUES ('Sourdough', 6.5, true, 1, '2026-11-30 08:00:00')",
    )
    for quantity in (4, 5, 6):
        run(app, insert, q=quantity, t="2026-11-30 09:00:00")
    # The newest row goes: its id must never come back.
    run(app, "DELETE FROM sales_logs WHERE quantity = 6")
    if not versioned:
        run(app, "DROP TABLE alembic_version")

    upgrade(app)
    assert revision_of(app) == schema.HEAD
    assert run(app, "SELECT quantity, store_id FROM sales_logs ORDER BY id") == [
        (4, None),
        (5, None),
    ]
    result = app.test_cli_runner().invoke(args=["seed"])
    assert result.exit_code == 0, result.output
    assert "left as it is" in result.output
    before = counts(app)
    assert (before["bread_types"], before["sales_logs"]) == (1, 2)
    # The new version's stores and demo users came with it.
    assert (before["stores"], before["users"]) == (2, 5)
    client = bearer_client(app, make_user(app, "admin"))
    assert sale(client, 1)["id"] == 4
    rows = client.get("/api/sales_logs?order=id.asc").get_json()["rows"]
    assert [(row["quantity"], row["store_id"]) for row in rows] == [(4, None), (5, None), (2, 1)]


def test_downgrade_to_revision_1_keeps_the_bakery_rows(bare_app):
    app = bare_app
    upgrade(app)
    client = bearer_client(app, make_user(app, "admin"))
    store = client.post("/api/stores", json={"name": "Quay", "city": "Hull"}).get_json()["row"]
    sale(client, bread(client)["id"], store_id=store["id"])
    with app.app_context():
        flask_migrate.downgrade(revision=schema.BAKERY)
    assert revision_of(app) == schema.BAKERY
    assert run(app, "SELECT quantity FROM sales_logs") == [(2,)]
    with app.app_context(), db.engine.connect() as conn:
        tables = set(sa.inspect(conn).get_table_names())
        columns = {column["name"] for column in sa.inspect(conn).get_columns("sales_logs")}
    assert not tables & {"stores", "users", "api_tokens", "user_sessions"}
    assert "store_id" not in columns
    upgrade(app)
    assert run(app, "SELECT quantity, store_id FROM sales_logs") == [(2, None)]


def test_upgrade_and_seed_again_change_nothing(bare_app):
    app = bare_app
    runner = app.test_cli_runner()
    seen = []
    for _ in range(2):
        for args in (["db", "upgrade"], ["seed"]):
            result = runner.invoke(args=args)
            assert result.exit_code == 0, result.output
        seen.append(counts(app))
    assert seen[0] == seen[1]
    assert seen[0]["sales_logs"] > 0 and seen[0]["users"] == 5
    assert revision_of(app) == schema.HEAD


def _make_run_commands() -> list[list[str]]:
    """Return the commands `make run` runs before it starts gunicorn."""
    dry = subprocess.run(
        ["make", "-n", "-s", "run"], cwd=ROOT, capture_output=True, text=True, check=True
    )
    commands = [shlex.split(line) for line in dry.stdout.splitlines() if "flask" in line]
    assert [command[-1] for command in commands] == ["upgrade", "seed"]
    return commands


def test_make_run_joins_an_existing_database_without_reseeding(
    bare_app, database_url, redis_server
):
    # A database made before migrations, as the last version's `make run` left it.
    app = bare_app
    with app.app_context():
        db.create_all()
        seed()
        seed_demo_users(app.instance_path, PASSWORD)
    before = counts(app)
    env = os.environ | {
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_server.url,
        "DEMO_PASSWORD": PASSWORD,
        "SECRET_KEY": "tests",
    }
    for command in _make_run_commands():
        done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
    assert "left as it is" in done.stdout
    after = counts(app)
    assert after.pop("alembic_version") == 1
    assert after == before
    assert revision_of(app) == schema.HEAD


@pytest.mark.postgres
def test_nodes_upgrading_at_once_migrate_once(postgres_url, redis_server):
    upgrade_command = _make_run_commands()[0]
    env = os.environ | {"DATABASE_URL": postgres_url, "REDIS_URL": redis_server.url}
    engine = sa.create_engine(postgres_url)
    try:
        with engine.connect() as holder, engine.connect() as watcher:
            # Hold the migration lock until both nodes wait for it: they race for real.
            holder.execute(sa.select(sa.func.pg_advisory_lock(schema.PG_MIGRATION_LOCK)))
            holder.commit()
            nodes = [
                subprocess.Popen(
                    upgrade_command,
                    cwd=ROOT,
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                )
                for _ in range(2)
            ]
            waiting = sa.text(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
                " AND objid = :low AND database = (SELECT oid FROM pg_database"
                " WHERE datname = current_database())"
            ).bindparams(low=schema.PG_MIGRATION_LOCK & 0xFFFFFFFF)
            deadline = time.monotonic() + 60
            while watcher.execute(waiting).scalar() < 2:
                watcher.rollback()
                assert time.monotonic() < deadline, "the nodes never reached the lock"
                assert all(node.poll() is None for node in nodes)
                time.sleep(0.05)
            holder.execute(sa.select(sa.func.pg_advisory_unlock(schema.PG_MIGRATION_LOCK)))
            for node in nodes:
                _, stderr = node.communicate(timeout=60)
                assert node.returncode == 0, stderr.decode()
            versions = watcher.execute(sa.text("SELECT version_num FROM alembic_version"))
            assert versions.scalars().all() == [schema.HEAD]
    finally:
        engine.dispose()
