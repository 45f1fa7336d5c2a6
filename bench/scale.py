"""Beyond one node: one node against two on one PostgreSQL and one Redis, the append rate of
N writers on PostgreSQL, and what that means for 100,000 and 1,000,000 dashboards.

On this 2-core box two nodes share the cores that one node had: the figures show that
spreading adds no capacity here (the cores bind), and what a second node costs. The sizing
on paper uses the measured per-connection memory and per-delivery CPU of bench/results/.
"""

import json
import threading
import time
from contextlib import ExitStack
from pathlib import Path

import requests

from feed.embedded import EmbeddedRedis
from tests import postgres
from tests.servers import TidingsServer, free_port

from .publisher import EVENT_BYTES, bench_event, request_ms, run_all, send_paced
from .swarm import SwarmProcess

RESULTS = Path(__file__).parent / "results"
STREAMS = 1000
RATES = (50, 100, 150)
STEP_SECONDS = 6.0
WRITERS = (1, 2, 4, 8)
WRITE_SECONDS = 6.0
# The delivery bound the fan-out figures are held to, as in the throughput scenario.
P99_MS = 100
# Sizing assumptions: each dashboard holds one stream (tabs share it) and gets one event
# every 2 seconds; a node is the 2-core, 2-worker box measured here, with 16 GiB for streams.
EVENTS_PER_DASHBOARD_PER_SECOND = 0.5
NODE_MEMORY_BYTES = 16 * 2**30
NODE_CORES = 2
# Share of a core left for deliveries once HTTP, Redis and the OS have theirs.
DELIVERY_SHARE = 0.7
# Open streams a node holds: 2 workers under the 20,000 open-files limit each.
NODE_STREAMS = 39_000


def _fan_out(nodes: list[TidingsServer], rate: int) -> dict:
    """Publish on the first node at `rate` with STREAMS spread over the nodes; return the
    deliveries per second, p99 and whether every stream got every event once."""
    count = int(rate * STEP_SECONDS)
    share = STREAMS // len(nodes)
    with ExitStack() as stack:
        swarms = [
            stack.enter_context(SwarmProcess(node.url, "/stream?topics=bench", share))
            for node in nodes
        ]
        send_paced(nodes[0].url, "/api/publish", bench_event, rate=20, count=10)
        for swarm in swarms:
            swarm.report(10, timeout=30)
        started = time.monotonic()
        writes = send_paced(nodes[0].url, "/api/publish", bench_event, rate=rate, count=count)
        windows = [swarm.report(count, timeout=30) for swarm in swarms]
        elapsed = time.monotonic() - started
    deliveries = sum(w["deliveries"] for w in windows)
    p99 = max(w["latency_ms"]["p99"] or float("inf") for w in windows)
    exact = all(
        w["per_stream_min"] == w["per_stream_max"] == count and not w["out_of_order_or_repeated"]
        for w in windows
    )
    return {
        "rate": rate,
        "deliveries_per_second": round(deliveries / elapsed),
        "p99_ms": p99,
        "exact": exact,
        "writes": writes["statuses"],
        "healthy": exact and p99 <= P99_MS,
    }


def _append_rate(nodes: list[TidingsServer], writers: int) -> dict:
    """Have `writers` keep-alive clients, spread over the nodes, insert rows for a while;
    return committed writes per second and request latencies."""
    took: list[float] = []
    failed = []
    lock = threading.Lock()
    stop_at = time.monotonic() + WRITE_SECONDS

    def write(node: TidingsServer, n: int) -> None:
        with node.session() as http:
            while time.monotonic() < stop_at:
                body = {"shift": "morning", "note": f"writer {n}", "mood": 3, "store_id": 1}
                began = time.monotonic()
                answer = http.post(f"{node.url}/api/shift_feedback", json=body, timeout=30)
                with lock:
                    (took if answer.status_code == 201 else failed).append(time.monotonic() - began)

    elapsed = run_all(
        [threading.Thread(target=write, args=(nodes[n % len(nodes)], n)) for n in range(writers)]
    )
    return {
        "writers": writers,
        "writes_per_second": round(len(took) / elapsed, 1),
        "request_ms": request_ms(took),
        "failed": len(failed),
    }


def _latest(name: str) -> dict | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def _sizing(best_one_node: int) -> dict:
    """Nodes needed for 100,000 and 1,000,000 open dashboards, by memory and by CPU."""
    idle = _latest("idle_memory") or {}
    fanout = _latest("fanout") or {}
    per_connection = idle.get("bytes_per_connection")
    # One event per wake-up, the dearest case: a dashboard's events rarely come in batches.
    cpu_us = max((run["cpu_us_per_delivery"] for run in fanout.get("runs", [])), default=None)
    plans = {}
    for dashboards in (100_000, 1_000_000):
        deliveries = dashboards * EVENTS_PER_DASHBOARD_PER_SECOND
        plan = {
            "deliveries_per_second": deliveries,
            "nodes_for_connections": -(-dashboards // NODE_STREAMS),
        }
        if per_connection:
            plan["nodes_for_memory"] = -(-dashboards * per_connection // NODE_MEMORY_BYTES)
        if cpu_us:
            per_node = NODE_CORES * DELIVERY_SHARE * 1e6 / cpu_us
            plan["deliveries_per_node_by_cpu"] = round(per_node)
            plan["nodes_for_cpu"] = -(-deliveries // per_node)
        if best_one_node:
            # One worker per core, each at the rate one worker held over HTTP here.
            plan["nodes_at_measured_rate"] = -(-deliveries // (best_one_node * NODE_CORES))
        plans[str(dashboards)] = plan
    return {
        "assumptions": {
            "events_per_dashboard_per_second": EVENTS_PER_DASHBOARD_PER_SECOND,
            "node_memory_for_streams_bytes": NODE_MEMORY_BYTES,
            "node_cores": NODE_CORES,
            "node_streams": NODE_STREAMS,
            "delivery_share_of_a_core": DELIVERY_SHARE,
            "bytes_per_connection": per_connection,
            "cpu_us_per_delivery": cpu_us,
        },
        "plans": plans,
        "redis": (
            "Each worker holds one subscription, so Redis sends every event once per worker: "
            "fan-in is events/s x workers messages, far below a single Redis's ~1M messages/s "
            "for tens of nodes; the database's append lock binds first (below)."
        ),
    }


def postgres_and_redis(stack: ExitStack) -> tuple[postgres.PostgresServer, EmbeddedRedis]:
    """Start a private PostgreSQL cluster and a Redis beside it, both stopped with `stack`."""
    database = postgres.PostgresServer(free_port()).start()
    stack.callback(database.stop)
    redis = EmbeddedRedis(database.directory / "redis", port=free_port())
    redis.start()
    stack.callback(redis.stop)
    return database, redis


def scale(**env: str) -> dict:
    """One node against two on one PostgreSQL and Redis; the append rate of N writers."""
    print(
        f"scale: {STREAMS} SSE streams over 1 and 2 nodes (1 gevent worker each) on one "
        f"PostgreSQL and one Redis, {EVENT_BYTES}-byte events via POST /api/publish; then "
        f"{WRITERS} writers on PostgreSQL. 2 cores: both nodes share them."
    )
    with ExitStack() as stack:
        database, redis = postgres_and_redis(stack)
        url = database.create_database("bench")
        first = TidingsServer(url, redis.url, workers=1, TOPICS="bench", **env).start(timeout=30)
        stack.callback(first.stop)
        second = TidingsServer(
            url, redis.url, workers=1, token=first.token, TOPICS="bench", **env
        ).start(timeout=30)
        stack.callback(second.stop)
        fan_out = {}
        for name, nodes in (("one_node", [first]), ("two_nodes", [first, second])):
            steps = []
            for rate in RATES:
                step = _fan_out(nodes, rate)
                print(f"  {name}: {rate} events/s -> {step}")
                steps.append(step)
            best = max((s["deliveries_per_second"] for s in steps if s["healthy"]), default=0)
            fan_out[name] = {"steps": steps, "best_deliveries_per_second": best}
        appends = []
        for writers in WRITERS:
            figures = _append_rate([first, second], writers)
            print(f"  append on PostgreSQL, 2 nodes: {figures}")
            appends.append(figures)
        requests.get(first.url + "/healthz", timeout=5)
    sizing = _sizing(fan_out["one_node"]["best_deliveries_per_second"])
    print(f"  sizing: {json.dumps(sizing['plans'])}")
    return {
        "config": {"streams": STREAMS, "rates": RATES, "writers": WRITERS, **env},
        "fan_out": fan_out,
        "append_on_postgres": appends,
        "sizing": sizing,
        "met": all(not a["failed"] for a in appends),
    }
