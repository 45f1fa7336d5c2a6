"""Soak: many signed-in clients through a fault proxy that cuts connections at random, under a
steady write rate, for minutes. Prints each worker's slope of RSS, open files and greenlets
and how many events clients lost (must be 0).

`make soak` runs 10 minutes with 500 clients and 200 writes/s; SOAK_SECONDS, SOAK_CLIENTS,
SOAK_WRITES (per second) and SOAK_CUTS (per second) change that.
"""

import logging
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.server import rss_bytes
from feed.embedded import EmbeddedRedis

from ..delivery_tools import Follower, create_bread_types, head
from ..monitor_tools import metric_values
from ..servers import TidingsServer, free_port, route
from .clients import Writing
from .invariants import log_answer
from .proxy import ProxyProcess

QUERIES = (
    "topics=sales_logs,production_logs,shift_feedback,bread_types",
    "topics=sales_logs&sales_logs.shift=eq.night",
    "topics=production_logs&production_logs.select=id,quantity",
)
CUTS = ("rst", "fin", "mid_frame")
SAMPLE_SECONDS = 2.0


def slope(points: list[tuple[float, float]]) -> float:
    """Return the least-squares slope of (seconds, value) points, per minute."""
    n = len(points)
    if n < 2:
        return 0.0
    mean_t = sum(t for t, _ in points) / n
    mean_v = sum(v for _, v in points) / n
    spread = sum((t - mean_t) ** 2 for t, _ in points)
    return 60 * sum((t - mean_t) * (v - mean_v) for t, v in points) / spread if spread else 0.0


@dataclass
class Figures:
    """Per-worker samples over time: RSS (MiB), open files, greenlets."""

    rss: dict[int, list[tuple[float, float]]] = field(default_factory=dict)
    files: dict[int, list[tuple[float, float]]] = field(default_factory=dict)
    greenlets: dict[int, list[tuple[float, float]]] = field(default_factory=dict)

    def sample(self, server: TidingsServer, at: float) -> None:
        """Record one sample of every worker."""
        gauges = metric_values(server.url)
        for pid in server.worker_pids():
            try:
                self.rss.setdefault(pid, []).append((at, rss_bytes(pid) / 2**20))
                self.files.setdefault(pid, []).append((at, len(os.listdir(f"/proc/{pid}/fd"))))
            except (OSError, RuntimeError):
                continue
            count = gauges.get(f"tidings_greenlets{{pid={pid}}}")
            if count is not None:
                self.greenlets.setdefault(pid, []).append((at, count))

    def slopes(self, after: float) -> dict[str, dict[int, float]]:
        """Return each figure's slope per minute by worker, over samples after `after`."""
        return {
            name: {pid: slope([p for p in points if p[0] >= after]) for pid, points in by.items()}
            for name, by in (
                ("rss_mib", self.rss),
                ("files", self.files),
                ("greenlets", self.greenlets),
            )
        }


@dataclass
class Result:
    """What a soak found."""

    lost: int
    checked: int
    writes: int
    faults: dict
    slopes: dict[str, dict[int, float]]

    def report(self) -> str:
        """Return the result as a few printable lines."""
        lines = [f"writes {self.writes}, events checked {self.checked}, lost {self.lost}"]
        lines.append(f"faults {self.faults}")
        for name, by in self.slopes.items():
            per = ", ".join(f"{pid}: {value:+.2f}" for pid, value in by.items())
            lines.append(f"{name} per minute by worker: {per}")
        return "\n".join(lines)


def lost_events(url: str, clients: list[Follower], start: int) -> tuple[int, int]:
    """Return how many events the clients missed, repeated or got out of order, and how many
    the log owed them."""
    answers: dict[str, list[int]] = {}
    lost = owed = 0
    for client in clients:
        if client.query not in answers:
            answers[client.query] = [e["id"] for e in log_answer(url, client.query, start, {})]
        expected = answers[client.query]
        got = [e["id"] for e in client.events]
        owed += len(expected)
        lost += len(set(expected) - set(got)) + len(got) - len(set(got))
        lost += sum(a > b for a, b in zip(got, got[1:], strict=False))
    return lost, owed


def soak(server: TidingsServer, seconds: float, clients: int, writes: float, cuts: float) -> Result:
    """Run the soak against a started server and return what it found."""
    proxy = ProxyProcess(server.port)
    route(proxy.url, server)
    try:
        bread_types = create_bread_types(server.url)
        start = head(server.url)
        deadline = time.monotonic() + seconds + 120
        followers = [
            Follower(proxy.url, QUERIES[n % len(QUERIES)], start, seed=n, deadline=deadline,
                     drops=False, timeout=10)
            for n in range(clients)
        ]  # fmt: skip
        for follower in followers:
            follower.start()
        figures = Figures()
        began = time.monotonic()
        proxy.chaos(every=1 / cuts, seed=1, faults=CUTS)
        threads = max(1, min(8, int(writes // 25) + 1))
        writing = Writing(server.url, bread_types, threads=threads, pause=threads / writes)
        while time.monotonic() - began < seconds:
            figures.sample(server, time.monotonic() - began)
            time.sleep(SAMPLE_SECONDS)
        written = writing.stop()
        proxy.calm()
        final = head(server.url)
        for follower in followers:
            follower.target = final
        for follower in followers:
            follower.join(timeout=max(0.0, deadline - time.monotonic()) + 5)
        # A client that did not finish counts what it still lacked as lost.
        lost, owed = lost_events(server.url, followers, start)
        faults = proxy.stats()["faults"]
    finally:
        proxy.stop()
    return Result(lost, owed, written, faults, figures.slopes(after=seconds / 4))


def main() -> None:
    """Start valkey and a 2-worker server on a fresh SQLite file, soak it, print the result."""
    # Hundreds of streams share the admin's session: its pool's "full, discarding" notes are noise.
    logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)
    seconds = float(os.environ.get("SOAK_SECONDS", "600"))
    clients = int(os.environ.get("SOAK_CLIENTS", "500"))
    writes = float(os.environ.get("SOAK_WRITES", "200"))
    cuts = float(os.environ.get("SOAK_CUTS", "5"))
    with tempfile.TemporaryDirectory() as directory:
        redis = EmbeddedRedis(Path(directory) / "redis", port=free_port())
        redis.start()
        server = TidingsServer(
            f"sqlite:///{directory}/soak.db", redis.url, workers=2, HEARTBEAT_SECONDS="2"
        )
        try:
            server.start()
            print(f"soak: {seconds:g} s, {clients} clients, {writes:g} writes/s, {cuts:g} cuts/s")
            result = soak(server, seconds, clients, writes, cuts)
            print(result.report())
        finally:
            server.stop()
            redis.stop()
    raise SystemExit(1 if result.lost else 0)


if __name__ == "__main__":
    main()
