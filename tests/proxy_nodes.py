"""Two Tidings nodes on one PostgreSQL and one Redis, behind Debian's nginx running
deploy/nginx.conf exactly as it ships.

That file names the nodes 127.0.0.1:8001 and :8002 and listens on :8080, so these tests
take those ports; the suite runs its tests one at a time, and every other server it starts
is on a port the kernel picked (never below 32768), so only a foreign process can hold
them, which `check_ports` reports.
"""

import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import requests

from .delivery_tools import wait_for
from .servers import ROOT, TidingsServer, route

# Debian's nginx is in /usr/sbin, which a user's PATH may lack (`make test` installs it).
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
NGINX_CONF = ROOT / "deploy" / "nginx.conf"
NODE_PORTS = (8001, 8002)
PROXY_PORT = 8080
PROXY_URL = f"http://127.0.0.1:{PROXY_PORT}"
ADDRESS = re.compile(r"\d+\.\d+\.\d+\.\d+:\d+")
# fail_timeout in deploy/nginx.conf: how long nginx leaves a node alone after it failed.
FAIL_TIMEOUT = 3
# Settings of both nodes: the proxy's headers are believed, and heartbeats come often.
NODE_ENV = {
    "PROXY_FIX_X_FOR": "1",
    "PROXY_FIX_X_PROTO": "1",
    "HEARTBEAT_SECONDS": "1",
    "FEED_CHANNEL": "tidings:nginx",
}


def check_ports() -> None:
    """Fail naming the port when one deploy/nginx.conf needs is taken."""
    for port in (*NODE_PORTS, PROXY_PORT):
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("127.0.0.1", port))
            except OSError as exc:
                raise RuntimeError(
                    f"127.0.0.1:{port} is taken ({exc}); the nginx tests need 8001, 8002 and "
                    "8080, the addresses in deploy/nginx.conf"
                ) from exc


class Nginx:
    """Debian's nginx in the foreground with deploy/nginx.conf and a prefix of its own."""

    def __init__(self):
        self.prefix = Path(tempfile.mkdtemp(prefix="tidings-nginx-"))
        # Run as root, nginx's workers are nobody: they must reach the prefix and static/.
        self.prefix.chmod(0o755)
        (self.prefix / "static").symlink_to(ROOT / "static")
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 10.0) -> "Nginx":
        """Start nginx and wait until it accepts connections."""
        command = [NGINX, "-p", f"{self.prefix}/", "-c", str(NGINX_CONF), "-g", "daemon off;"]
        self.process = subprocess.Popen(
            command, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, start_new_session=True
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError("nginx exited:\n" + self.process.stderr.read().decode())
            try:
                socket.create_connection(("127.0.0.1", PROXY_PORT), timeout=1).close()
                return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("nginx did not listen on 8080:\n" + self.errors())

    def errors(self) -> str:
        """Return what nginx wrote to its error log."""
        log = self.prefix / "error.log"
        return log.read_text(errors="replace") if log.exists() else ""

    def log_size(self) -> int:
        """Return the length of the access log so far."""
        return (self.prefix / "access.log").stat().st_size

    def answered_by(self, request: str, since: int = 0) -> set[str]:
        """Return the node addresses the access log shows answering requests that start so
        (`POST`, `GET /api/changes`), from an offset on."""
        with (self.prefix / "access.log").open() as log:
            log.seek(since)
            lines = log.read().splitlines()
        return {
            address
            for line in lines
            if f'"{request}' in line
            for address in ADDRESS.findall(line.split(" upstream=", 1)[1])
        }

    def stop(self) -> None:
        """Stop nginx at once (a graceful stop would wait for every open stream)."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=10)
        if self.process is not None:
            self.process.stderr.close()
        shutil.rmtree(self.prefix, ignore_errors=True)


def ready(node: TidingsServer) -> bool:
    """Tell whether a node answers /readyz with 200."""
    try:
        return node.http.get(f"{node.url}/readyz", timeout=2).status_code == 200
    except requests.RequestException:
        return False


@dataclass
class Deployment:
    """Nodes A and B on one database and one Redis, and nginx in front of both."""

    a: TidingsServer
    b: TidingsServer
    proxy: Nginx
    url: str = PROXY_URL

    @property
    def nodes(self) -> tuple[TidingsServer, TidingsServer]:
        """Return both nodes."""
        return self.a, self.b

    def bring_back(self, node: TidingsServer) -> None:
        """Start a node again and wait until it is ready and nginx sends it requests again
        (nginx tries a node it saw failing again only after fail_timeout)."""
        node.start()
        wait_for(lambda: ready(node), 20, f"{node.url} to be ready")
        address = f"127.0.0.1:{node.port}"
        mark = self.proxy.log_size()

        def proxied() -> bool:
            requests.get(f"{self.url}/healthz", timeout=5)
            return address in self.proxy.answered_by("GET /healthz", since=mark)

        wait_for(proxied, FAIL_TIMEOUT + 5, f"nginx to send requests to {address} again")

    def ensure_up(self) -> None:
        """Bring back any node an earlier test left stopped."""
        for node in self.nodes:
            if node.process is None:
                self.bring_back(node)

    def stop(self) -> None:
        """Stop nginx, then both nodes."""
        self.proxy.stop()
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(TidingsServer.stop, self.nodes))


def deploy(database_url: str, redis_url: str) -> Deployment:
    """Start nodes A and B on 8001 and 8002, then nginx in front of them on 8080."""
    check_ports()
    a = TidingsServer(database_url, redis_url, port=NODE_PORTS[0], **NODE_ENV)
    b = TidingsServer(database_url, redis_url, port=NODE_PORTS[1], token=a.token, **NODE_ENV)
    started = Deployment(a, b, Nginx())
    try:
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(TidingsServer.start, started.nodes))
        started.proxy.start()
    except BaseException:
        started.stop()
        raise
    # Helpers given the proxy's URL act as the admin, whichever node answers.
    route(PROXY_URL, a)
    return started
