"""Process faults: a worker killed, the server stopped with SIGTERM, Redis frozen or restarted."""

import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager

from feed.embedded import EmbeddedRedis

from ..servers import TidingsServer


def _wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.05)


def kill_worker(server: TidingsServer, index: int = 0, timeout: float = 30) -> int:
    """SIGKILL one gunicorn worker and wait until the master has replaced it; return its pid."""
    pids = server.worker_pids()
    victim = pids[index % len(pids)]
    os.kill(victim, signal.SIGKILL)
    _wait(
        lambda: victim not in (now := server.worker_pids()) and len(now) == len(pids),
        timeout,
        "gunicorn to replace the killed worker",
    )
    return victim


def terminate_server(server: TidingsServer, timeout: float = 30) -> None:
    """SIGTERM gunicorn's master, as an orchestrator stopping it would, and wait for it to exit."""
    process = server.process
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=timeout)
    server.process = None
    server.log.close()


@contextmanager
def frozen(redis: EmbeddedRedis) -> Iterator[None]:
    """SIGSTOP Redis for the block: its connections stay open and nothing answers."""
    redis.process.send_signal(signal.SIGSTOP)
    try:
        yield
    finally:
        redis.process.send_signal(signal.SIGCONT)


def restart_redis(redis: EmbeddedRedis, down_for: float = 0.0) -> None:
    """Kill Redis, as a crash would, and start it again on the same port (empty)."""
    redis.kill()
    time.sleep(down_for)
    redis.start()
