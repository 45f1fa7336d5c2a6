"""Redis stopped: health falls and says why, /readyz is 503, streams keep delivering;
Redis back: everything recovers by itself."""

from .delivery_tools import wait_for
from .monitor_tools import figures
from .sse import SseStream

SALE = {"quantity": 1, "unit_price": 3.5, "shift": "night", "recorded_by": "eve"}


def _redis_part(base_url: str) -> dict:
    parts = figures(base_url)["health"]["parts"]
    return next(part for part in parts if part["name"] == "redis")


def test_health_follows_redis_down_and_back(start_server, fresh_redis):
    server = start_server(
        workers=2,
        redis_url=fresh_redis.url,
        MONITOR_SECONDS="1",
        HEARTBEAT_SECONDS="1",
        RELAY_SECONDS="0.2",
    )
    bread_id = server.http.post(
        f"{server.url}/api/bread_types", json={"name": "Rye", "price": 5}
    ).json()["row"]["id"]
    wait_for(lambda: _redis_part(server.url)["score"] == 1)
    healthy = figures(server.url)["health"]["score"]
    assert server.http.get(f"{server.url}/readyz").status_code == 200

    with SseStream(server.url, "topics=sales_logs") as stream:
        stream.until("ready")
        fresh_redis.kill()
        wait_for(lambda: server.http.get(f"{server.url}/readyz").status_code == 503)
        part = _redis_part(server.url)
        assert part["score"] == 0 and part["contribution"] == 0
        assert "Redis unreachable" in part["detail"]
        down = figures(server.url)
        assert down["health"]["score"] <= healthy - 25
        assert down["redis"]["up"] is False
        # Writes still succeed and the stream still gets them, from the log.
        written = server.http.post(
            f"{server.url}/api/sales_logs", json=SALE | {"bread_type_id": bread_id}
        )
        assert written.status_code == 201
        assert int(stream.until("change")[-1].id) == written.json()["event"]

        fresh_redis.start()
        wait_for(lambda: server.http.get(f"{server.url}/readyz").status_code == 200, timeout=15)
        wait_for(lambda: _redis_part(server.url)["score"] == 1, timeout=15)
        back = figures(server.url)
        assert back["redis"] == {"up": True, "listeners_up": True, "down_seconds": 0}
        again = server.http.post(
            f"{server.url}/api/sales_logs", json=SALE | {"bread_type_id": bread_id}
        )
        assert int(stream.until("change")[-1].id) == again.json()["event"]
