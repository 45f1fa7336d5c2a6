"""Writes and snapshots are engine calls: the same rules without an HTTP request."""

import pytest
from werkzeug.datastructures import MultiDict

from feed import ApiError, runtime, writes
from feed.snapshot import read_row, read_snapshot

from .api_helpers import log_head, logged


def test_a_write_batch_and_publish_without_http(app):
    with app.app_context():
        rt = runtime()
        status, created = writes.write(
            rt, "POST", "bread_types", body={"name": "Rye", "price": 5}, key="k-1"
        )
        assert status == 201 and created["row"]["name"] == "Rye"
        assert (
            writes.write(rt, "POST", "bread_types", body={"name": "Rye", "price": 5}, key="k-1")[1]
            == created
        )
        row_id = created["row"]["id"]
        with pytest.raises(ApiError) as stale:
            writes.write(rt, "PATCH", "bread_types", row_id, {"price": 6}, if_match=2)
        assert (stale.value.status, stale.value.code) == (412, "version_conflict")
        results = writes.batch(
            rt,
            [
                {"method": "PATCH", "table": "bread_types", "id": row_id, "row": {"price": 6}},
                {"method": "DELETE", "table": "no_such_table", "id": 1},
            ],
        )
        assert [r["status"] for r in results] == [200, 404]
        assert results[1]["body"]["error"] == "unknown_table"
        status, published = writes.publish(rt, "presence", {"client": "c1"})
        assert status == 201
    events = logged(app, "bread_types", "presence")
    assert [e["id"] for e in events][-1] == published["event"] == log_head(app)
    assert [e["op"] for e in events] == ["INSERT", "UPDATE", "PUBLISH"]


def test_a_snapshot_and_a_row_without_http(app):
    with app.app_context():
        rt = runtime()
        _, created = writes.write(rt, "POST", "bread_types", body={"name": "Rye", "price": 5})
        found = read_snapshot(rt, "bread_types", MultiDict({"select": "id,name"}), limit=10)
        assert found.cursor == log_head(app)
        assert found.body == (
            b'{"rows":[{"id":%d,"name":"Rye"}],"cursor":%d}' % (created["row"]["id"], found.cursor)
        )
        assert read_row(rt, "bread_types", created["row"]["id"]) == created["row"]
        with pytest.raises(ApiError) as missing:
            read_row(rt, "bread_types", 999)
        assert missing.value.status == 404
