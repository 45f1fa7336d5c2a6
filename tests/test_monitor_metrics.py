"""/metrics parses with prometheus-client's parser and agrees with /monitor.json."""

from prometheus_client.parser import text_string_to_metric_families

from .delivery_tools import wait_for
from .monitor_tools import figures, metric_values, total
from .sse import SseStream

# /monitor.json counter → the Prometheus sample family it is summed from.
AGREEING = {
    "events_appended": "tidings_events_appended_total",
    "events_delivered": "tidings_events_delivered_total",
    "cache_hits": "tidings_cache_hits_total",
    "cache_misses": "tidings_cache_misses_total",
    "cache_invalidations": "tidings_cache_invalidations_total",
    "reconnects": "tidings_reconnects_total",
    "resets": "tidings_resets_total",
}


def _agreeing_pair(base_url: str) -> tuple[dict, dict] | None:
    """Read /metrics, /monitor.json, /metrics; return the pair when nothing moved between."""
    first = metric_values(base_url)
    counters = figures(base_url)["counters"]
    second = metric_values(base_url)
    if all(total(first, name) == total(second, name) for name in AGREEING.values()):
        return first, counters
    return None


def test_metrics_agree_with_monitor_json_over_two_workers(start_server):
    server = start_server(workers=2, MONITOR_SECONDS="1", HEARTBEAT_SECONDS="1")
    with SseStream(server.url, "topics=bread_types") as stream:
        ready = stream.until("ready")[-1].json()
        for n in range(6):
            server.http.post(f"{server.url}/api/bread_types", json={"name": f"B{n}", "price": 3})
            server.http.get(f"{server.url}/api/bread_types")
            server.http.get(f"{server.url}/api/changes?topics=bread_types&cursor=0")
        changes = [stream.until("change")[-1] for _ in range(6)]
        assert len({c.id for c in changes}) == 6
    session = server.session()

    def read_twice() -> bool:
        # Two identical reads on one kept-alive connection (one worker): the second is a
        # hit, unless something was logged between them (a presence event, say).
        for _ in range(2):
            session.get(f"{server.url}/api/bread_types?limit=5")
        return figures(server.url)["counters"]["cache_hits"] >= 1

    wait_for(read_twice, timeout=10, what="a read served from the cache")
    # A reconnecting client, and one whose cursor is from another epoch (a reset).
    with SseStream(server.url, "topics=bread_types", last_event_id=str(ready["cursor"])) as again:
        again.until("ready")
    with SseStream(server.url, "topics=bread_types&cursor=999999") as lost:
        assert lost.until("ready")[1].event == "reset"
    # Deliveries are mirrored from each worker's hub once a second.
    wait_for(lambda: figures(server.url)["counters"]["events_delivered"] >= 6, timeout=10)
    values, counters = wait_for(lambda: _agreeing_pair(server.url), timeout=20)
    for key, name in AGREEING.items():
        assert counters[key] == total(values, name), key
    assert counters["reconnects"] == 1
    assert values["tidings_resets_total{reason=epoch}"] == 1
    assert counters["events_appended"] >= 6
    assert counters["cache_hits"] >= 1
    # Both workers' requests are counted: the sum matches every request this test made.
    assert total(values, "tidings_http_requests_total") >= 6 * 3 + 2
    # The histogram families are exposed whole.
    assert values["tidings_commit_to_deliver_seconds_count{}"] >= 6
    assert "tidings_http_request_duration_seconds_count{method=GET,route=/api/<name>}" in values


def test_metrics_parse_in_one_process(client):
    assert client.get("/api/bread_types").status_code == 200
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    names = {f.name for f in text_string_to_metric_families(response.get_data(as_text=True))}
    assert {"tidings_http_requests", "tidings_cache_misses", "tidings_connections"} <= names
    assert client.get("/monitor.json").get_json()["counters"]["cache_misses"] == 1
