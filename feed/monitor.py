"""The monitor's background work: sample every second, keep history, publish the figures.

Every worker samples its own gauges once a second. One worker per node (whoever holds the
lock file in the metrics directory) keeps ten minutes of history and publishes the figures
to the `monitor` topic every MONITOR_SECONDS, so the page follows them like any subscriber.
"""

import fcntl
import logging
import os
import time

import gevent
import orjson

from . import writes
from .figures import figures, public

logger = logging.getLogger("tidings.monitor")

TOPIC = "monitor"
HISTORY_SECONDS = 600
SAMPLE_SECONDS = 1.0


class History:
    """Ten minutes of points, in a file shared by the node's workers (or in memory)."""

    def __init__(self, directory: str | None):
        self.path = os.path.join(directory, "monitor-history.json") if directory else None
        self._points: list[dict] = []

    def points(self) -> list[dict]:
        """Return the stored points, oldest first."""
        if self.path is None:
            return self._points
        try:
            with open(self.path, "rb") as file:
                return orjson.loads(file.read())
        except (FileNotFoundError, orjson.JSONDecodeError):
            return []

    def append(self, point: dict) -> None:
        """Add a point and forget those older than ten minutes."""
        points = [p for p in self.points() if p["t"] > point["t"] - HISTORY_SECONDS]
        points.append(point)
        if self.path is None:
            self._points = points
            return
        partial = f"{self.path}.{os.getpid()}"
        with open(partial, "wb") as file:
            file.write(orjson.dumps(points))
        os.replace(partial, self.path)


class Monitor:
    """Sample this worker every second; when leading, record history and publish."""

    def __init__(self, runtime):
        self.runtime = runtime
        directory = runtime.metrics.directory
        self.lock_path = os.path.join(directory, "monitor.lock") if directory else None
        self.history = History(directory)
        self._lock_file = None

    def leading(self) -> bool:
        """Tell whether this process is the node's publisher, taking the lock when free."""
        if self.lock_path is None or self._lock_file is not None:
            return True
        file = open(self.lock_path, "a")  # noqa: SIM115 - held for the process's life
        try:
            fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            file.close()
            return False
        self._lock_file = file
        return True

    def sample(self) -> None:
        """Set this worker's gauges and mirror the engine's counters."""
        rt = self.runtime
        with rt.read() as conn:
            bounds = rt.log.bounds(conn)
        rt.metrics.sample(redis_up=bool(rt.bus.up), head=bounds.head, tail=bounds.tail)

    def publish(self) -> None:
        """Record a history point and publish the figures to the monitor topic."""
        rt = self.runtime
        result = figures(rt, with_history=False)
        self.history.append(result["raw"] | {"point": result["point"]})
        writes.publish(rt, TOPIC, public(result))

    def run(self) -> None:
        """Loop forever; a failed pass is logged and the next one tries again."""
        interval = self.runtime.config["MONITOR_SECONDS"]
        last = 0.0
        while True:
            gevent.sleep(SAMPLE_SECONDS)
            try:
                with self.runtime.app.app_context():
                    self.sample()
                    if interval > 0 and time.monotonic() - last >= interval and self.leading():
                        last = time.monotonic()
                        self.publish()
            except Exception:
                logger.exception("monitor pass failed")
