"""Each request leaves one JSON log line, a request id and a Server-Timing header."""

import logging

import orjson
import pytest

from blueprints.observe import logger


class Lines(logging.Handler):
    """Keep the access log's messages."""

    def __init__(self):
        super().__init__(logging.INFO)
        self.lines: list[dict] = []

    def emit(self, record):
        self.lines.append(orjson.loads(record.getMessage()))


@pytest.fixture
def access_log():
    handler = Lines()
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    yield handler.lines
    logger.setLevel(level)
    logger.removeHandler(handler)


def test_one_json_line_per_request(client, access_log):
    response = client.get("/api/bread_types", headers={"X-Request-ID": "abc-123"})
    assert response.headers["X-Request-ID"] == "abc-123"
    missing = client.get("/api/no_such_table")
    assert missing.status_code == 404
    first, second = access_log
    assert first["event"] == "request"
    assert {k: first[k] for k in ("method", "path", "status", "request_id")} == {
        "method": "GET",
        "path": "/api/bread_types",
        "status": 200,
        "request_id": "abc-123",
    }
    assert first["duration_ms"] >= 0
    assert second["status"] == 404 and len(second["request_id"]) == 32
    assert second["request_id"] == missing.headers["X-Request-ID"]


def test_server_timing_names_db_and_cache(client):
    miss = client.get("/api/bread_types").headers["Server-Timing"]
    hit = client.get("/api/bread_types").headers["Server-Timing"]
    assert "cache;dur=" in miss and 'desc="miss"' in miss and "db;dur=" in miss
    assert 'desc="hit"' in hit and "db;dur=" not in hit


def _log_lines(server) -> list[dict]:
    """Return the JSON lines the server wrote so far."""
    return [orjson.loads(line) for line in server.output().splitlines() if line.startswith("{")]


def test_a_stream_logs_its_open_and_its_close_with_duration_and_events_sent(start_server):
    import time

    from .delivery_tools import wait_for
    from .sse import SseStream

    server = start_server(LOG_LEVEL="INFO", HEARTBEAT_SECONDS="0.5")
    with SseStream(server.url, "topics=bread_types", headers={"X-Request-ID": "s-1"}) as stream:
        stream.until("ready")
        for name in ("Rye", "Spelt"):
            server.http.post(f"{server.url}/api/bread_types", json={"name": name, "price": 5})
            stream.until("change")
        time.sleep(0.3)
    # The server notices the client left at its next heartbeat write.
    wait_for(
        lambda: any(line.get("event") == "stream.close" for line in _log_lines(server)),
        what="the stream.close line",
    )
    lines = {line["event"]: line for line in _log_lines(server) if line.get("request_id") == "s-1"}
    assert lines["stream.open"]["path"] == "/stream"
    assert lines["stream.open"]["status"] == 200
    assert lines["stream.close"]["events_sent"] == 2
    assert lines["stream.close"]["duration_ms"] >= 300


def test_a_static_file_is_a_request_not_a_stream(client, access_log):
    response = client.get("/static/tidings.js")
    assert response.status_code == 200
    # Flask streams files from disk: streamed, yet not an event stream.
    assert response.is_streamed
    response.close()
    assert [(line["event"], line["path"]) for line in access_log] == [
        ("request", "/static/tidings.js")
    ]
