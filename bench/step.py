"""One measured step: write at a rate, and gather what the publisher, swarm and workers saw."""

import time

from .publisher import send_paced
from .server import busy_cores, cpu_seconds

# The p99 a step must stay under to count, unless a scenario sets its own.
TARGET_LATENCY_MS = 100


def measure(
    server, swarm, path: str, body, rate: int, seconds: float, connections: int = 4
) -> dict:
    """Write at `rate` for `seconds` from `connections` keep-alive connections to a server
    (anything with `url` and `worker_pids()`); return the publisher's, the swarm's and the
    workers' figures for that window."""
    count = int(rate * seconds)
    pids = server.worker_pids()
    cpu = [cpu_seconds(pid) for pid in pids]
    machine = busy_cores()
    started = time.monotonic()
    writes = send_paced(server.url, path, body, rate=rate, count=count, connections=connections)
    received = swarm.report(count, timeout=30)
    elapsed = time.monotonic() - started
    used = [cpu_seconds(pid) - before for pid, before in zip(pids, cpu, strict=True)]
    return {
        "rate": rate,
        "events": count,
        "writes": writes,
        "received": received,
        "worker_cpu_share": [round(u / elapsed, 2) for u in used],
        # Busy cores on the whole machine (of 2): the swarm, publisher, Redis and anyone else.
        "machine_busy_cores": round((busy_cores() - machine) / elapsed, 2),
        "worker_cpu_us_per_delivery": round(sum(used) / max(received["deliveries"], 1) * 1e6, 2),
    }


def print_step(step: dict, streams: int) -> None:
    """Print a step's figures on one line."""
    r, writes = step["received"], step["writes"]
    lat = r["latency_ms"]
    print(
        f"  {step['rate']:>4} events/s x {streams} streams: {r['deliveries_per_second']:>7,} "
        f"deliveries/s  p50 {lat['p50']} ms  p99 {lat['p99']} ms  max {lat['max']} ms  "
        f"missing {step['events'] * streams - r['deliveries']}  "
        f"worker cpu {step['worker_cpu_share']} ({step['worker_cpu_us_per_delivery']} us per "
        f"delivery)  machine busy {step['machine_busy_cores']} cores  "
        f"swarm cpu {r['swarm_cpu_seconds']} s  "
        f"writes {writes['statuses']} late<= {writes['max_late_ms']} ms"
    )


def healthy(step: dict, streams: int, p99_ms: float = TARGET_LATENCY_MS) -> bool:
    """Tell whether every stream got every event once, in order, within `p99_ms` at p99."""
    r = step["received"]
    # Every stream got every event exactly once (counted, and ids never stepped back).
    return (
        r["per_stream_min"] == r["per_stream_max"] == step["events"]
        and r["deliveries"] == step["events"] * streams
        and r["out_of_order_or_repeated"] == 0
        and r["latency_ms"]["p99"] is not None
        and r["latency_ms"]["p99"] <= p99_ms
    )
