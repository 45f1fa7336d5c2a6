"""A first end-to-end pass: write over HTTP, receive over SSE and poll."""

from .sse import SseStream

SALE = {
    "bread_type_id": 1,
    "quantity": 2,
    "unit_price": 6.5,
    "shift": "morning",
    "recorded_by": "t",
}


def test_write_reaches_stream_and_poll(start_server):
    server = start_server(workers=2, HEARTBEAT_SECONDS="1")
    bread = server.http.post(
        f"{server.url}/api/bread_types", json={"name": "Rye", "price": 5}
    ).json()
    with SseStream(server.url, "topics=sales_logs") as stream:
        ready = stream.until("ready")[-1].json()
        created = server.http.post(
            f"{server.url}/api/sales_logs", json=SALE | {"bread_type_id": bread["row"]["id"]}
        )
        assert created.status_code == 201
        change = stream.until("change")[-1]
        assert int(change.id) == created.json()["event"]
        assert change.json()["row"] == created.json()["row"]
    polled = server.http.get(
        f"{server.url}/api/changes", params={"topics": "sales_logs", "cursor": ready["cursor"]}
    )
    assert [e["id"] for e in polled.json()["events"]] == [created.json()["event"]]


def test_ready_moves_last_event_id_past_the_replay(start_server):
    server = start_server()
    server.http.post(f"{server.url}/api/bread_types", json={"name": "Rye", "price": 5})
    with SseStream(server.url, "topics=shift_feedback&cursor=0") as stream:
        ready = stream.until("ready")[-1]
    assert ready.json() == {"cursor": int(ready.id), "replayed": 0}
    assert int(ready.id) >= 1


def test_stream_headers_and_a_jittered_retry(start_server):
    server = start_server(RETRY_MS="2000", RETRY_JITTER_MS="3000")
    retries = []
    for _ in range(5):
        with SseStream(server.url, "topics=bread_types") as stream:
            headers = stream.response.headers
            assert headers["Content-Type"] == "text/event-stream"
            assert headers["Cache-Control"] == "no-cache"
            assert headers["X-Accel-Buffering"] == "no"
            retries.append(stream.next().retry)
    assert all(2000 <= retry <= 5000 for retry in retries)
    # Spread so a restart does not bring every client back in the same second.
    assert len(set(retries)) > 1


def test_errors_before_a_stream_starts_are_json(start_server):
    server = start_server()
    for query in ("topics=nope", "topics=bread_types&cursor=soon", "topics=bread_types&x=1"):
        response = server.http.get(f"{server.url}/stream?{query}", timeout=10)
        assert response.status_code == 400
        assert response.headers["Content-Type"] == "application/json"
        assert set(response.json()) >= {"error", "message", "details"}
