"""A Tidings server for benchmarks: gunicorn + gevent, its own valkey and SQLite, in a temp dir."""

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis
import requests

from feed.embedded import EmbeddedRedis
from tests.servers import free_port

ROOT = Path(__file__).resolve().parent.parent


class BenchServer:
    """Gunicorn serving Tidings with `workers` gevent workers; its log goes to a file."""

    def __init__(self, workers: int = 1, config: str = "gunicorn.conf.py", **env: str):
        self.directory = Path(tempfile.mkdtemp(prefix="tidings-bench-"))
        self.redis = EmbeddedRedis(self.directory / "redis", port=free_port())
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "DATABASE_URL": f"sqlite:///{self.directory / 'tidings.db'}",
            "REDIS_URL": self.redis.url,
            "PORT": str(self.port),
            "WEB_CONCURRENCY": str(workers),
            "TOPICS": "bench",
            "GRACEFUL_TIMEOUT": "1",
            "LOG_LEVEL": "WARNING",
            **env,
        }
        self.workers = workers
        self.config = config
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> "BenchServer":
        self.redis.start()
        gunicorn = str(Path(sys.executable).parent / "gunicorn")
        with open(self.directory / "gunicorn.log", "wb") as log:
            self.process = subprocess.Popen(
                [gunicorn, "-c", self.config],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 30
        while len(self.worker_pids()) < self.workers or not self._healthy():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.__exit__(None, None, None)
                raise RuntimeError(f"gunicorn did not come up; see {self.directory}/gunicorn.log")
            time.sleep(0.1)
        return self

    def __exit__(self, *exc) -> None:
        if self.process is not None:
            if self.process.poll() is None:
                os.killpg(self.process.pid, signal.SIGINT)
                try:
                    self.process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    os.killpg(self.process.pid, signal.SIGKILL)
                    self.process.wait()
            self.process = None
        self.redis.stop()
        shutil.rmtree(self.directory, ignore_errors=True)

    def _healthy(self) -> bool:
        try:
            return requests.get(self.url + "/healthz", timeout=1).ok
        except requests.RequestException:
            return False

    def worker_pids(self) -> list[int]:
        """Return the pids of gunicorn's worker processes."""
        pid = self.process.pid
        try:
            text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
        except OSError:
            return []
        return [int(child) for child in text.split()]

    def redis_client(self) -> redis.Redis:
        """Return a client of the server's valkey."""
        return redis.Redis.from_url(self.redis.url)


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
