"""The servers Tidings is measured beside: the asyncio ceiling and flask-sse, each a process
pinned to one core, fed by a Redis of their own."""

import contextlib
import hashlib
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import redis
import requests

from tests.servers import free_port

BENCH = Path(__file__).resolve().parent
# flask-sse and its server live here, never in the project's environment.
PEERS_VENV = BENCH / ".peers-venv"
PEERS_REQUIREMENTS = BENCH / "requirements-peers.txt"


def pin(pid: int, core: int) -> None:
    """Pin a running process and all its threads to one core."""
    subprocess.run(["taskset", "-a", "-c", "-p", str(core), str(pid)], check=True,
                   stdout=subprocess.DEVNULL)  # fmt: skip


def peers_python() -> Path:
    """Return the peers' virtualenv, created or updated from its pinned requirements first."""
    stamp = PEERS_VENV / ".requirements-sha256"
    wanted = hashlib.sha256(PEERS_REQUIREMENTS.read_bytes()).hexdigest()
    if not stamp.exists() or stamp.read_text() != wanted:
        print(f"  installing {PEERS_REQUIREMENTS.name} into {PEERS_VENV.relative_to(BENCH.parent)}")
        subprocess.run([sys.executable, "-m", "venv", str(PEERS_VENV)], check=True)
        subprocess.run(
            [PEERS_VENV / "bin/pip", "install", "-q", "-r", PEERS_REQUIREMENTS], check=True
        )
        stamp.write_text(wanted)
    return PEERS_VENV


class PeerServer:
    """A peer server process started on `core`, on a loopback port, until the block ends."""

    name = ""
    # The stream path whose events /api/publish sends.
    stream_path = "/stream"
    # Whether it runs from bench/ rather than the project's root.
    bench_directory = False

    def __init__(self, redis_url: str, core: int = 0):
        self.redis_url = redis_url
        self.core = core
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None
        self.log = tempfile.TemporaryFile()

    def command(self) -> list[str]:
        """Return the command line that serves on self.port."""
        raise NotImplementedError

    def __enter__(self) -> "PeerServer":
        self.process = subprocess.Popen(
            ["taskset", "-c", str(self.core), *self.command()],
            # bench/ for flask-sse, whose gunicorn must not read the project's gunicorn.conf.py.
            cwd=BENCH if self.bench_directory else BENCH.parent,
            env={**os.environ, "SSE_REDIS_URL": self.redis_url},
            stdout=subprocess.DEVNULL,
            stderr=self.log,
            start_new_session=True,
        )
        deadline = time.monotonic() + 30
        while not self._answers():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.log.seek(0)
                output = self.log.read().decode(errors="replace")
                self.__exit__()
                raise RuntimeError(f"{self.name} did not come up:\n{output}")
            time.sleep(0.1)
        return self

    def _answers(self) -> bool:
        try:
            requests.get(self.url + "/healthz", timeout=1)
            return True
        except requests.RequestException:
            return False

    def __exit__(self, *exc) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, 9)
            self.process.wait()
        self.log.close()

    def worker_pids(self) -> list[int]:
        """Return the pids of the processes that serve the streams."""
        return [self.process.pid]

    def readiness(self) -> contextlib.AbstractContextManager:
        """Return what lets each new stream see it is subscribed while the block runs (nothing
        when the server sends a `ready` event itself)."""
        return contextlib.nullcontext()


class Ceiling(PeerServer):
    """bench/ceiling.py: one uvloop process."""

    name = "ceiling"

    def command(self) -> list[str]:
        return [sys.executable, "-m", "bench.ceiling", str(self.port), self.redis_url]


class FlaskSse(PeerServer):
    """flask-sse on gunicorn with one gevent worker."""

    name = "flask-sse"
    stream_path = "/stream?channel=sse"
    bench_directory = True

    def command(self) -> list[str]:
        venv = peers_python()
        return [
            str(venv / "bin/gunicorn"), "-k", "gevent", "-w", "1",
            "--worker-connections", "10000", "--backlog", "4096", "--log-level", "warning",
            # Tidings' own keep-alive: at 2 s, gunicorn's default, it closed the publisher's idle
            # connections between slow-rate POSTs.
            "--keep-alive", "5",
            "-b", f"127.0.0.1:{self.port}", "flask_sse_app:app",
        ]  # fmt: skip

    def worker_pids(self) -> list[int]:
        pid = self.process.pid
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]

    @contextlib.contextmanager
    def readiness(self) -> Iterator[None]:
        # flask-sse sends nothing until the first event: a `ready` event twice a second, in its
        # own Redis message format, shows each new stream that it is subscribed (more often,
        # 1,000 open streams would spend the worker on ready events).
        client = redis.Redis.from_url(self.redis_url)
        stop = threading.Event()

        def tick() -> None:
            while not stop.wait(0.5):
                client.publish("sse", '{"data": {}, "type": "ready"}')

        ticker = threading.Thread(target=tick)
        ticker.start()
        try:
            yield
        finally:
            stop.set()
            ticker.join()
            client.close()
