"""A Tidings server for benchmarks: gunicorn + gevent, its own valkey and SQLite, in a temp dir."""

import os
import shutil
import tempfile
from pathlib import Path

import redis

from feed.embedded import EmbeddedRedis
from tests.servers import TidingsServer, free_port, server_at


class BenchServer:
    """A TidingsServer with `workers` gevent workers and a private valkey and database."""

    def __init__(self, workers: int = 1, **env: str):
        self.directory = Path(tempfile.mkdtemp(prefix="tidings-bench-"))
        self.redis = EmbeddedRedis(self.directory / "redis", port=free_port())
        database = f"sqlite:///{self.directory / 'tidings.db'}"
        self.server = TidingsServer(
            database, self.redis.url, workers=workers, **{"TOPICS": "bench", **env}
        )
        self.url = self.server.url

    def __enter__(self) -> "BenchServer":
        self.redis.start()
        try:
            self.server.start(timeout=30)
        except RuntimeError:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.server.stop()
        self.redis.stop()
        shutil.rmtree(self.directory, ignore_errors=True)

    def worker_pids(self) -> list[int]:
        """Return the pids of gunicorn's worker processes."""
        return self.server.worker_pids()

    def redis_client(self) -> redis.Redis:
        """Return a client of the server's valkey."""
        return redis.Redis.from_url(self.redis.url)


def admin_token(url: str) -> str | None:
    """Return the admin token of the Tidings server at `url`, or None for a peer server."""
    try:
        return server_at(url).token
    except KeyError:
        return None


def authorization(url: str) -> dict:
    """Return the Authorization header for requests to the server at `url` (none for a peer)."""
    token = admin_token(url)
    return {"Authorization": f"Bearer {token}"} if token else {}


def rss_bytes(pid: int) -> int:
    """Return a process's resident set size."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def cpu_seconds(pid: int) -> float:
    """Return the user + system CPU time a process has used."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def busy_cores() -> float:
    """Return the machine's CPU time used so far by everything, in core-seconds."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")
