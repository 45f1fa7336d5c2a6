"""The read cache under a long-poll herd, and per-process against Redis for a hit.

`python -m bench.cache_load [POLLERS] [EVENTS]` keeps POLLERS long polls waiting on one
topic while EVENTS events are published, and reports the poll cache's hit rate; then it
times a cached snapshot hit in process against fetching the same body from Redis.
Writes bench/results/cache_load.json.
"""

import asyncio
import sys
import time

import orjson

from tests.monitor_tools import metric_values
from tests.servers import bearer, http, server_at

from .publisher import bench_event, send_paced
from .results import write
from .server import BenchServer
from .swarm import SOURCE_ADDRESSES

CONNECTING = 100


async def _poller(
    host: str, port: int, auth: str, index: int, cursor: int, stop: asyncio.Event, seen
):
    """Long-poll in a loop on one keep-alive connection, counting events received."""
    local = (f"127.0.0.{2 + index % SOURCE_ADDRESSES}", 0)
    reader, writer = await asyncio.open_connection(host, port, local_addr=local)
    try:
        while not stop.is_set():
            path = f"/api/changes?topics=bench&wait=20&cursor={cursor}"
            writer.write(
                f"GET {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: {auth}\r\n\r\n".encode()
            )
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(
                int(line.split(b":")[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            body = orjson.loads(await reader.readexactly(length))
            seen[index] += len(body["events"])
            cursor = body["cursor"]
    finally:
        writer.close()


async def _herd(url: str, pollers: int, events: int, rate: float) -> dict:
    host, port = url.split("//")[1].split(":")
    cursor = http(url).get(f"{url}/api/changes?topics=bench").json()["cursor"]
    auth = bearer(url)["Authorization"]
    stop = asyncio.Event()
    seen = [0] * pollers
    gate = asyncio.Semaphore(CONNECTING)

    async def start(index):
        async with gate:
            await asyncio.sleep(0)
        await _poller(host, int(port), auth, index, cursor, stop, seen)

    tasks = [asyncio.create_task(start(i)) for i in range(pollers)]
    await asyncio.sleep(3)
    before = metric_values(url)
    began = time.monotonic()
    await asyncio.to_thread(
        send_paced, url, "/api/publish", bench_event, rate=rate, count=events, connections=1
    )
    deadline = time.monotonic() + 30
    while min(seen) < events and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    seconds = time.monotonic() - began
    after = metric_values(url)
    stop.set()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)

    def delta(name):
        return after[name] - before[name]

    hits = delta("tidings_cache_hits_total{kind=poll}")
    misses = delta("tidings_cache_misses_total{kind=poll}")
    return {
        "pollers": pollers,
        "events": events,
        "seconds": round(seconds, 2),
        "every_poller_got_every_event": min(seen) >= events,
        "min_events_seen": min(seen),
        "poll_hits": hits,
        "poll_misses": misses,
        "poll_hit_rate": round(hits / (hits + misses), 4) if hits + misses else None,
    }


def _hit_costs(url: str, redis_client, rounds: int = 300) -> dict:
    """Compare a per-process hit (Server-Timing "cache": marks query + lookup) with the
    Redis GET of the same body that a shared cache would add to the same marks query."""
    session = server_at(url).session()
    path = f"{url}/api/bread_types?limit=1000"
    body = session.get(path).content
    spent = []
    for _ in range(rounds):
        timing = session.get(path).headers["Server-Timing"]
        spent.append(float(timing.split("dur=")[1].split(";")[0]))
    redis_client.set("tidings:bench:cached", body)
    started = time.perf_counter()
    for _ in range(rounds):
        orjson.loads(redis_client.get("tidings:bench:cached"))
    redis_get = (time.perf_counter() - started) / rounds
    return {
        "body_bytes": len(body),
        "in_process_hit_ms": round(sum(spent) / len(spent), 3),
        "redis_get_and_decode_same_body_ms": round(redis_get * 1000, 3),
    }


def main(pollers: int = 1000, events: int = 40, workers: int = 2):
    """Run the herd and the hit-cost comparison; print and write the figures."""
    print(
        f"cache load: {pollers} long pollers on topic 'bench', {events} events, {workers} workers"
    )
    with BenchServer(workers=workers, MONITOR_SECONDS="0") as server:
        for n in range(300):
            http(server.url).post(
                f"{server.url}/api/bread_types", json={"name": f"B{n}", "price": 1}
            )
        herd = asyncio.run(_herd(server.url, pollers, events, rate=4))
        print(f"  {herd}")
        costs = _hit_costs(server.url, server.redis_client())
        print(f"  {costs}")
    path = write("cache_load", {"config": {"workers": workers}, "herd": herd, "hit_cost": costs})
    print(f"  written to {path}")


if __name__ == "__main__":
    main(*map(int, sys.argv[1:]))
