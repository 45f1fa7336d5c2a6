"""What monitoring costs: deliveries/s with metrics and the monitor on, and with both off.

`python -m bench.monitor_overhead` alternates the two settings on fresh servers (same
streams, same paced publisher) and writes bench/results/monitor_overhead.json.
"""

import statistics
import sys

from .publisher import bench_event, send_paced
from .results import write
from .server import BenchServer
from .swarm import SwarmProcess

SETTINGS = {
    "on": {"METRICS_ENABLED": "1", "MONITOR_SECONDS": "5"},
    "off": {"METRICS_ENABLED": "0", "MONITOR_SECONDS": "0"},
}


def one_run(setting: str, streams: int, rate: int, count: int, workers: int) -> dict:
    """Publish `count` events at `rate`/s to `streams` subscribers; return the swarm's figures."""
    with BenchServer(workers=workers, **SETTINGS[setting]) as server:
        with SwarmProcess(server.url, "/stream?topics=bench", streams) as swarm:
            send_paced(server.url, "/api/publish", bench_event, rate=50, count=20)
            swarm.report(20, timeout=30)
            writes = send_paced(server.url, "/api/publish", bench_event, rate=rate, count=count)
            received = swarm.report(count, timeout=60)
    return {"setting": setting, "writes": writes, "received": received}


def main(streams: int = 200, rate: int = 300, count: int = 1500, workers: int = 2, rounds: int = 3):
    """Run the rounds, print the ratio, and write the results."""
    print(
        f"monitor overhead: {streams} SSE streams, {count} events at {rate}/s, "
        f"{workers} workers, {rounds} alternating rounds"
    )
    runs = []
    for _ in range(rounds):
        for setting in ("on", "off"):
            run = one_run(setting, streams, rate, count, workers)
            received = run["received"]
            print(
                f"  {setting:>3}: {received['deliveries_per_second']:>7,} deliveries/s, "
                f"p99 {received['latency_ms']['p99']} ms, gaps {received['gaps']}"
            )
            runs.append(run)
    medians = {
        setting: statistics.median(
            r["received"]["deliveries_per_second"] for r in runs if r["setting"] == setting
        )
        for setting in SETTINGS
    }
    ratio = round(medians["on"] / medians["off"], 3) if medians["off"] else None
    print(f"  median on/off: {medians['on']:,} / {medians['off']:,} deliveries/s = {ratio}")
    path = write(
        "monitor_overhead",
        {
            "config": {"streams": streams, "rate": rate, "count": count, "workers": workers},
            "settings": SETTINGS,
            "runs": runs,
            "median_deliveries_per_second": medians,
            "ratio_on_over_off": ratio,
        },
    )
    print(f"  written to {path}")


if __name__ == "__main__":
    main(*map(int, sys.argv[1:]))
