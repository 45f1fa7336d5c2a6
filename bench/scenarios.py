"""The core scenarios: each starts its own server and swarm, prints and returns figures."""

import json
import subprocess
import sys
import time

import requests

from .fanout_sweep import fanout_sweep
from .publisher import EVENT_BYTES, bench_event, feedback_row, send_paced
from .server import BenchServer, rss_bytes
from .slow_clients import slow_clients
from .step import TARGET_LATENCY_MS, healthy, measure, print_step
from .swarm import SwarmProcess


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


def commit_latency(
    streams: int = 1000, rate: int = 100, seconds: float = 10, workers: int = 1, **env: str
) -> dict:
    """HTTP write → event received, with `streams` subscribers of the written table."""
    print(
        f"commit_latency: {rate} POST /api/shift_feedback per second, {streams} SSE streams on "
        f"that table, {workers} gevent worker(s)"
    )
    with BenchServer(workers=workers, **env) as server:
        with SwarmProcess(server.url, "/stream?topics=shift_feedback", streams) as swarm:
            print(f"  opened: {swarm.opened}")
            send_paced(server.url, "/api/shift_feedback", feedback_row, rate=50, count=20)
            swarm.report(20, timeout=30)
            step = measure(server, swarm, "/api/shift_feedback", feedback_row, rate, seconds)
            print_step(step, streams)
    met = healthy(step, streams)
    return {
        "config": {"streams": streams, "workers": workers, "rate": rate, **env},
        "step": step,
        "target": {"p99_ms": TARGET_LATENCY_MS},
        "met": met,
    }


def idle_memory(streams: int = 5000, **env: str) -> dict:
    """The worker's RSS growth per idle SSE connection."""
    print(f"idle_memory: worker RSS before and after {streams} idle SSE streams, 1 gevent worker")
    with BenchServer(workers=1, **env) as server:
        (pid,) = server.worker_pids()
        # Warm up: imports, pools and caches settle before the baseline is taken.
        with SwarmProcess(server.url, "/stream?topics=bench", 200) as warm:
            assert warm.opened["ready"] == 200, warm.opened
        time.sleep(1)
        before = rss_bytes(pid)
        with SwarmProcess(server.url, "/stream?topics=bench", streams) as swarm:
            time.sleep(2)
            after = rss_bytes(pid)
            opened = swarm.opened
    per = (after - before) / max(opened["ready"], 1)
    print(
        f"  opened {opened}; worker RSS {before / 2**20:.1f} MiB -> {after / 2**20:.1f} MiB: "
        f"{per / 1024:.1f} KiB per connection"
    )
    return {
        "config": {"streams": streams, "workers": 1, **env},
        "opened": opened,
        "rss_before_bytes": before,
        "rss_after_bytes": after,
        "bytes_per_connection": round(per),
        "target": {"bytes_per_connection": 20 * 1024},
        "met": opened["ready"] == streams and per <= 20 * 1024,
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
    "fanout_sweep": fanout_sweep,
}
