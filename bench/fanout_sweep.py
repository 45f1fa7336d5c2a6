"""The fan-out sweep: Tidings beside the asyncio ceiling and flask-sse, in the same run.

Each server runs pinned to core 0 (Tidings and flask-sse: one gevent worker; the ceiling: one
process); the swarms, the publisher and the Redis servers share core 1. Rate by rate, each
server in turn gets the same step, and the next step waits until the last one's server is idle
again. The headline is the best step with every event delivered once, in order, p99 <= 50 ms;
a server leaves the sweep only after two steps in a row that do not even keep up (p99 over a
second, or events missing): on a busy shared machine every server misses 50 ms at any rate,
and the sweep still shows how far each one goes.
"""

import contextlib
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from feed.embedded import EmbeddedRedis
from tests.servers import free_port

from .peers import Ceiling, FlaskSse, pin
from .publisher import EVENT_BYTES, bench_event, send_paced
from .server import BenchServer, cpu_seconds
from .step import healthy, measure, print_step
from .swarm import SwarmProcess

RATES = (5, 10, 25, 50, 75, 100, 125, 150, 175, 200)
P99_MS = 50
# A server whose p99 passes this no longer keeps up with the rate.
KEEPING_UP_P99_MS = 1000
SERVER_CORE, LOAD_CORE = 0, 1
TARGET_DELIVERIES = 135_000
TARGET_SHARE_OF_CEILING = 0.9
TIDINGS_STREAM = "/stream?topics=bench"
# Keep-alive publishing connections: with 4, a busy machine's slow POSTs held the publisher
# under the rate it was asked for (seconds late at 75 events/s and more).
PUBLISHERS = 16
# The rate whose p99 is reported for every server.
REFERENCE_RATE = 100


def pinned_tidings(stack: contextlib.ExitStack, env: dict) -> BenchServer:
    server = stack.enter_context(BenchServer(workers=1, **env))
    for pid in (server.server.process.pid, *server.worker_pids()):
        pin(pid, SERVER_CORE)
    return server


@contextlib.contextmanager
def stage() -> Iterator[tuple[contextlib.ExitStack, EmbeddedRedis]]:
    """Run the body on the load core with an exit stack and the peers' own Redis (in a
    temporary directory); everything the body starts runs there unless pinned elsewhere."""
    cores = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {LOAD_CORE})
    try:
        with contextlib.ExitStack() as stack:
            directory = Path(tempfile.mkdtemp(prefix="tidings-peers-"))
            stack.callback(shutil.rmtree, directory, ignore_errors=True)
            peer_redis = EmbeddedRedis(directory, port=free_port())
            peer_redis.start()
            stack.callback(peer_redis.stop)
            yield stack, peer_redis
    finally:
        os.sched_setaffinity(0, cores)


def settle(server, limit: float = 60) -> None:
    """Wait until the server's workers use under a tenth of a core, so a backlog left by a
    failing step does not take the shared core from the next server's step."""
    deadline = time.monotonic() + limit
    pids = server.worker_pids()
    while time.monotonic() < deadline:
        before = sum(cpu_seconds(pid) for pid in pids)
        time.sleep(0.5)
        if sum(cpu_seconds(pid) for pid in pids) - before < 0.05:
            return


def _best(steps: list[dict], streams: int, p99_ms: float, label: str) -> dict:
    """Return the rate, deliveries/s and p99 of the fastest step that held `p99_ms`."""
    good = [s for s in steps if healthy(s, streams, p99_ms)]
    best = max(good, key=lambda s: s["received"]["deliveries_per_second"], default=None)
    received = best["received"] if best else {"deliveries_per_second": 0, "latency_ms": {}}
    return {
        f"{label}_rate": best["rate"] if best else None,
        f"{label}_deliveries_per_second": received["deliveries_per_second"],
        f"{label}_p99_ms": received["latency_ms"].get("p99"),
    }


def _ratios(rates: dict[str, int]) -> tuple[float | None, float | None]:
    """Return Tidings' rate over the ceiling's and over flask-sse's (None for a zero)."""
    return tuple(
        round(rates["tidings"] / rates[peer], 3) if rates[peer] else None
        for peer in ("ceiling", "flask-sse")
    )


def _summary(steps: list[dict], streams: int) -> dict:
    """Return a server's best healthy step and its figures at the reference rate."""
    reference = next((s["received"] for s in steps if s["rate"] == REFERENCE_RATE), None)
    return {
        **_best(steps, streams, P99_MS, "best"),
        **_best(steps, streams, KEEPING_UP_P99_MS, "keeping_up"),
        f"p99_ms_at_{REFERENCE_RATE}": reference["latency_ms"]["p99"] if reference else None,
        f"deliveries_per_second_at_{REFERENCE_RATE}": reference["deliveries_per_second"]
        if reference
        else None,
        "steps": steps,
    }


def fanout_sweep(
    streams: int = 1000, rates: tuple[int, ...] = RATES, seconds: float = 8, **env: str
) -> dict:
    """Deliveries per second with every event delivered once, in order, p99 <= 50 ms."""
    print(
        f"fanout_sweep: {streams} SSE streams per server, {EVENT_BYTES}-byte event data via POST "
        f"/api/publish, {seconds:g} s per step; servers on core {SERVER_CORE}, swarms, publisher "
        f"and Redis on core {LOAD_CORE}; load average {os.getloadavg()[0]:.2f}"
    )
    load_before = os.getloadavg()
    steps: dict[str, list[dict]] = {}
    with stage() as (stack, peer_redis):
        servers = {
            "ceiling": stack.enter_context(Ceiling(peer_redis.url, SERVER_CORE)),
            "tidings": pinned_tidings(stack, env),
            "flask-sse": stack.enter_context(FlaskSse(peer_redis.url, SERVER_CORE)),
        }
        swarms = {}
        for name, server in servers.items():
            # The peers know their own stream path and how a stream learns it is ready.
            path = getattr(server, "stream_path", TIDINGS_STREAM)
            with getattr(server, "readiness", contextlib.nullcontext)():
                swarm = stack.enter_context(SwarmProcess(server.url, path, streams))
            print(f"  {name}: opened {swarm.opened}")
            send_paced(server.url, "/api/publish", bench_event, rate=50, count=20)
            swarm.report(20, timeout=30)
            swarms[name] = swarm
            steps[name] = []
        failures = dict.fromkeys(servers, 0)
        for rate in rates:
            for name, server in servers.items():
                if failures[name] >= 2:
                    continue
                step = measure(
                    server, swarms[name], "/api/publish", bench_event, rate, seconds, PUBLISHERS
                )
                step["healthy"] = healthy(step, streams, P99_MS)
                keeping_up = healthy(step, streams, KEEPING_UP_P99_MS)
                failures[name] = 0 if keeping_up else failures[name] + 1
                print(f"  {name:>9}", end="")
                print_step(step, streams)
                steps[name].append(step)
                settle(server)
    results = {name: _summary(s, streams) for name, s in steps.items()}
    best = {name: r["best_deliveries_per_second"] for name, r in results.items()}
    of_ceiling, of_flask_sse = _ratios(best)
    kept_of_ceiling, kept_of_flask_sse = _ratios(
        {name: r["keeping_up_deliveries_per_second"] for name, r in results.items()}
    )
    for name, r in results.items():
        print(
            f"  {name:>9}: best {r['best_deliveries_per_second']:,} deliveries/s at "
            f"{r['best_rate']} events/s (p99 {r['best_p99_ms']} ms); at {REFERENCE_RATE} events/s "
            f"p99 {r[f'p99_ms_at_{REFERENCE_RATE}']} ms; keeping up (p99 <= {KEEPING_UP_P99_MS} "
            "ms): "
            f"{r['keeping_up_deliveries_per_second']:,}/s at {r['keeping_up_rate']} events/s "
            f"(p99 {r['keeping_up_p99_ms']} ms)"
        )
    print(
        f"  Tidings / ceiling {of_ceiling}, Tidings / flask-sse {of_flask_sse}; keeping up: "
        f"{kept_of_ceiling} and {kept_of_flask_sse}"
    )
    return {
        "config": {
            "streams": streams,
            "event_data_bytes": EVENT_BYTES,
            "seconds_per_step": seconds,
            "rates": list(rates),
            "p99_ms": P99_MS,
            "keeping_up_p99_ms": KEEPING_UP_P99_MS,
            "publishing_connections": PUBLISHERS,
            "server_core": SERVER_CORE,
            "load_core": LOAD_CORE,
            "tidings_workers": 1,
            "flask_sse_workers": 1,
            **env,
        },
        "load_average_before": load_before,
        "servers": results,
        "tidings_of_ceiling": of_ceiling,
        "tidings_of_flask_sse": of_flask_sse,
        "keeping_up_tidings_of_ceiling": kept_of_ceiling,
        "keeping_up_tidings_of_flask_sse": kept_of_flask_sse,
        "target": {
            "deliveries_per_second": TARGET_DELIVERIES,
            "of_ceiling": TARGET_SHARE_OF_CEILING,
            "p99_ms": P99_MS,
        },
        "met": best["tidings"] >= TARGET_DELIVERIES
        and (of_ceiling or 0) >= TARGET_SHARE_OF_CEILING,
    }
