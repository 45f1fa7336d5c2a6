"""`python -m bench.report`: write bench/RESULTS.md and the fan-out plot from the results."""

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402

from .results import RESULTS  # noqa: E402

REPORT = RESULTS.parent / "RESULTS.md"
PLOT = RESULTS / "fanout_sweep.png"
# Shown apart (the machine, the configuration) or too detailed for a headline: per-step and
# per-stream lists, the publisher's own figures.
NOT_HEADLINES = {
    "scenario", "timestamp", "machine", "config", "steps", "runs", "errors", "commands", "writes",
}  # fmt: skip


def headlines(record: dict, prefix: str = "") -> list[tuple[str, object]]:
    """Return a record's headline figures: its scalars and short lists, nested keys dotted."""
    rows = []
    for key, value in record.items():
        if key in NOT_HEADLINES:
            continue
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            rows += headlines(value, f"{name}.")
        elif not isinstance(value, list) or (
            len(value) <= 8 and all(not isinstance(v, dict | list) for v in value)
        ):
            rows.append((name, value))
    return rows


def _machine(record: dict) -> str:
    machine = record.get("machine")
    if not isinstance(machine, dict):
        return f"machine: {machine or 'not recorded'}"
    load = ", ".join(f"{v:.2f}" for v in machine["load_average"])
    dirty = " (uncommitted changes)" if machine.get("dirty") else ""
    return (
        f"commit `{machine['commit']}`{dirty}, {machine['cpu']} × {machine['cores']} cores, "
        f"Python {machine['python']}, load average {load}"
    )


def _steps(steps: list[dict]) -> list[str]:
    lines = [
        "| events/s | published/s | deliveries/s | p50 ms | p99 ms | missed by the worst stream "
        "| out of order | healthy |",
        "|---:|---:|---:|---:|---:|---:|---:|:---:|",
    ]
    for step in steps:
        r = step["received"]
        verdict = {True: "yes", False: "no"}.get(step.get("healthy"), "–")
        lines.append(
            f"| {step['rate']} | {step['writes']['achieved_per_second']} | "
            f"{r['deliveries_per_second']:,} | {r['latency_ms']['p50']} | "
            f"{r['latency_ms']['p99']} | {step['events'] - r['per_stream_min']} "
            f"| {r['out_of_order_or_repeated']} | {verdict} |"
        )
    return lines


def _runs(runs: list[dict]) -> list[str]:
    """Return a table of runs, one row each, a column for each headline figure."""
    rows = [dict(headlines(run)) for run in runs]
    columns = list(dict.fromkeys(key for row in rows for key in row))
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(json.dumps(row.get(c, "")) for c in columns) + " |" for row in rows]
    return lines


def _latency(record: dict) -> list[str]:
    """Return commit → deliver, every round of each server, and the median rounds' verdict."""
    lines = [
        "| server | round | writes/s | deliveries/s | p50 ms | p90 ms | p99 ms | max ms | "
        "worker CPU share | µs CPU per delivery |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, rounds in record["rounds"].items():
        for number, step in enumerate(rounds, start=1):
            r, lat = step["received"], step["received"]["latency_ms"]
            cpu, per_delivery = step["worker_cpu_share"], step["worker_cpu_us_per_delivery"]
            lines.append(
                f"| {name} | {number} | {step['writes']['achieved_per_second']} | "
                f"{r['deliveries_per_second']:,} | {lat['p50']} | {lat['p90']} | {lat['p99']} | "
                f"{lat['max']} | {cpu} | {per_delivery} |"
            )
    ours, floor = (record[name]["received"]["latency_ms"] for name in ("tidings", "ceiling"))
    target = record["target"]
    return lines + [
        "",
        f"Median rounds: Tidings p50 {ours['p50']} ms, p99 {ours['p99']} ms; the ceiling (the "
        f"harness's floor) p50 {floor['p50']} ms, p99 {floor['p99']} ms. Target p50 ≤ "
        f"{target['p50_ms']} ms, p99 ≤ {target['p99_ms']} ms: "
        f"{'met' if record['met'] else 'not met'}.",
    ]


def _slow_readers(record: dict) -> list[str]:
    """Return the slow-readers run's two phases side by side: the other readers' latency and
    the workers' RSS."""
    lines = [
        "| phase | load average (start, end) | others' p50 ms, by window | others' p99 ms, by "
        "window | workers' RSS "
        "start → peak → end, MiB | total slope over the second half, MiB/min | workers' CPU ms "
        "per update |",
        "|---|---|---|---|---|---:|---:|",
    ]
    for name, label in (("phase_a", "A"), ("phase_b", "B"), ("phase_a_after", "A′")):
        phase = record[name]
        latency = phase["latency_ms"][0]
        workers = "; ".join(
            f"{w['start_mib']} → {w['peak_mib']} → {w['end_mib']}" for w in phase["rss"]["workers"]
        )
        slope = phase["rss"]["total"]["slope_second_half_mib_per_min"]
        lines.append(
            f"| {label} | {phase['load_average']} | {latency['p50']} | "
            f"{latency['p99']} | {workers} | {slope} | {phase['worker_cpu_ms_per_event']} |"
        )
    return lines


def _sweep(record: dict) -> list[str]:
    rate = 100
    lines = [
        f"| server | best deliveries/s (p99 ≤ {record['target']['p99_ms']} ms, all delivered "
        f"once, in order) | at events/s | p99 ms | p99 ms at {rate} events/s | "
        f"deliveries/s at {rate} events/s | best deliveries/s keeping up (p99 ≤ "
        f"{record['config']['keeping_up_p99_ms']} ms) | at events/s | p99 ms |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, server in record["servers"].items():
        lines.append(
            f"| {name} | {server['best_deliveries_per_second']:,} | {server['best_rate']} | "
            f"{server['best_p99_ms']} | {server[f'p99_ms_at_{rate}']} | "
            f"{server[f'deliveries_per_second_at_{rate}']} | "
            f"{server['keeping_up_deliveries_per_second']:,} | {server['keeping_up_rate']} | "
            f"{server['keeping_up_p99_ms']} |"
        )
    target = record["target"]
    lines += [
        "",
        f"Tidings / ceiling: **{record['tidings_of_ceiling']}** (target ≥ {target['of_ceiling']}); "
        f"Tidings / flask-sse: **{record['tidings_of_flask_sse']}**; keeping up, Tidings / "
        f"ceiling {record.get('keeping_up_tidings_of_ceiling')} and Tidings / flask-sse "
        f"{record.get('keeping_up_tidings_of_flask_sse')}; target "
        f"≥ {target['deliveries_per_second']:,} deliveries/s: "
        f"{'met' if record['met'] else 'not met'}. Load average before the sweep: "
        + ", ".join(f"{v:.2f}" for v in record["load_average_before"])
        + ".",
        "",
        f"![fan-out sweep](results/{PLOT.name})",
    ]
    for name, server in record["servers"].items():
        lines += ["", f"{name}, step by step:", "", *_steps(server["steps"])]
    return lines


def _storm(record: dict) -> list[str]:
    """Return the reconnect storm's table: one row per server, and the ratio."""
    lines = [
        "| server | caught up | seconds until all caught up (exactly once, in order) | wrong or "
        "repeated | failed attempts | retries | slowest connect s | server CPU s | live p50 ms "
        "| live p99 ms | live events missed | load average before |",
        "|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, server in record["servers"].items():
        live = server["live"]
        lines.append(
            f"| {name} | {server['caught_up']:,} of {server['clients']:,} | {server['seconds']} | "
            f"{server['wrong_or_repeated']} | {server['failed_attempts'] or 'none'} | "
            f"{server['retries']} | {server['connect_seconds_max']} | "
            f"{server['server_cpu_seconds']} | {live['p50_ms']} | {live['p99_ms']} | "
            f"{live['missed_by_the_worst']} of {live['events']} | {server['load_average_before']} |"
        )
    target = record["target"]
    nice = {server["live"].get("nice") for server in record["servers"].values()}
    priority = (
        f"Live clients and their publisher at nice {nice.pop()}, above the storm's clients."
        if len(nice) == 1 and None not in nice
        else "Live clients at the storm's CPU priority."
    )
    return lines + [
        "",
        priority,
        "",
        f"Tidings / ceiling time: **{record['tidings_time_of_ceiling']}**; target ≤ "
        f"{target['seconds']} s, no failed attempt, live p99 ≤ {target['live_p99_ms']} ms: "
        f"{'met' if record['met'] else 'not met'}.",
    ]


def _writes(record: dict) -> list[str]:
    """Return a table of writes/s and request times, Tidings beside the plain app."""
    lines = [
        "| database | workers | Tidings writes/s | p50 ms | p99 ms | plain writes/s | p50 ms "
        "| p99 ms | Tidings / plain | CPU ms/write, Tidings | plain | Tidings / plain per "
        "CPU-second |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for database in ("sqlite", "postgresql"):
        figures = record[database]
        for workers, ours in figures["tidings"].items():
            theirs = figures["plain"][workers]
            lines.append(
                f"| {database} | {workers} | {ours['writes_per_second']} | "
                f"{ours['request_ms']['p50']} | {ours['request_ms']['p99']} | "
                f"{theirs['writes_per_second']} | {theirs['request_ms']['p50']} | "
                f"{theirs['request_ms']['p99']} | {figures[f'tidings_of_plain_{workers}w']} | "
                f"{ours['cpu_ms_per_write']} | {theirs['cpu_ms_per_write']} | "
                f"{figures[f'tidings_of_plain_per_cpu_second_{workers}w']} |"
            )
    return lines


def plot(record: dict) -> None:
    """Draw deliveries/s and p99 against the publish rate, one line per server."""
    figure, (rate_axis, p99_axis) = plt.subplots(1, 2, figsize=(11, 4.2))
    for name, server in record["servers"].items():
        steps = server["steps"]
        rates = [s["rate"] for s in steps]
        rate_axis.plot(rates, [s["received"]["deliveries_per_second"] for s in steps], "o-",
                       label=name)  # fmt: skip
        p99_axis.plot(rates, [s["received"]["latency_ms"]["p99"] for s in steps], "o-",
                      label=name)  # fmt: skip
    streams = record["config"]["streams"]
    rate_axis.set(xlabel="published events/s", ylabel="deliveries/s",
                  title=f"deliveries to {streams:,} SSE streams")  # fmt: skip
    p99_axis.axhline(record["target"]["p99_ms"], color="grey", linestyle="--", linewidth=1)
    p99_axis.set(xlabel="published events/s", ylabel="p99 latency, ms (log)", yscale="log",
                 title="publish → delivery p99")  # fmt: skip
    for axis in (rate_axis, p99_axis):
        axis.grid(alpha=0.3)
        axis.legend()
    figure.tight_layout()
    figure.savefig(PLOT, dpi=110)
    plt.close(figure)


def write() -> Path:
    """Write RESULTS.md (and the plot, when the sweep has run); return its path."""
    records = {p.stem: json.loads(p.read_text()) for p in sorted(RESULTS.glob("*.json"))}
    lines = [
        "# Benchmark results",
        "",
        "Written by `python -m bench.report` (`make bench`) from `bench/results/*.json`; each "
        "scenario's latest run, on the machine and commit named under it.",
    ]
    for name, record in records.items():
        config = ", ".join(f"{k} {v}" for k, v in record.get("config", {}).items())
        lines += ["", f"## {name}", "", f"{record.get('timestamp', 'time not recorded')}; "
                  f"{_machine(record)}.", ""]  # fmt: skip
        if config:
            lines += [f"Configuration: {config}.", ""]
        if name == "fanout_sweep":
            plot(record)
            lines += _sweep(record)
            continue
        if name == "storm":
            lines += _storm(record)
            continue
        if name == "commit_latency":
            lines += _latency(record)
            continue
        shown = record
        if name == "writes":
            lines += [*_writes(record), ""]
            shown = {k: v for k, v in record.items() if k not in ("sqlite", "postgresql")}
        lines += ["| figure | value |", "|---|---|"]
        lines += [f"| {key} | {json.dumps(value)} |" for key, value in headlines(shown)]
        if "steps" in record:
            lines += ["", *_steps(record["steps"])]
        if "runs" in record:
            lines += ["", *_runs(record["runs"])]
        if name == "slow_readers":
            lines += ["", *_slow_readers(record)]
    REPORT.write_text("\n".join(lines) + "\n")
    return REPORT


if __name__ == "__main__":
    print(f"wrote {write().relative_to(RESULTS.parent.parent)}")
