"""Benchmark results: the machine they ran on, and one JSON file per scenario run."""

import datetime as dt
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path

import orjson

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict:
    """Describe the machine, the software and how busy the machine was."""
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    memory = Path("/proc/meminfo").read_text().splitlines()[0].split()[1]
    commit = _git("rev-parse", "--short", "HEAD").strip()
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(int(memory) / 1024**2, 1),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "packages": {
            name: metadata.version(name)
            for name in ("gevent", "greenlet", "gunicorn", "redis", "Flask", "orjson")
        },
        "load_average": os.getloadavg(),
        "commit": commit,
        # Uncommitted changes in the tree the server ran from.
        "dirty": bool(_git("status", "--porcelain", "--untracked-files=no").strip()),
    }


def _git(*args: str) -> str:
    root = Path(__file__).resolve().parent.parent
    return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True).stdout


def write(scenario: str, payload: dict) -> Path:
    """Write a scenario's figures with the time and machine, replacing its previous run;
    return the file."""
    now = dt.datetime.now(dt.UTC)
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{scenario}.json"
    record = {"scenario": scenario, "timestamp": now.isoformat(), "machine": machine(), **payload}
    path.write_bytes(orjson.dumps(record, option=orjson.OPT_INDENT_2) + b"\n")
    return path
