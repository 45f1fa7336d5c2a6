"""A TCP fault proxy: forwards loopback connections to a server and breaks them on command.

Each accepted connection is a `Link` with two pump threads. Faults act on the server → client
direction, where the event stream flows: cut with RST or FIN, stall for a while, cut mid-frame
(after k bytes of the next chunk), fall silent without a FIN, or throttle to a byte rate.

`FaultProxy` runs in the test's process; `ProxyProcess` runs one in a process of its own,
so hundreds of pump threads do not compete with the test's clients for one interpreter lock.
"""

import json
import random
import socket
import struct
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

CHUNK = 65536
# Faults a random `chaos` run picks from, with the arguments it gives them.
FAULTS = ("rst", "fin", "stall", "mid_frame", "silence", "throttle")


def _abort(sock: socket.socket) -> None:
    """Close a socket with RST instead of FIN."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    sock.close()


def _finish(sock: socket.socket) -> None:
    """Close a socket with FIN, both ways."""
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()


class Link:
    """One proxied connection: the client's socket, the server's, and the faults set on it."""

    def __init__(self, proxy: "FaultProxy", client: socket.socket, upstream: socket.socket):
        self.proxy = proxy
        self.client = client
        self.upstream = upstream
        self.closed = threading.Event()
        self.stalled_until = 0.0
        self.silent = False
        self.cut_after: int | None = None
        self.rate: float | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        """Start pumping both ways."""
        for source, target, faulty in (
            (self.client, self.upstream, False),
            (self.upstream, self.client, True),
        ):
            threading.Thread(target=self._pump, args=(source, target, faulty), daemon=True).start()

    def close(self, how: str = "fin") -> None:
        """Close both sides, with RST ("rst") or FIN ("fin"), once."""
        with self._lock:
            if self.closed.is_set():
                return
            self.closed.set()
        close = _abort if how == "rst" else _finish
        close(self.client)
        close(self.upstream)
        self.proxy.forget(self)

    # Faults

    def cut(self, how: str = "rst") -> None:
        """Cut the connection now, with RST or FIN."""
        self.proxy.count(how)
        self.close(how)

    def stall(self, seconds: float) -> None:
        """Hold what the server sends for a while, then deliver it."""
        self.proxy.count("stall")
        self.stalled_until = time.monotonic() + seconds

    def cut_mid_frame(self, k: int) -> None:
        """Deliver only the first k bytes of the server's next chunk, then cut with RST."""
        self.proxy.count("mid_frame")
        self.cut_after = k

    def silence(self) -> None:
        """Stop forwarding either way, keeping both sockets open: no FIN, no RST, nothing."""
        self.proxy.count("silence")
        self.silent = True

    def throttle(self, bytes_per_second: float) -> None:
        """Deliver what the server sends at most this fast."""
        self.proxy.count("throttle")
        self.rate = bytes_per_second

    def apply(self, fault: str, rng: random.Random) -> None:
        """Inflict one named fault with random arguments."""
        if fault in ("rst", "fin"):
            self.cut(fault)
        elif fault == "stall":
            self.stall(rng.uniform(0.2, 2.0))
        elif fault == "mid_frame":
            self.cut_mid_frame(rng.randint(1, 200))
        elif fault == "silence":
            self.silence()
        else:
            self.throttle(rng.choice((2_000, 20_000)))

    # Pumps

    def _pump(self, source: socket.socket, target: socket.socket, faulty: bool) -> None:
        try:
            while not self.closed.is_set():
                size = CHUNK if self.rate is None or not faulty else max(1, int(self.rate / 10))
                data = source.recv(size)
                if not data:
                    break
                if self.silent:
                    # Read on, so a client that gives up and closes is noticed; forward nothing.
                    continue
                if faulty and not self._deliver(target, data):
                    return
                if not faulty:
                    target.sendall(data)
        except OSError:
            pass
        self.close("fin")

    def _deliver(self, target: socket.socket, data: bytes) -> bool:
        """Send server bytes to the client under the link's faults; False once it is cut."""
        wait = self.stalled_until - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        if self.cut_after is not None:
            target.sendall(data[: self.cut_after])
            self.close("rst")
            return False
        target.sendall(data)
        if self.rate is not None:
            time.sleep(len(data) / self.rate)
        return True


class FaultProxy:
    """Listen on 127.0.0.1 and forward every connection to a server, breaking them on command."""

    def __init__(self, target_port: int, target_host: str = "127.0.0.1"):
        self.target = (target_host, target_port)
        # A fault every new connection gets as it opens (name, argument), e.g. ("throttle", 2e4).
        self.on_connect: tuple[str, float] | None = None
        self.listener = socket.create_server(("127.0.0.1", 0), backlog=1024)
        self.port = self.listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.links: set[Link] = set()
        self.faults: Counter[str] = Counter()
        self.accepted = 0
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> "FaultProxy":
        """Start accepting connections."""
        self._spawn(self._accept)
        return self

    def _spawn(self, target, *args) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                # The server is down: the client sees its connection refused, as it would.
                _abort(client)
                continue
            link = Link(self, client, upstream)
            with self._lock:
                self.links.add(link)
                self.accepted += 1
            if self.on_connect is not None:
                fault, argument = self.on_connect
                getattr(link, fault)(argument)
            link.start()

    def forget(self, link: Link) -> None:
        """Drop a closed link."""
        with self._lock:
            self.links.discard(link)

    def count(self, fault: str) -> None:
        """Count one inflicted fault."""
        with self._lock:
            self.faults[fault] += 1

    def open_links(self) -> list[Link]:
        """Return the connections open now."""
        with self._lock:
            return list(self.links)

    def cut_all(self, how: str = "rst") -> int:
        """Cut every open connection; return how many."""
        links = self.open_links()
        for link in links:
            link.cut(how)
        return len(links)

    def chaos(
        self, every: float, seed: int = 0, faults: tuple[str, ...] = FAULTS
    ) -> threading.Event:
        """Inflict a random fault on a random open connection every `every` seconds until the
        returned event is set (or the proxy stops)."""
        rng = random.Random(seed)
        done = threading.Event()

        def run() -> None:
            while not done.wait(every) and not self._stopping.is_set():
                links = self.open_links()
                if links:
                    rng.choice(links).apply(rng.choice(faults), rng)

        self._spawn(run)
        return done

    def stop(self) -> None:
        """Stop accepting and close every connection."""
        self._stopping.set()
        self.listener.close()
        for link in self.open_links():
            link.close("fin")
        for thread in self._threads:
            thread.join(timeout=5)


class ProxyProcess:
    """A FaultProxy in a child process, driven by one-line commands on its stdin."""

    def __init__(self, target_port: int):
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.faults.proxy", str(target_port)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=Path(__file__).resolve().parents[2],
        )
        self.port = int(self.process.stdout.readline())
        self.url = f"http://127.0.0.1:{self.port}"

    def _ask(self, *command) -> dict:
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()
        return json.loads(self.process.stdout.readline())

    def chaos(self, every: float, seed: int = 0, faults: tuple[str, ...] = FAULTS) -> None:
        """Inflict a random fault on a random open connection every `every` seconds."""
        self._ask("chaos", every, seed, list(faults))

    def calm(self) -> None:
        """Stop the chaos (faults already set on open connections stay)."""
        self._ask("calm")

    def on_connect(self, fault: str, argument: float) -> None:
        """Give every new connection a fault as it opens, e.g. ("stall", 20)."""
        self._ask("on_connect", fault, argument)

    def cut_all(self, how: str = "rst") -> int:
        """Cut every open connection; return how many."""
        return self._ask("cut_all", how)["cut"]

    def stats(self) -> dict:
        """Return the faults inflicted by name, connections accepted and open."""
        return self._ask("stats")

    def stop(self) -> None:
        """Stop the proxy process."""
        self.process.stdin.close()
        self.process.wait(timeout=10)
        self.process.stdout.close()


def serve(target_port: int) -> None:
    """Run a proxy to a port, printing its own port, then obey commands from stdin."""
    proxy = FaultProxy(target_port).start()
    print(proxy.port, flush=True)
    chaos: threading.Event | None = None
    for line in sys.stdin:
        command, *args = json.loads(line)
        answer: dict = {}
        if command == "chaos":
            chaos = proxy.chaos(args[0], args[1], tuple(args[2]))
        elif command == "calm" and chaos is not None:
            chaos.set()
        elif command == "on_connect":
            proxy.on_connect = (args[0], args[1])
        elif command == "cut_all":
            answer = {"cut": proxy.cut_all(args[0])}
        elif command == "stats":
            answer = {
                "faults": dict(proxy.faults),
                "accepted": proxy.accepted,
                "open": len(proxy.open_links()),
            }
        print(json.dumps(answer), flush=True)
    proxy.stop()


if __name__ == "__main__":
    serve(int(sys.argv[1]))
