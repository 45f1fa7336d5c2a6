"""Row ids are never handed out twice, on fresh databases and on ones made before AUTOINCREMENT."""

import sqlite3

import sqlalchemy as sa

from app import create_app
from feed import runtime
from models import db

from .api_helpers import bread, sale
from .identities import bearer_client


def _delete(client, table: str, row_id: int) -> None:
    assert client.delete(f"/api/{table}/{row_id}").status_code == 200


def test_a_deleted_newest_rows_id_is_not_handed_out_again(client):
    rye = bread(client)
    first = sale(client, rye["id"])
    _delete(client, "sales_logs", first["id"])
    assert sale(client, rye["id"])["id"] > first["id"]


def _old_style_database(app, path) -> None:
    """Recreate the live tables as before AUTOINCREMENT, keeping their rows and indexes."""
    with app.app_context():
        tables = [t for t in db.metadata.sorted_tables if t.name in runtime().tables]
    connection = sqlite3.connect(path)
    connection.execute("PRAGMA foreign_keys=OFF")
    for table in tables:
        sql = connection.execute(
            "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (table.name,)
        ).fetchone()[0]
        assert "AUTOINCREMENT" in sql
        old = sql.replace(f'CREATE TABLE "{table.name}"', "CREATE TABLE old").replace(
            f"CREATE TABLE {table.name}", "CREATE TABLE old"
        )
        old = old.replace("PRIMARY KEY AUTOINCREMENT", "PRIMARY KEY")
        indexes = connection.execute(
            "SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = ?"
            " AND sql IS NOT NULL",
            (table.name,),
        ).fetchall()
        connection.execute(old)
        connection.execute(f"INSERT INTO old SELECT * FROM {table.name}")
        connection.execute(f"DROP TABLE {table.name}")
        connection.execute(f"ALTER TABLE old RENAME TO {table.name}")
        for (index,) in indexes:
            connection.execute(index)
    connection.execute("DELETE FROM sqlite_sequence")
    connection.commit()
    connection.close()


def _schema(path) -> tuple[str, list, list]:
    connection = sqlite3.connect(path)
    try:
        sql = connection.execute(
            "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'sales_logs'"
        ).fetchone()[0]
        indexes = sorted(
            row[0]
            for row in connection.execute(
                "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'sales_logs'"
            )
        )
        keys = connection.execute("PRAGMA foreign_key_list(sales_logs)").fetchall()
        return sql, indexes, keys
    finally:
        connection.close()


def _named(keys: list[tuple]) -> list[tuple]:
    """Return foreign keys without the id and sequence numbers SQLite gives them."""
    return sorted(key[2:] for key in keys)


def test_an_old_database_is_migrated_and_reuses_no_id(app, client, admin, tmp_path, redis_server):
    path = tmp_path / "tidings.db"
    rye = bread(client)
    sales = [sale(client, rye["id"]) for _ in range(3)]
    # The newest row goes before the migration; only the log remembers its id.
    _delete(client, "sales_logs", sales[-1]["id"])
    _, indexes, keys = _schema(path)
    app.extensions["tidings"].close()
    _old_style_database(app, path)
    assert "AUTOINCREMENT" not in _schema(path)[0]

    migrated = create_app(dict(app.config))
    try:
        sql, after_indexes, after_keys = _schema(path)
        assert "AUTOINCREMENT" in sql
        # The same foreign keys, whatever numbers SQLite gives them.
        assert after_indexes == indexes and _named(after_keys) == _named(keys)
        migrated_client = bearer_client(migrated, admin)
        rows = migrated_client.get("/api/sales_logs").get_json()["rows"]
        assert [row["id"] for row in rows] == [s["id"] for s in sales[:2]]
        assert sale(migrated_client, rye["id"])["id"] > sales[-1]["id"]
        # Foreign keys still hold after the swap.
        refused = migrated_client.post(
            "/api/sales_logs",
            json={
                "bread_type_id": 999,
                "quantity": 1,
                "unit_price": 1,
                "shift": "night",
                "recorded_by": "x",
            },
        )
        assert refused.status_code == 409
        with migrated.app_context():
            with db.engine.connect() as conn:
                assert conn.execute(sa.text("PRAGMA foreign_keys")).scalar() == 1
    finally:
        migrated.extensions["tidings"].close()
