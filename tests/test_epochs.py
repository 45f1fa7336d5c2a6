"""Cursors from another log (recreated, or restored from a copy and grown since) get a reset
with reason epoch, on the stream and the poll; a normal restart keeps them valid."""

import sqlite3
import time

import orjson
import sqlalchemy as sa

from feed import runtime
from feed.log import epoch_of, first_id
from models import db

from .api_helpers import bread, log_head, logged, sale
from .delivery_tools import create_bread_types, head, sell, wait_for
from .identities import recreate_database
from .servers import http
from .sse import SseStream

QUERY = "topics=sales_logs,bread_types"


def _poll_reset(client_or_url, cursor: int) -> dict | None:
    """Poll from a cursor; return the reset of a 410, None for a normal answer."""
    if isinstance(client_or_url, str):
        response = http(client_or_url).get(
            f"{client_or_url}/api/changes?{QUERY}", params={"cursor": cursor}, timeout=10
        )
        status, body = response.status_code, response.json()
    else:
        response = client_or_url.get(f"/api/changes?{QUERY}&cursor={cursor}")
        status, body = response.status_code, response.get_json()
    assert status in (200, 410), body
    return body["reset"] if status == 410 else None


def _stream_reset(url: str, cursor: int) -> dict | None:
    """Open a stream from a cursor; return the reset it opens with, or None."""
    with SseStream(url, f"{QUERY}&cursor={cursor}") as stream:
        opening = stream.until("ready")
    resets = [block.json() for block in opening if block.event == "reset"]
    return resets[0] if resets else None


def _test_client_stream_reset(client, cursor: int) -> dict | None:
    """Open a stream in-process and read its opening chunk: the reset comes first."""
    with client.get(f"/stream?{QUERY}&cursor={cursor}", buffered=False) as response:
        assert response.status_code == 200
        opening = next(iter(response.response)).decode()
    if "event: reset" not in opening:
        return None
    data = opening.split("event: reset\ndata: ", 1)[1].split("\n", 1)[0]
    return orjson.loads(data)


def _counter(event_id: int) -> int:
    """Return an id's place in its epoch."""
    return event_id - first_id(epoch_of(event_id))


def _grow(client, bread_id: int, past: int) -> None:
    """Write until the log's counter is past a cursor's: ids that once meant other events."""
    while _counter(log_head(client.application)) <= past:
        sale(client, bread_id)


def test_a_fresh_log_has_a_random_epoch_and_ids_below_2_53(app, client):
    rye = bread(client)
    head = log_head(app)
    assert epoch_of(head) > 0
    assert head < 2**53
    assert _poll_reset(client, head) is None
    assert sale(client, rye["id"]) and _poll_reset(client, head) is None


def test_a_recreated_log_grown_past_the_cursor_resets_it(app, client, admin):
    rye = bread(client)
    for _ in range(3):
        sale(client, rye["id"])
    cursor = log_head(app)
    recreate_database(app, admin)
    rye = bread(client)
    _grow(client, rye["id"], _counter(cursor) + 5)
    assert epoch_of(log_head(app)) != epoch_of(cursor)
    for reset_of in (_poll_reset, _test_client_stream_reset):
        # A signed-in stream joins presence as it opens (and leaves as it closes), which
        # appends events: the reset goes on from the head of when it was made.
        head = log_head(app)
        reset = reset_of(client, cursor)
        assert reset is not None and reset["reason"] == "epoch"
        assert head <= reset["cursor"] <= log_head(app)
        assert epoch_of(reset["cursor"]) == epoch_of(head)


def test_cursor_zero_reads_a_whole_log_from_its_start(app, client):
    rye = bread(client)
    sale(client, rye["id"])
    events = client.get(f"/api/changes?{QUERY}&cursor=0").get_json()["events"]
    assert [e["op"] for e in events] == ["INSERT", "INSERT"]
    assert events[0]["id"] == logged(app, "sales_logs", "bread_types")[0]["id"]
    assert logged(app)[0]["id"] == first_id(epoch_of(log_head(app))) + 1


def test_a_log_from_before_epochs_keeps_its_cursors(app, client):
    # Made the old way: ids from 1, then no epoch table, as before the upgrade.
    log = runtime_log(app)
    meta = log.meta
    with app.app_context(), db.engine.begin() as conn:
        conn.execute(log.table.delete())
        conn.execute(meta.update().values(epoch=0))
    rye = bread(client)
    sale(client, rye["id"])
    assert log_head(app) < 100
    with app.app_context():
        meta.drop(db.engine)
        db.create_all()
        with db.engine.connect() as conn:
            assert conn.execute(sa.select(meta.c.epoch)).scalar() == 0
    assert _poll_reset(client, 1) is None
    assert _poll_reset(client, 0) is None
    assert [e["topic"] for e in client.get(f"/api/changes?{QUERY}&cursor=1").get_json()["events"]]


def runtime_log(app):
    """Return the app's event log."""
    with app.app_context():
        return runtime().log


def _copy(database: str, target: str) -> None:
    """Copy one SQLite database onto another with the backup API (safe while in use)."""
    source, destination = sqlite3.connect(database), sqlite3.connect(target)
    try:
        source.backup(destination)
    finally:
        source.close()
        destination.close()


def _path(database_url: str) -> str:
    return database_url.removeprefix("sqlite:///")


def _copied_then_grown(server, database_url: str, tmp_path) -> tuple[str, list[int], int]:
    """Back the database up, then write past the copy; return the copy, breads and head."""
    bread_ids = create_bread_types(server.url)
    backup = str(tmp_path / "backup.db")
    _copy(_path(database_url), backup)
    for _ in range(4):
        sell(server.url, bread_ids[0], "morning")
    return backup, bread_ids, head(server.url)


def test_a_copy_restored_under_a_running_server_resets_streams_and_old_cursors(
    database_url, start_server, tmp_path
):
    server = start_server(HEARTBEAT_SECONDS="1", RELAY_SECONDS="0.2")
    backup, bread_ids, cursor = _copied_then_grown(server, database_url, tmp_path)
    with SseStream(server.url, f"{QUERY}&cursor={cursor}") as stream:
        stream.until("ready")
        _copy(backup, _path(database_url))
        deadline = time.monotonic() + 10
        reset = next(b for b in stream.blocks if b.event == "reset" or time.monotonic() > deadline)
        assert reset.event == "reset", "no reset within 10 s of the restore"
        assert reset.json()["reason"] == "epoch"
        assert epoch_of(reset.json()["cursor"]) != epoch_of(cursor)
        # It goes on live in the new epoch.
        event = sell(server.url, bread_ids[0], "night")
        change = next(b for b in stream.blocks if b.event == "change")
        assert change.json()["id"] == event
    # Grown past the old cursor's counter, the old cursor still resets.
    while _counter(head(server.url)) <= _counter(cursor):
        sell(server.url, bread_ids[0], "night")
    assert _poll_reset(server.url, cursor)["reason"] == "epoch"
    assert _stream_reset(server.url, cursor)["reason"] == "epoch"


def test_a_restored_log_grown_past_at_once_is_caught_by_its_first_write(
    database_url, start_server, tmp_path
):
    # The relay would only notice much later: the first write's id, seen before, tells.
    server = start_server(RELAY_SECONDS="30", MONITOR_SECONDS="0")
    backup, bread_ids, cursor = _copied_then_grown(server, database_url, tmp_path)
    _copy(backup, _path(database_url))
    sell(server.url, bread_ids[0], "night")
    wait_for(lambda: epoch_of(head(server.url)) != epoch_of(cursor), 5, "a new epoch")
    while _counter(head(server.url)) <= _counter(cursor):
        sell(server.url, bread_ids[0], "night")
    assert _poll_reset(server.url, cursor)["reason"] == "epoch"


def test_a_copy_restored_while_down_then_grown_past_resets_old_cursors(
    database_url, start_server, tmp_path
):
    server = start_server()
    backup, bread_ids, cursor = _copied_then_grown(server, database_url, tmp_path)
    # Published events reach Redis's record of the head before the server goes.
    time.sleep(0.5)
    server.stop()
    _copy(backup, _path(database_url))
    server = start_server()
    for _ in range(6):
        sell(server.url, bread_ids[0], "night")
    assert epoch_of(head(server.url)) != epoch_of(cursor)
    assert _poll_reset(server.url, cursor)["reason"] == "epoch"
    assert _stream_reset(server.url, cursor)["reason"] == "epoch"


def test_a_normal_restart_keeps_cursors_valid(start_server):
    server = start_server()
    bread_ids = create_bread_types(server.url)
    cursor = head(server.url)
    expected = [sell(server.url, bread_ids[0], "morning") for _ in range(2)]
    time.sleep(0.5)
    server.stop()
    server = start_server()
    assert _poll_reset(server.url, cursor) is None
    assert _stream_reset(server.url, cursor) is None
    polled = server.http.get(
        f"{server.url}/api/changes", params={"topics": "sales_logs", "cursor": cursor}, timeout=10
    ).json()
    assert [e["id"] for e in polled["events"]] == expected
    wait_for(lambda: head(server.url) >= expected[-1])
