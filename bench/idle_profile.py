"""Where an idle SSE stream's bytes go: `python -m bench.idle_profile [STREAMS]`.

One traced worker (bench.profiled_worker) serves STREAMS idle streams, then twice as many;
the two tracemalloc snapshots are diffed by traceback and divided by STREAMS, beside the
growth of objects by type, the greenlets' saved C stacks and the process's memory.
"""

import json
import socket
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

from .server import BenchServer
from .swarm import SwarmProcess

PATH = "/stream?topics=bench"


def _snapshot(directory: Path, pid: int, name: str) -> tuple[tracemalloc.Snapshot, dict]:
    with socket.socket(socket.AF_UNIX) as conn:
        conn.connect(str(directory / f"{pid}.sock"))
        conn.sendall(f"snapshot {name}\n".encode())
        conn.settimeout(300)
        assert conn.recv(16).startswith(b"done")
    trace = tracemalloc.Snapshot.load(str(directory / f"{pid}-{name}.trace"))
    return trace, json.loads((directory / f"{pid}-{name}.json").read_text())


def _where(stat: tracemalloc.StatisticDiff, depth: int = 6) -> str:
    frames = [f"{Path(f.filename).name}:{f.lineno}" for f in list(stat.traceback)[:depth]]
    return " < ".join(frames)


def profile(streams: int = 1000) -> dict:
    """Diff the traced worker between `streams` and 2 × `streams` idle streams."""
    directory = Path(tempfile.mkdtemp(prefix="tidings-profile-"))
    env = {
        "GUNICORN_CMD_ARGS": "--worker-class=bench.profiled_worker.ProfiledWorker",
        "TIDINGS_PROFILE_DIR": str(directory),
        "HEARTBEAT_SECONDS": "600",
    }
    with BenchServer(workers=1, **env) as server:
        (pid,) = server.worker_pids()
        with SwarmProcess(server.url, PATH, 200) as warm:
            assert warm.opened["ready"] == 200, warm.opened
        with SwarmProcess(server.url, PATH, streams):
            time.sleep(1)
            trace_n, figures_n = _snapshot(directory, pid, "n")
            with SwarmProcess(server.url, PATH, streams):
                time.sleep(1)
                trace_2n, figures_2n = _snapshot(directory, pid, "2n")
    # Divide by the connections the second swarm really added, counted by their parked
    # greenlets: under tracing on a busy machine some answer after the swarm's timeout.
    streams = figures_2n["greenlets"]["count"] - figures_n["greenlets"]["count"]
    # What the snapshot code itself holds is no stream's.
    mine = [tracemalloc.Filter(False, "*/profiled_worker.py", all_frames=True)]
    by_line = trace_2n.filter_traces(mine).compare_to(trace_n.filter_traces(mine), "traceback")
    traced = sum(s.size_diff for s in by_line) / streams
    lines = [
        {
            "bytes": round(s.size_diff / streams, 1),
            "blocks": round(s.count_diff / streams, 2),
            "where": _where(s),
        }
        for s in sorted(by_line, key=lambda s: -s.size_diff)[:25]
    ]
    types = {
        name: round((figures_2n["objects_by_type"].get(name, 0) - count) / streams, 2)
        for name, count in figures_n["objects_by_type"].items()
    }
    types = dict(sorted(((k, v) for k, v in types.items() if v >= 0.5), key=lambda kv: -kv[1]))
    memory = {
        name: round((figures_2n["memory_kb"][name] - value) * 1024 / streams)
        for name, value in figures_n["memory_kb"].items()
        if name in ("Rss", "Anonymous", "Private_Dirty")
    }
    green_n, green_2n = figures_n["greenlets"], figures_2n["greenlets"]
    result = {
        "streams": streams,
        "process_bytes_per_stream": memory,
        "traced_bytes_per_stream": round(traced),
        "greenlet_stack_saved_per_stream": round(
            (green_2n["stack_saved_bytes"] - green_n["stack_saved_bytes"]) / streams
        ),
        "greenlet_stack_saved_median": green_2n["stack_saved_median"],
        "parked_chains": figures_2n["parked_chains"],
        "objects_per_stream": types,
        "top_tracebacks": lines,
    }
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    profile(*map(int, sys.argv[1:]))
