"""Slow readers: 10 % of the streams read 1 KB a second, and the others do not notice.

One server, two phases of the same writes: PATCHes through the HTTP API that update a few
rows of one table over and over (so a lagging queue can be conflated), and a trickle of
updates to a second table.

- Phase A: `streams` SSE readers of the first table; their latency and the workers' RSS.
- Phase B: `slow` of those readers replaced by raw sockets with a small receive buffer that
  read 1 KB a second: most subscribed to the first table at priority `low` and to the second
  at `high` (the hub conflates their queue), `exact` of them to both at `high` (never
  conflated: caught up from the log). The others' latency (against phase A, window by
  window), the workers' RSS over time and its slope once the slow streams' buffers filled,
  the workers' CPU per update, and what the hub did about the slow ones (/metrics).

- Phase A again, with the slow readers gone and 100 normal ones back: the control on both
  sides of B.

After B the slow readers read as fast as they can, and each must hold every row's latest
state (applied in order, it equals a snapshot), every event of its `high` topics once and
in order, and fewer events of its `low` topic than were written.

Most of what a slow reader gets in phase B went into the kernel's buffers in its first
seconds (STREAM_SEND_BUFFER, doubled by Linux, and the reader's receive buffer), before its
queue in the hub filled: phase B lasts long enough for the queue to fill and conflate
several times after that.
"""

import os
import threading
import time
from collections import defaultdict
from statistics import median

import requests

from tests.servers import bearer

from .publisher import feedback_row, send_paced
from .server import BenchServer, busy_cores, cpu_seconds
from .slow_clients import Laggard, RssSampler, in_order_once, slow_consumer_actions
from .swarm import SwarmProcess, every_event_once

# The busy table whose few rows change over and over, and the one that changes now and then.
BUSY, TRICKLE = "shift_feedback", "bread_types"
NORMAL_PATH = f"/stream?topics={BUSY}"
# What the slow readers subscribe to: most take the busy table at `low` (conflated first)
# and the trickle at `high`; a few take both at `high`, so they are caught up from the log.
MIXED = {BUSY: "low", TRICKLE: "high"}
EXACT = {BUSY: "high", TRICKLE: "high"}
# How long the slow readers may take to read what they were sent once they read at speed.
DRAIN_SECONDS = 120
# Reading "as fast as it can".
FAST = 1 << 30
MIB = 2**20
# Updates written before any stream opens, more than RING_EVENTS's default 4096: each worker's
# ring of recent events is full before phase A, so its filling is not taken for growth.
PREFILL = (500, 9)
# One measured window of writes: each phase's latency is reported window by window.
WINDOW_SECONDS = 20
# Flat memory: after the first fill the workers' RSS grows by at most this share of what the
# slow readers' queues would grow by unbounded (phase A, with no slow reader, moves by a few
# MiB a minute over its second half on a busy machine: a finer bound would measure noise).
TARGET = {"others_p99_ratio": 1.25, "rss_slope_of_unbounded": 0.05}


def _snapshot(url: str, table: str) -> dict[int, dict]:
    """Return a table's rows by id."""
    body = requests.get(f"{url}/api/{table}?limit=1000", headers=bearer(url), timeout=30).json()
    return {row["id"]: row for row in body["rows"]}


def _seed(url: str, rows: int, trickle_rows: int) -> tuple[list[int], list[int]]:
    """Insert the rows the phases update; return the ids of each table's."""
    send_paced(url, f"/api/{BUSY}", feedback_row, rate=200, count=rows)
    names = iter(range(trickle_rows))
    send_paced(
        url, f"/api/{TRICKLE}", lambda _: {"name": f"bench-{next(names)}", "price": 1},
        rate=200, count=trickle_rows, connections=1,
    )  # fmt: skip
    return sorted(_snapshot(url, BUSY)), sorted(_snapshot(url, TRICKLE))


def _price(sent: str) -> dict:
    """Return a bread_types change that differs from the row's last (a new price each 10 ms)."""
    return {"price": round(float(sent) % 1e6, 2)}


def _write(url: str, ids: tuple[list[int], list[int]], rate: int, trickle: int, seconds: float):
    """Update the rows of both tables round robin for `seconds`, the busy one at `rate` a
    second, the other at `trickle`; return both writers' figures."""
    busy, few = ids
    figures = {}

    def writer(table: str, rows: list[int], body, per_second: int) -> None:
        figures[table] = send_paced(
            url, lambda n: f"/api/{table}/{rows[n % len(rows)]}", body,
            rate=per_second, count=int(per_second * seconds), method="PATCH",
            connections=4 if table == BUSY else 1,
        )  # fmt: skip

    thread = threading.Thread(target=writer, args=(TRICKLE, few, _price, trickle))
    thread.start()
    writer(BUSY, busy, lambda sent: {"note": sent}, rate)
    thread.join()
    return figures


def _slope(times: list[float], samples: list[int]) -> float:
    """Return the least-squares growth of samples in MiB a minute."""
    n = len(times)
    if n < 2:
        return 0.0
    mean_t, mean_s = sum(times) / n, sum(samples) / n
    spread = sum((t - mean_t) ** 2 for t in times)
    rise = sum((t - mean_t) * (s - mean_s) for t, s in zip(times, samples, strict=True))
    return rise / spread * 60 / MIB if spread else 0.0


def _rss(samplers: list[RssSampler]) -> dict:
    """Summarise the workers' RSS over a phase: each one's start, peak and end, a coarse
    series, and the slope over the phase's second half (after the first fill)."""
    start = samplers[0].times[0]
    workers = []
    for sampler in samplers:
        half = sampler.times[0] + (sampler.times[-1] - sampler.times[0]) / 2
        late = [at for at, t in enumerate(sampler.times) if t >= half]
        workers.append(
            {
                "start_mib": round(sampler.samples[0] / MIB, 1),
                "peak_mib": round(max(sampler.samples) / MIB, 1),
                "end_mib": round(sampler.samples[-1] / MIB, 1),
                "slope_second_half_mib_per_min": round(
                    _slope([sampler.times[i] for i in late], [sampler.samples[i] for i in late]),
                    2,
                ),
                # Every 10th sample: (seconds into the phase, MiB).
                "series": [
                    (round(t - start), round(s / MIB, 1))
                    for t, s in list(zip(sampler.times, sampler.samples, strict=True))[::10]
                ],
            }
        )
    total = {
        key: round(sum(w[key] for w in workers), 2)
        for key in ("start_mib", "end_mib", "slope_second_half_mib_per_min")
    }
    total["peak_mib"] = round(sum(max(s.samples) for s in samplers) / MIB, 1)
    return {"workers": workers, "total": total}


def _phase(server, ids, rate: int, trickle_rate: int, seconds: float, swarms: list) -> dict:
    """Write for `seconds`, in windows of WINDOW_SECONDS, while sampling the workers' RSS;
    return the writers', swarms' and workers' figures, each swarm's latency window by window."""
    # A few events first, so every stream of a swarm just opened is live when timing starts.
    _write(server.url, ids, 20, 1, 1)
    for swarm in swarms:
        swarm.report(20, timeout=30)
    load = os.getloadavg()[0]
    machine = busy_cores()
    started = time.monotonic()
    pids = server.worker_pids()
    cpu = sum(map(cpu_seconds, pids))
    own = cpu_seconds(os.getpid())
    samplers = [RssSampler(pid, interval=1) for pid in pids]
    windows = []
    for _ in range(max(1, round(seconds / WINDOW_SECONDS))):
        writes = _write(server.url, ids, rate, trickle_rate, WINDOW_SECONDS)
        expected = writes[BUSY]["writes"]
        received = [swarm.report(expected, timeout=60) for swarm in swarms]
        windows.append({"writes": writes, "received": received})
    for sampler in samplers:
        sampler.stop()
    cpu = sum(map(cpu_seconds, pids)) - cpu
    own = cpu_seconds(os.getpid()) - own
    written = {
        topic: sum(w["writes"][topic]["writes"] for w in windows) for topic in (BUSY, TRICKLE)
    }
    return {
        "seconds": seconds,
        "load_average": [round(load, 2), round(os.getloadavg()[0], 2)],
        "machine_busy_cores": round((busy_cores() - machine) / (time.monotonic() - started), 2),
        # The workers' CPU for each update of the busy table, which has `streams` subscribers
        # in both phases: what serving slow ones costs shows here even when the machine's
        # other load blurs the latency.
        "worker_cpu_seconds": round(cpu, 2),
        "worker_cpu_ms_per_event": round(cpu / max(written[BUSY], 1) * 1000, 2),
        # This process's: the publisher's threads and, in phase B, the slow readers'.
        "bench_cpu_seconds": round(own, 2),
        "written": written,
        # Each swarm's p50 and p99, window by window.
        "latency_ms": [
            {q: [w["received"][at]["latency_ms"][q] for w in windows] for q in ("p50", "p99")}
            for at in range(len(swarms))
        ],
        "every_event_once": [
            all(every_event_once(w["received"][at], w["writes"][BUSY]["writes"]) for w in windows)
            for at in range(len(swarms))
        ],
        "windows": windows,
        "rss": _rss(samplers),
    }


def _check(events: list[dict], final: dict, start: dict, priorities: dict[str, str]) -> dict:
    """Check what one slow reader got against the tables' final state: ids in order, each
    row's versions ascending, every row's latest state, and each `high` topic's every event."""
    state: dict[tuple, dict] = {}
    versions: dict[tuple, list[int]] = defaultdict(list)
    for event in events:
        key = (event["topic"], event["pk"])
        state[key] = event["row"]
        versions[key].append(event["version"])
    return {
        "in_order_once": in_order_once([event["id"] for event in events]),
        "versions_ascend": all(in_order_once(v) for v in versions.values()),
        "latest_state": all(
            state.get((topic, pk)) == row
            for topic, rows in final.items()
            for pk, row in rows.items()
        ),
        "events": {
            topic: sum(len(v) for (t, _), v in versions.items() if t == topic) for topic in final
        },
        "every_event": {
            topic: all(
                versions[(topic, pk)] == list(range(start[topic][pk] + 1, row["version"] + 1))
                for pk, row in final[topic].items()
            )
            for topic in final
            if priorities[topic] == "high"
        },
    }


def _versions(url: str) -> dict[str, dict[int, int]]:
    """Return each table's row versions by id."""
    return {
        topic: {pk: row["version"] for pk, row in _snapshot(url, topic).items()}
        for topic in (BUSY, TRICKLE)
    }


def _drain(readers: list[tuple[Laggard, dict]], url: str, start: dict) -> tuple:
    """Let the slow readers read at speed until each holds the final state; return their
    checks, how long it took, and the final state."""
    final = {topic: _snapshot(url, topic) for topic in (BUSY, TRICKLE)}
    for laggard, _ in readers:
        laggard.reads_per_second = FAST
    started = time.monotonic()
    checks: list[dict | None] = [None] * len(readers)
    while time.monotonic() - started < DRAIN_SECONDS and None in checks:
        time.sleep(2)
        for at, (laggard, priorities) in enumerate(readers):
            if checks[at] is None:
                check = _check(laggard.changes(), final, start, priorities)
                checks[at] = check if check["latest_state"] else None
    seconds = time.monotonic() - started
    checks = [
        check or _check(laggard.changes(), final, start, priorities)
        for check, (laggard, priorities) in zip(checks, readers, strict=True)
    ]
    return checks, seconds, final


def _summary(checks: list[dict], priorities: dict[str, str], written: dict[str, int]) -> dict:
    """Sum up the checks of the slow readers of one subscription."""
    return {
        "readers": len(checks),
        "priorities": priorities,
        "in_order_once": all(c["in_order_once"] for c in checks),
        "versions_ascend": all(c["versions_ascend"] for c in checks),
        "latest_state": all(c["latest_state"] for c in checks),
        **{
            f"{topic}.{key}": value
            for topic in priorities
            for key, value in (
                ("written", written[topic]),
                ("events_min", min(c["events"][topic] for c in checks)),
                ("events_max", max(c["events"][topic] for c in checks)),
                ("every_event", all(c["every_event"].get(topic, False) for c in checks)),
            )
        },
    }


def _kept_promises(group: dict) -> bool:
    """Tell whether a group of slow readers got what its priorities promise: `high` topics
    every event, `low` ones conflated, every row's latest state in the end."""
    return (
        group["in_order_once"]
        and group["versions_ascend"]
        and group["latest_state"]
        and all(
            group[f"{topic}.every_event"]
            if priority == "high"
            else group[f"{topic}.events_max"] < group[f"{topic}.written"]
            for topic, priority in group["priorities"].items()
        )
    )


def _path(priorities: dict[str, str]) -> str:
    """Return the stream path of a subscription to these topics at these priorities."""
    return f"/stream?topics={','.join(priorities)}&" + "&".join(
        f"{topic}.priority={priority}" for topic, priority in priorities.items()
    )


def _print_group(name: str, group: dict) -> None:
    topics = "; ".join(
        f"{topic} ({priority}) {group[f'{topic}.events_min']}..{group[f'{topic}.events_max']} "
        f"of {group[f'{topic}.written']} events, every one: {group[f'{topic}.every_event']}"
        for topic, priority in group["priorities"].items()
    )
    print(
        f"  {group['readers']} {name} slow readers: {topics}; latest state of every row: "
        f"{group['latest_state']}; ids ascend: {group['in_order_once']}"
    )


def _latency(latency: dict) -> str:
    return f"p50 {latency['p50']} ms, p99 {latency['p99']} ms by window"


def _print_phase(name: str, phase: dict, streams: list[str]) -> None:
    total = phase["rss"]["total"]
    workers = ", ".join(
        f"{w['start_mib']}->{w['peak_mib']}->{w['end_mib']}" for w in phase["rss"]["workers"]
    )
    latency = zip(streams, phase["latency_ms"], strict=True)
    lines = "; ".join(f"{name}: {_latency(r)}" for name, r in latency)
    written = phase["written"]
    print(
        f"  phase {name} ({phase['seconds']:g} s, load average {phase['load_average']}, machine "
        f"busy {phase['machine_busy_cores']} cores, workers' CPU {phase['worker_cpu_seconds']} s, "
        f"{phase['worker_cpu_ms_per_event']} ms per {BUSY} update, this process's CPU "
        f"{phase['bench_cpu_seconds']} s): {lines}\n"
        f"    written: {written}; every event once, in order: {phase['every_event_once']}\n"
        f"    workers' RSS start->peak->end {workers} MiB; total {total['start_mib']} -> peak "
        f"{total['peak_mib']} -> {total['end_mib']} MiB, slope over the second half "
        f"{total['slope_second_half_mib_per_min']} MiB/min"
    )


def slow_readers(
    streams: int = 1000,
    slow: int = 100,
    exact: int = 10,
    rate: int = 40,
    trickle_rate: int = 1,
    rows: int = 100,
    trickle_rows: int = 10,
    seconds_a: float = 60,
    seconds_b: float = 120,
    workers: int = 2,
    slow_bytes_per_second: int = 1024,
    **env: str,
) -> dict:
    """The others' latency and the workers' memory while a tenth of the readers read 1 KB/s;
    what conflation and priority gave the slow ones."""
    others = streams - slow
    print(
        f"slow_readers: {streams} SSE readers of {BUSY} on {workers} gevent workers, then {slow} "
        f"of them replaced by raw sockets reading {slow_bytes_per_second} B/s ({slow - exact} "
        f"with priorities {MIXED}, {exact} with {EXACT}); PATCHes of {rows} {BUSY} rows at "
        f"{rate}/s and of {trickle_rows} {TRICKLE} rows at {trickle_rate}/s; load average "
        f"{os.getloadavg()[0]:.2f}"
    )
    groups = {"mixed": MIXED, "exact": EXACT}
    with BenchServer(workers=workers, **env) as server:
        url = server.url
        ids = _seed(url, rows, trickle_rows)
        _write(url, ids, PREFILL[0], 1, PREFILL[1])
        with SwarmProcess(url, NORMAL_PATH, others) as kept:
            with SwarmProcess(url, NORMAL_PATH, slow) as replaced:
                opened = [kept.opened, replaced.opened]
                a = _phase(server, ids, rate, trickle_rate, seconds_a, [kept, replaced])
            _print_phase("A", a, [f"{others} others", f"{slow} to be replaced"])
            readers = [
                (Laggard(url, _path(priorities), slow_bytes_per_second), priorities)
                for priorities in [MIXED] * (slow - exact) + [EXACT] * exact
            ]
            try:
                time.sleep(2)
                start = _versions(url)
                before = slow_consumer_actions(url)
                b = _phase(server, ids, rate, trickle_rate, seconds_b, [kept])
                _print_phase("B", b, [f"{others} others"])
                # The workers mirror their counters into /metrics once a second.
                time.sleep(2)
                after = slow_consumer_actions(url)
                checks, drain_seconds, final = _drain(readers, url, start)
            finally:
                for laggard, _ in readers:
                    laggard.close()
            # Phase A again once the slow readers left: the control on both sides of B, so a
            # drift in the machine's other load weighs on both.
            with SwarmProcess(url, NORMAL_PATH, slow) as returned:
                a_after = _phase(server, ids, rate, trickle_rate, seconds_a, [kept, returned])
            _print_phase("A'", a_after, [f"{others} others", f"{slow} back"])
    actions = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    resets = sum(laggard.received.count(b"event: reset\n") for laggard, _ in readers)
    # Every update since the slow readers subscribed, by the rows' versions.
    written = {
        topic: sum(row["version"] - start[topic][pk] for pk, row in rows.items())
        for topic, rows in final.items()
    }
    slow_figures = {
        name: _summary(
            [c for c, (_, p) in zip(checks, readers, strict=True) if p is priorities],
            priorities,
            written,
        )
        for name, priorities in groups.items()
    }
    # The others' p99: the median window of B against that of A's windows before and after.
    control = a["latency_ms"][0]["p99"] + a_after["latency_ms"][0]["p99"]
    p99_a, p99_b = median(control), median(b["latency_ms"][0]["p99"])
    ratio = round(p99_b / p99_a, 2) if p99_a else None
    # How far the control's own windows differ: the noise the ratio stands against.
    spread_a = round(max(control) / min(control), 2)
    slope = b["rss"]["total"]["slope_second_half_mib_per_min"]
    # What unbounded queues would grow by: the bytes sent each slow reader less what it reads.
    frame_bytes = sum(len(laggard.received) for laggard, _ in readers) / max(
        1, sum(sum(c["events"].values()) for c in checks)
    )
    sent = (rate + trickle_rate) * frame_bytes
    unbounded = round(slow * max(0.0, sent - slow_bytes_per_second) * 60 / MIB, 1)
    others_exact = all(a["every_event_once"] + b["every_event_once"] + a_after["every_event_once"])
    print(
        f"  others' p99 (median window) B/(A, A'): {p99_b}/{p99_a} ms = {ratio} (target <= "
        f"{TARGET['others_p99_ratio']}; the windows of A and A' differ by up to {spread_a}x)\n"
        f"  workers' CPU per update A/B/A' {a['worker_cpu_ms_per_event']}/"
        f"{b['worker_cpu_ms_per_event']}/{a_after['worker_cpu_ms_per_event']} ms; every event "
        f"once, in order: {others_exact}\n"
        f"  workers' RSS slope after the first fill B: {slope} MiB/min (A: "
        f"{a['rss']['total']['slope_second_half_mib_per_min']}); unbounded queues would grow "
        f"{unbounded} MiB/min ({frame_bytes:.0f}-byte frames); target <= "
        f"{TARGET['rss_slope_of_unbounded']:.0%} of that\n"
        f"  hub actions for slow streams in phase B: {actions}; resets {resets}; then drained "
        f"at speed in {drain_seconds:.1f} s"
    )
    for name, group in slow_figures.items():
        _print_group(name, group)
    return {
        "config": {
            "streams": streams,
            "slow": slow,
            "exact": exact,
            "rate": rate,
            "trickle_rate": trickle_rate,
            "rows": rows,
            "trickle_rows": trickle_rows,
            "seconds_a": seconds_a,
            "seconds_b": seconds_b,
            "workers": workers,
            "slow_bytes_per_second": slow_bytes_per_second,
            **env,
        },
        "opened": opened,
        "phase_a": a,
        "phase_b": b,
        "phase_a_after": a_after,
        "others_p99_ms": {"a": p99_a, "b": p99_b},
        "others_p99_ratio": ratio,
        "others_p99_spread_in_control": spread_a,
        "worker_cpu_ms_per_event": {
            "a": a["worker_cpu_ms_per_event"],
            "b": b["worker_cpu_ms_per_event"],
            "a_after": a_after["worker_cpu_ms_per_event"],
        },
        "others_every_event_once": others_exact,
        "rss_slope_mib_per_min": slope,
        "rss_slope_unbounded_mib_per_min": unbounded,
        "slow_consumer_actions": actions,
        "resets": resets,
        "drain_seconds": round(drain_seconds, 1),
        "slow_readers": slow_figures,
        "target": TARGET,
        "met": others_exact
        and ratio is not None
        and ratio <= TARGET["others_p99_ratio"]
        and slope <= TARGET["rss_slope_of_unbounded"] * unbounded
        and resets == 0
        and all(map(_kept_promises, slow_figures.values())),
    }
