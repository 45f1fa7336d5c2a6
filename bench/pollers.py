"""Long polls: a swarm of pollers in one asyncio process, and the scenario that drives it.

`python -m bench.pollers URL COUNT SECONDS CURSOR` runs COUNT keep-alive clients, each
long-polling `/api/changes?topics=bench&wait=25` from CURSOR and again from each answer's
cursor, for SECONDS; then it prints one JSON line: completed polls per second, whether each
client got exactly the log's events (a prefix of them, once each, in order), and the latency
from an event's send time (in its data) to the answer that carried it.
"""

import asyncio
import json
import os
import resource
import subprocess
import sys
import time
from urllib.parse import urlsplit

import orjson
import requests

from tests.servers import server_at

from .publisher import bench_event, send_paced
from .server import BenchServer, cpu_seconds
from .swarm import TOKEN_VARIABLE

# Each poller's own source address, so thousands of connections never run out of ports.
SOURCE_ADDRESSES = 16
WAIT_SECONDS = 25


class Poller:
    """One client: a keep-alive connection, its cursor, what it received."""

    def __init__(self, host: str, port: int, token: str, cursor: int, source: str):
        self.host, self.port, self.token, self.source = host, port, token, source
        self.cursor = cursor
        self.ids: list[int] = []
        self.latencies: list[float] = []
        self.polls = 0

    def request(self) -> bytes:
        path = f"/api/changes?topics=bench&wait={WAIT_SECONDS}&cursor={self.cursor}&limit=1000"
        return (
            f"GET {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"Authorization: Bearer {self.token}\r\n\r\n"
        ).encode()

    async def run(self, until: float) -> None:
        reader, writer = await asyncio.open_connection(
            self.host, self.port, local_addr=(self.source, 0)
        )
        try:
            while time.monotonic() < until:
                writer.write(self.request())
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length:", 1)[1].split(b"\r\n", 1)[0])
                body = orjson.loads(await reader.readexactly(length))
                now = time.time()
                self.polls += 1
                for event in body["events"]:
                    self.ids.append(event["id"])
                    self.latencies.append(now - float(event["row"]["sent"]))
                self.cursor = body["cursor"]
        finally:
            writer.close()


async def _main(url: str, count: int, seconds: float, cursor: int) -> dict:
    parts = urlsplit(url)
    token = os.environ[TOKEN_VARIABLE]
    pollers = [
        Poller(parts.hostname, parts.port, token, cursor, f"127.0.0.{2 + n % SOURCE_ADDRESSES}")
        for n in range(count)
    ]
    started = time.monotonic()
    cpu = resource.getrusage(resource.RUSAGE_SELF)
    outcomes = await asyncio.gather(
        *(p.run(started + seconds) for p in pollers), return_exceptions=True
    )
    elapsed = time.monotonic() - started
    used = resource.getrusage(resource.RUSAGE_SELF)
    failed = [repr(o) for o in outcomes if isinstance(o, BaseException)]
    latencies = sorted(lat for p in pollers for lat in p.latencies)
    received = [p.ids for p in pollers]
    logged = _logged(url, token, cursor)

    def quantile(q: float) -> float | None:
        if not latencies:
            return None
        return round(latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000, 2)

    return {
        "pollers": count,
        "seconds": round(elapsed, 2),
        "polls": sum(p.polls for p in pollers),
        "polls_per_second": round(sum(p.polls for p in pollers) / elapsed),
        "events_logged": len(logged),
        "fewest_events_received": min(map(len, received), default=0),
        "exact": all(ids == logged[: len(ids)] for ids in received),
        "latency_ms": {"p50": quantile(0.5), "p99": quantile(0.99), "max": quantile(1.0)},
        "failed": len(failed),
        "errors": sorted(set(failed))[:3],
        "swarm_cpu_seconds": round(used.ru_utime + used.ru_stime - cpu.ru_utime - cpu.ru_stime, 2),
    }


def _logged(url: str, token: str, cursor: int) -> list[int]:
    """Return the ids of every bench event the log holds after the cursor."""
    ids: list[int] = []
    headers = {"Authorization": f"Bearer {token}"}
    while True:
        params = {"topics": "bench", "cursor": cursor, "limit": 1000}
        body = requests.get(f"{url}/api/changes", params=params, headers=headers, timeout=30)
        page = body.json()
        ids += [event["id"] for event in page["events"]]
        cursor = page["cursor"]
        if not page["more"]:
            return ids


def long_poll(
    pollers: int = 1000, rate: int = 100, seconds: float = 10, workers: int = 2, **env: str
) -> dict:
    """Completed long polls per second with `pollers` clients while events come at `rate`."""
    print(
        f"long_poll: {pollers} long pollers of topic 'bench' on {workers} gevent workers, "
        f"{rate} events/s via POST /api/publish for {seconds:g} s"
    )
    with BenchServer(workers=workers, **env) as server:
        cursor = (
            server_at(server.url)
            .http.get(f"{server.url}/api/changes", params={"topics": "bench"}, timeout=10)
            .json()["cursor"]
        )
        pids = server.worker_pids()
        cpu = [cpu_seconds(pid) for pid in pids]
        swarm = subprocess.Popen(
            [sys.executable, "-m", "bench.pollers", server.url, str(pollers), str(seconds)]
            + [str(cursor)],
            env={**os.environ, TOKEN_VARIABLE: server_at(server.url).token},
            stdout=subprocess.PIPE,
            text=True,
        )
        # Publishing outlasts the pollers, so each one's last wait ends with an event.
        writes = send_paced(
            server.url, "/api/publish", bench_event, rate=rate, count=int(rate * (seconds + 3))
        )
        figures = json.loads(swarm.communicate(timeout=seconds + 120)[0])
        used = sum(cpu_seconds(pid) - before for pid, before in zip(pids, cpu, strict=True))
    figures["writes"] = writes["statuses"]
    figures["worker_cpu_ms_per_poll"] = round(used / max(figures["polls"], 1) * 1000, 3)
    print(f"  {figures}")
    latency = figures["latency_ms"]["p99"]
    return {
        "config": {"pollers": pollers, "rate": rate, "seconds": seconds, "workers": workers},
        **figures,
        "target": {"polls_per_second": 5000, "p99_ms": 250},
        "met": figures["exact"]
        and not figures["failed"]
        and figures["polls_per_second"] >= 5000
        and latency is not None
        and latency <= 250,
    }


if __name__ == "__main__":
    url, count, seconds, cursor = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
    print(json.dumps(asyncio.run(_main(url, count, seconds, int(cursor)))))
