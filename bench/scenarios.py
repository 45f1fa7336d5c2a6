"""The core scenarios: each starts its own server and swarm, prints and returns figures."""

import json
import os
import subprocess
import sys
import time

import requests

from .commit_latency import commit_latency
from .fanout_sweep import fanout_sweep
from .pollers import long_poll
from .publisher import EVENT_BYTES, bench_event, send_paced
from .scale import scale
from .server import BenchServer, rss_bytes
from .slow_clients import slow_clients
from .slow_readers import slow_readers
from .step import TARGET_LATENCY_MS, healthy, measure, print_step
from .storm import storm
from .swarm import SwarmProcess
from .writes import writes


def throughput(
    streams: int = 1000,
    rates: tuple[int, ...] = (50, 75, 100, 150),
    seconds: float = 8,
    workers: int = 1,
    **env: str,
) -> dict:
    """Deliveries per second to `streams` SSE subscribers of /api/publish events, rate by rate."""
    print(
        f"throughput: {streams} SSE streams on topic 'bench', {EVENT_BYTES}-byte event data via "
        f"POST /api/publish, {workers} gevent worker(s); swarm and publisher are separate "
        "processes on the same 2 cores"
    )
    steps = []
    with BenchServer(workers=workers, **env) as server:
        with SwarmProcess(server.url, "/stream?topics=bench", streams) as swarm:
            print(f"  opened: {swarm.opened}")
            send_paced(server.url, "/api/publish", bench_event, rate=50, count=20)
            swarm.report(20, timeout=30)
            for rate in rates:
                step = measure(server, swarm, "/api/publish", bench_event, rate, seconds)
                print_step(step, streams)
                steps.append(step)
    good = [s for s in steps if healthy(s, streams)]
    best = max(good, key=lambda s: s["received"]["deliveries_per_second"], default=None)
    best_rate = best["received"]["deliveries_per_second"] if best else 0
    print(f"  best with every event delivered and p99 <= {TARGET_LATENCY_MS} ms: {best_rate:,}/s")
    return {
        "config": {"streams": streams, "workers": workers, "event_data_bytes": EVENT_BYTES, **env},
        "steps": steps,
        "best_deliveries_per_second": best_rate,
        "target": {"deliveries_per_second": 50_000, "p99_ms": TARGET_LATENCY_MS},
        "met": best_rate >= 50_000,
    }


# Idle streams the idle scenario opens; the capacity run sets 39000.
IDLE_STREAMS_VARIABLE = "TIDINGS_BENCH_IDLE_STREAMS"
IDLE_TARGET_BYTES = 10 * 1024
# A swarm process's share of the idle streams: it stays under the 20,000 open-files limit.
STREAMS_PER_SWARM = 13_000
# Loopback source addresses each swarm process uses: its own, so ports never run out.
SOURCES_PER_SWARM = 16
# Connections a worker takes: under the 20,000 open-files limit with its own files.
IDLE_WORKER_CONNECTIONS = 19_900


def idle_memory(streams: int | None = None, workers: int = 2, heartbeat: float = 5, **env) -> dict:
    """The workers' RSS growth per idle SSE connection, every one still answered with
    heartbeats and a published event."""
    streams = streams or int(os.environ.get(IDLE_STREAMS_VARIABLE, "4000"))
    swarms = -(-streams // STREAMS_PER_SWARM)
    print(
        f"idle_memory: {workers} gevent workers' RSS before and after {streams} idle SSE "
        f"streams from {swarms} swarm process(es), heartbeat every {heartbeat:g} s; load "
        f"average {os.getloadavg()[0]:.1f}"
    )
    env = {
        "HEARTBEAT_SECONDS": str(heartbeat),
        "WORKER_CONNECTIONS": str(IDLE_WORKER_CONNECTIONS),
        **env,
    }
    with BenchServer(workers=workers, **env) as server:
        pids = server.worker_pids()
        # Warm up: imports, pools and caches settle in every worker before the baseline.
        with SwarmProcess(server.url, "/stream?topics=bench", 100 * workers) as warm:
            assert warm.opened["ready"] == 100 * workers, warm.opened
        time.sleep(1)
        before = [rss_bytes(pid) for pid in pids]
        shares = [streams // swarms + (i < streams % swarms) for i in range(swarms)]
        started = time.monotonic()
        crowd = [
            SwarmProcess(server.url, "/stream?topics=bench", share, 2 + i * SOURCES_PER_SWARM)
            for i, share in enumerate(shares)
        ]
        try:
            opened = [swarm.wait_opened() for swarm in crowd]
            seconds = time.monotonic() - started
            # Every stream's first heartbeat is due by now.
            time.sleep(heartbeat + 1)
            after = [rss_bytes(pid) for pid in pids]
            send_paced(server.url, "/api/publish", bench_event, rate=1, count=1)
            received = [swarm.report(1, timeout=120) for swarm in crowd]
        finally:
            for swarm in crowd:
                swarm.close()
    ready = sum(o["ready"] for o in opened)
    lost = sum(r["streams_lost"] for r in received)
    got_event = sum(r["deliveries"] for r in received)
    heartbeats = min(r["heartbeats_per_stream_min"] for r in received)
    per = (sum(after) - sum(before)) / max(ready, 1)
    print(
        f"  opened {ready} of {streams} in {seconds:.0f} s ({sum(o['failed'] for o in opened)} "
        f"failed: {sorted({e for o in opened for e in o['errors']})[:3]}); held {ready - lost}; "
        f"{got_event} got the published event; heartbeats per stream >= {heartbeats}"
    )
    print(
        f"  workers' RSS {sum(before) / 2**20:.1f} MiB -> {sum(after) / 2**20:.1f} MiB "
        f"({', '.join(f'{a / 2**20:.0f}' for a in after)} MiB each): "
        f"{per / 1024:.2f} KiB per connection; load average {os.getloadavg()[0]:.1f}"
    )
    return {
        "config": {"streams": streams, "workers": workers, "swarm_processes": swarms, **env},
        "opened": opened,
        "open_seconds": round(seconds, 1),
        "held": ready - lost,
        "received_event": got_event,
        "heartbeats_per_stream_min": heartbeats,
        "rss_before_bytes": before,
        "rss_after_bytes": after,
        "bytes_per_connection": round(per),
        "target": {"streams": 39_000, "bytes_per_connection": IDLE_TARGET_BYTES},
        "met": ready == streams >= 39_000
        and lost == 0
        and got_event == ready
        and heartbeats >= 1
        and per <= IDLE_TARGET_BYTES,
    }


def redis_clients(streams: int = 1000, workers: int = 2, **env: str) -> dict:
    """Redis connections held by the workers, without and with `streams` subscribers."""
    print(f"redis_clients: CLIENT LIST with 0 and {streams} SSE streams, {workers} workers")
    with BenchServer(workers=workers, **env) as server:
        client = server.redis_client()
        own = client.client_id()

        def count() -> list[dict]:
            return [c for c in client.client_list() if int(c["id"]) != own]

        send_paced(server.url, "/api/publish", bench_event, rate=50, count=20)
        idle = count()
        with SwarmProcess(server.url, "/stream?topics=bench", streams) as swarm:
            send_paced(server.url, "/api/publish", bench_event, rate=100, count=200)
            swarm.report(200, timeout=30)
            busy = count()
            opened = swarm.opened
        requests.get(server.url + "/healthz", timeout=5)
        client.close()
    per_worker = len(busy) / workers
    print(
        f"  opened {opened['ready']} streams; redis clients: {len(idle)} idle, {len(busy)} with "
        f"streams ({per_worker:g} per worker): {sorted(c['cmd'] for c in busy)}"
    )
    return {
        "config": {"streams": streams, "workers": workers, **env},
        "clients_idle": len(idle),
        "clients_with_streams": len(busy),
        "clients_per_worker": per_worker,
        "commands": sorted(c["cmd"] for c in busy),
        "target": {"clients_per_worker": 3},
        "met": opened["ready"] == streams and per_worker <= 3,
    }


def _gevent_bench(module: str, *args: int) -> list[str]:
    """Run an in-process benchmark in a process of its own (it patches with gevent); return
    the lines it printed, its figures as JSON last."""
    return subprocess.run(
        [sys.executable, "-m", module, *map(str, args)],
        capture_output=True,
        text=True,
        check=True,
        timeout=900,
    ).stdout.splitlines()


def fanout(streams: int = 1000, events: int = 200) -> dict:
    """CPU per delivery of the hub and stream loop alone, one and ten events per wake-up."""
    print(f"fanout: in-process hub -> {streams} Stream loops -> sockets, no HTTP, CPU time")
    runs = []
    for batch in (1, 10):
        run = json.loads(_gevent_bench("bench.fanout", streams, events, batch)[-1])
        print(
            f"  {batch:>2} event(s) per wake-up: {run['cpu_us_per_delivery']} us CPU per "
            f"delivery, collections by generation {run['gc_collections']}"
        )
        runs.append(run)
    return {"config": {"streams": streams, "events": events}, "runs": runs, "met": True}


def policy_cost(streams: int = 1000, events: int = 200, rounds: int = 5) -> dict:
    """Deliveries per CPU-second with streams spread over 8 policy groups, against none."""
    out = _gevent_bench("bench.policy_cost", streams, events, rounds)
    print("\n".join(out[:-1]))
    return json.loads(out[-1])


SCENARIOS = {
    "throughput": throughput,
    "commit_latency": commit_latency,
    "idle_memory": idle_memory,
    "redis_clients": redis_clients,
    "fanout": fanout,
    "policy_cost": policy_cost,
    "slow_clients": slow_clients,
    "slow_readers": slow_readers,
    "scale": scale,
    "long_poll": long_poll,
    "fanout_sweep": fanout_sweep,
    "storm": storm,
    "writes": writes,
}
