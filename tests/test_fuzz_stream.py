"""Property-based fuzzing on a real server: hostile filters, projections and cursors on a real
SSE connection agree with `/api/changes` (the same events, or the same JSON error), and written
values come back exactly in the stream's event and the snapshot. `test_fuzz_api.py` covers the
same inputs in-process; these cross the real socket, framing included."""

from urllib.parse import quote

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .delivery_tools import create_bread_types, head, next_change
from .servers import http
from .sse import SseStream
from .test_fuzz_api import columns, cursors, filter_values, good_sale, hostile_text, ops

REAL = settings(
    max_examples=25,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture
def served(start_server) -> tuple[str, int, int]:
    """A server with a few sales in its log: its URL, a bread type and the cursor before them."""
    server = start_server(workers=1, HEARTBEAT_SECONDS="1")
    (bread,) = create_bread_types(server.url, 1)
    start = head(server.url)
    for n, shift in enumerate(("morning", "night", "night\r\n", "夜\x00")):
        body = {"bread_type_id": bread, "quantity": n + 1, "unit_price": 2.5, "shift": shift}
        response = http(server.url).post(f"{server.url}/api/sales_logs", json=body, timeout=10)
        assert response.status_code == 201, response.text
    return server.url, bread, start


def _replayed(url: str, query: str) -> tuple[int, list[dict] | dict]:
    """Open a real stream and return its status and the events it replays (or its error)."""
    try:
        stream = SseStream(url, query, timeout=10)
    except requests.HTTPError as error:
        return error.response.status_code, error.response.json()
    with stream:
        return 200, [block.json() for block in stream.until("ready") if block.event == "change"]


def _polled(url: str, query: str) -> tuple[int, list[dict] | dict]:
    response = http(url).get(f"{url}/api/changes?{query}&limit=1000", timeout=10)
    assert response.status_code < 500, response.text
    body = response.json()
    return response.status_code, body["events"] if response.ok else body


@REAL
@given(column=columns, op=ops, value=filter_values, select=st.lists(columns, max_size=3))
def test_a_real_stream_replays_what_a_poll_answers(served, column, op, value, select):
    url, _, start = served
    query = f"topics=sales_logs&sales_logs.{quote(column, safe='')}={quote(op, safe='')}."
    query += quote(value, safe="") + f"&cursor={start}"
    if select:
        query += "&sales_logs.select=" + quote(",".join(select), safe="")
    status, streamed = _replayed(url, query)
    polled_status, polled = _polled(url, query)
    assert status == polled_status
    if status >= 400:
        assert status < 500 and streamed["error"] == polled["error"]
        assert set(streamed) >= {"error", "message", "details"}
    else:
        assert streamed == polled


@REAL
@given(cursor=cursors)
def test_a_real_stream_takes_or_refuses_any_cursor_as_a_poll_does(served, cursor):
    url, _, _ = served
    query = f"topics=sales_logs&cursor={quote(cursor, safe='')}"
    status, body = _replayed(url, query)
    polled_status, _ = _polled(url, query)
    # A stream resets a cursor from another log where a poll answers 410; else they agree.
    assert status == polled_status or (status, polled_status) == (200, 410)
    if status >= 400:
        assert status < 500 and set(body) >= {"error", "message", "details"}


@REAL
@given(sale=good_sale, note=hostile_text)
def test_written_values_come_back_exactly_in_the_stream_and_the_snapshot(served, sale, note):
    url, bread, _ = served
    with SseStream(url, "topics=sales_logs,shift_feedback", timeout=10) as stream:
        stream.until("ready")
        response = http(url).post(
            f"{url}/api/sales_logs", json=sale | {"bread_type_id": bread}, timeout=10
        )
        assert response.status_code in (201, 400, 422), response.text
        if response.status_code == 201:
            row = response.json()["row"]
            event = next_change(stream, 10)
            stored = http(url).get(f"{url}/api/sales_logs/{row['id']}", timeout=10).json()["row"]
            assert event["row"] == stored == row
            assert stored["shift"] == sale["shift"] and stored["quantity"] == sale["quantity"]
        feedback = {"shift": "night", "note": note, "mood": 3}
        response = http(url).post(f"{url}/api/shift_feedback", json=feedback, timeout=10)
        assert response.status_code in (201, 400, 422), response.text
        if response.status_code == 201:
            assert next_change(stream, 10)["row"]["note"] == note
        else:
            assert set(response.json()) >= {"error", "message", "details"}
