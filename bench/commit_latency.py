"""Commit → deliver: Tidings' HTTP writes beside the asyncio ceiling's publishes, same run.

Both servers run pinned to core 0 with 1,000 streams each; the swarms, the publisher and the
Redis servers share core 1 (as in the fan-out sweep). Tidings gets `POST /api/shift_feedback`
(a durable write, answered once committed) with every stream on that table; the ceiling
gets `POST /api/publish` (a Redis PUBLISH, nothing stored): its latency is the harness's own
floor at this rate, what no server measured here can go under. Each server gets the step in
turn, `ROUNDS` times, and the median round of each is reported.
"""

import os
import statistics

from .fanout_sweep import (
    LOAD_CORE,
    PUBLISHERS,
    SERVER_CORE,
    pinned_tidings,
    settle,
    stage,
)
from .peers import Ceiling
from .publisher import bench_event, feedback_row, send_paced
from .step import healthy, measure, print_step
from .swarm import SwarmProcess

STREAMS = 1000
RATE = 100
SECONDS = 10.0
ROUNDS = 2
P50_MS, P99_MS = 5, 50


def commit_latency(
    streams: int = STREAMS, rate: int = RATE, seconds: float = SECONDS, **env: str
) -> dict:
    """HTTP write → event received at `rate` writes/s to `streams` subscribers, Tidings (one
    gevent worker) beside the ceiling."""
    print(
        f"commit_latency: {rate} writes/s, {streams} SSE streams per server; Tidings: POST "
        f"/api/shift_feedback, streams on that table, one gevent worker; ceiling: POST "
        f"/api/publish; servers on core {SERVER_CORE}, load on core {LOAD_CORE}; load "
        f"average {os.getloadavg()[0]:.2f}"
    )
    writes = {
        "tidings": ("/api/shift_feedback", feedback_row),
        "ceiling": ("/api/publish", bench_event),
    }
    paths = {"tidings": "/stream?topics=shift_feedback", "ceiling": Ceiling.stream_path}
    steps: dict[str, list[dict]] = {"tidings": [], "ceiling": []}
    with stage() as (stack, peer_redis):
        servers = {
            "tidings": pinned_tidings(stack, env),
            "ceiling": stack.enter_context(Ceiling(peer_redis.url, SERVER_CORE)),
        }
        swarms = {}
        for name, server in servers.items():
            path, body = writes[name]
            swarms[name] = stack.enter_context(SwarmProcess(server.url, paths[name], streams))
            print(f"  {name}: opened {swarms[name].opened}")
            send_paced(server.url, path, body, rate=50, count=20)
            swarms[name].report(20, timeout=30)
        for _ in range(ROUNDS):
            for name, server in servers.items():
                path, body = writes[name]
                step = measure(server, swarms[name], path, body, rate, seconds, PUBLISHERS)
                print(f"  {name:>7}", end="")
                print_step(step, streams)
                steps[name].append(step)
                settle(server)
    median = {name: _median_round(runs) for name, runs in steps.items()}
    ours, floor = (median[name]["received"]["latency_ms"] for name in ("tidings", "ceiling"))
    print(
        f"  median round: Tidings p50 {ours['p50']} ms, p99 {ours['p99']} ms; ceiling p50 "
        f"{floor['p50']} ms, p99 {floor['p99']} ms"
    )
    return {
        "config": {
            "streams": streams,
            "rate": rate,
            "seconds": seconds,
            "rounds": ROUNDS,
            "publishing_connections": PUBLISHERS,
            "tidings_workers": 1,
            **env,
        },
        "tidings": median["tidings"],
        "ceiling": median["ceiling"],
        "rounds": steps,
        "target": {"p50_ms": P50_MS, "p99_ms": P99_MS},
        "met": healthy(median["tidings"], streams, P99_MS) and ours["p50"] <= P50_MS,
    }


def _median_round(runs: list[dict]) -> dict:
    """Return the round whose p50 is the median (the lower middle one of an even count)."""
    p50s = [run["received"]["latency_ms"]["p50"] for run in runs]
    return runs[p50s.index(statistics.median_low(p50s))]
