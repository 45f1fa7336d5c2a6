"""A gunicorn gevent worker that answers memory questions about itself, for bench.idle_profile.

`GUNICORN_CMD_ARGS=--worker-class=bench.profiled_worker.ProfiledWorker` with
`TIDINGS_PROFILE_DIR` set: the worker traces allocations from its start and listens on
`<dir>/<pid>.sock`; each line `snapshot NAME` written there dumps `<dir>/<pid>-NAME.trace`
(a tracemalloc snapshot) and `<dir>/<pid>-NAME.json` (objects by type, greenlet stacks,
memory of the process), then answers `done`.
"""

import gc
import json
import os
import socket
import sys
import tracemalloc
from collections import Counter
from pathlib import Path

import gevent
from greenlet import greenlet

from worker import Worker

FRAMES = 10


def _smaps_rollup() -> dict:
    """Return the process's memory figures (kB) from /proc/self/smaps_rollup."""
    figures = {}
    for line in Path("/proc/self/smaps_rollup").read_text().splitlines()[1:]:
        name, value = line.split(":", 1)
        figures[name] = int(value.split()[0])
    return figures


def _greenlets() -> dict:
    """Return how many greenlets exist and the bytes of C stack they keep on the heap."""
    saved = [g._stack_saved for g in gc.get_objects() if isinstance(g, greenlet)]
    saved.sort()
    return {
        "count": len(saved),
        "stack_saved_bytes": sum(saved),
        "stack_saved_median": saved[len(saved) // 2] if saved else 0,
        "stack_saved_max": saved[-1] if saved else 0,
    }


def _depths() -> dict:
    """Return how many Python frames each parked greenlet holds, by depth and innermost
    function: the call chain at the wait point."""
    chains = Counter()
    for g in gc.get_objects():
        if isinstance(g, greenlet) and g.gr_frame is not None:
            frames = []
            frame = g.gr_frame
            while frame is not None:
                frames.append(f"{frame.f_code.co_name}:{frame.f_lineno}")
                frame = frame.f_back
            chains[" < ".join(frames)] += 1
    return dict(chains.most_common(5))


def _report(directory: Path, name: str) -> None:
    gc.collect()
    pid = os.getpid()
    tracemalloc.take_snapshot().dump(str(directory / f"{pid}-{name}.trace"))
    types = Counter(type(o).__qualname__ for o in gc.get_objects())
    figures = {
        "objects_by_type": dict(types.most_common(200)),
        "greenlets": _greenlets(),
        "parked_chains": _depths(),
        "traced_bytes": tracemalloc.get_traced_memory()[0],
        "memory_kb": _smaps_rollup(),
        "sizes": {"greenlet": sys.getsizeof(greenlet())},
    }
    (directory / f"{pid}-{name}.json").write_text(json.dumps(figures, indent=1))


def _serve(directory: Path) -> None:
    path = directory / f"{os.getpid()}.sock"
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(path))
    listener.listen(1)
    while True:
        conn, _ = listener.accept()
        with conn, conn.makefile("rw") as lines:
            for line in lines:
                command, name = line.split()
                if command == "snapshot":
                    _report(directory, name)
                lines.write("done\n")
                lines.flush()


class ProfiledWorker(Worker):
    """The gevent worker, tracing its allocations and serving snapshots of them."""

    def init_process(self) -> None:
        """Start tracing before the app loads, then start as the gevent worker does."""
        tracemalloc.start(FRAMES)
        super().init_process()

    def run(self) -> None:
        """Serve snapshots beside the requests."""
        self._profile = gevent.spawn(_serve, Path(os.environ["TIDINGS_PROFILE_DIR"]))
        super().run()
