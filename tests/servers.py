"""Real servers for tests: gunicorn + gevent running Tidings, on loopback ports."""

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

from .identities import provision_admin

ROOT = Path(__file__).resolve().parent.parent
# Limits no test or benchmark reaches by accident; the rate-limit tests set tight ones.
GENEROUS_LIMITS = {
    "RATE_LIMIT_WRITES": "1000000/second",
    "RATE_LIMIT_STREAMS": "1000000/second",
    "RATE_LIMIT_POLLS": "1000000/second",
    "RATE_LIMIT_LOGINS": "1000000/second",
    "MAX_STREAMS": "1000000",
}
# Started servers by URL, so helpers given only a URL can call as the server's admin.
_RUNNING: dict[str, "TidingsServer"] = {}


def server_at(url: str) -> "TidingsServer":
    """Return the started server a URL belongs to."""
    return _RUNNING["/".join(url.split("/", 3)[:3])]


def route(url: str, server: "TidingsServer") -> None:
    """Let helpers given a URL in front of a server (a proxy's) act as that server's admin."""
    _RUNNING[url] = server


def bearer(url: str) -> dict:
    """Return the Authorization header of the admin of the started server a URL belongs to."""
    return {"Authorization": f"Bearer {server_at(url).token}"}


def http(url: str) -> requests.Session:
    """Return the admin session (`.http`) of the started server a URL belongs to."""
    return server_at(url).http


def free_port() -> int:
    """Return a loopback TCP port that is free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class TidingsServer:
    """A gunicorn process serving Tidings against a given database and Redis."""

    def __init__(
        self,
        database_url: str,
        redis_url: str,
        *,
        workers: int = 1,
        token: str | None = None,
        port: int | None = None,
        **env: str,
    ):
        # With no token given, the server's database gets an admin of its own.
        self.token = token or provision_admin(database_url, redis_url)
        # Requests as the admin: `server.http.get(server.url + "/api/...")`, each on a fresh
        # connection as requests.get makes, so a restarted server never meets a stale one.
        self.http = self.session()
        self.http.headers["Connection"] = "close"
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "PORT": str(self.port),
            "WEB_CONCURRENCY": str(workers),
            "GRACEFUL_TIMEOUT": "1",
            # No shedding between workers unless a test asks for it: its streams stay put.
            "BALANCE_SECONDS": "0",
            "LOG_LEVEL": "WARNING",
            **GENEROUS_LIMITS,
            **env,
        }
        self.process: subprocess.Popen | None = None
        self.log = None

    def start(self, timeout: float = 20.0) -> "TidingsServer":
        """Start gunicorn and wait until it answers /healthz."""
        gunicorn = str(Path(sys.executable).parent / "gunicorn")
        # A file, not a pipe: nobody drains a pipe while the test runs, and a full one blocks.
        self.log = tempfile.TemporaryFile()
        self.process = subprocess.Popen(
            [gunicorn, "-c", "gunicorn.conf.py"],
            cwd=ROOT,
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=self.log,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        workers = int(self.env["WEB_CONCURRENCY"])
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                output = self.output()
                self.stop()
                raise RuntimeError("gunicorn exited:\n" + output)
            if len(self.worker_pids()) == workers and self._healthy():
                _RUNNING[self.url] = self
                return self
            time.sleep(0.05)
        output = self.output()
        self.stop()
        raise RuntimeError("gunicorn did not come up:\n" + output)

    def session(self) -> requests.Session:
        """Return a keep-alive session acting as the admin (its requests stay on one worker)."""
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {self.token}"
        return session

    def _healthy(self) -> bool:
        try:
            return requests.get(self.url + "/healthz", timeout=1).ok
        except requests.RequestException:
            return False

    def worker_pids(self) -> list[int]:
        """Return the pids of gunicorn's worker processes."""
        pid = self.process.pid
        try:
            return [
                int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
            ]
        except OSError:
            return []

    def stop(self, sig: signal.Signals = signal.SIGINT) -> None:
        """Stop gunicorn and its workers: at once, or with SIGTERM as a service manager does."""
        if self.process is None:
            return
        if self.process.poll() is None:
            os.killpg(self.process.pid, sig)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.process = None
        self.log.close()

    def terminate(self, timeout: float = 15.0) -> tuple[float, str]:
        """Stop gunicorn with SIGTERM, as a service manager does; return the seconds it took
        to exit and what it wrote."""
        started = time.monotonic()
        os.kill(self.process.pid, signal.SIGTERM)
        self.process.wait(timeout=timeout)
        took = time.monotonic() - started
        output = self.output()
        self.process = None
        self.log.close()
        return took, output

    def output(self) -> str:
        """Return what gunicorn wrote to stderr so far."""
        self.log.seek(0)
        return self.log.read().decode(errors="replace")

    def kill(self) -> None:
        """Kill gunicorn and its workers at once, as a crash would."""
        if self.process is not None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
            self.process = None
            self.log.close()

    def restart(self) -> "TidingsServer":
        """Stop and start again on the same port."""
        self.stop()
        return self.start()
