"""A swarm of SSE subscribers in one asyncio process, and the handle that drives it.

`python -m bench.swarm URL PATH COUNT [FIRST_SOURCE]` opens COUNT streams from the loopback
addresses 127.0.0.FIRST_SOURCE and the next SOURCE_ADDRESSES - 1 (2 by default), answers one
JSON line when they are all `ready`, then obeys commands on stdin, one JSON line of figures for
each:
`report EXPECTED TIMEOUT` waits until every stream received EXPECTED changes since the last
report (or TIMEOUT seconds pass), then answers for that window; `close` ends the process.
"""

import array
import asyncio
import json
import os
import re
import resource
import subprocess
import sys
import time
from urllib.parse import urlsplit

import uvloop

from .server import admin_token

# The environment variable that hands the swarm process the server's admin token (a peer
# server has none: then the streams send no Authorization).
TOKEN_VARIABLE = "TIDINGS_BENCH_TOKEN"

# One change frame: its id, and the send time the publisher put into the event's data. Tidings
# and the ceiling write `id: ` first; flask-sse writes `event:`, `data:`, then `id:`, without
# spaces, and its JSON with a space after each colon.
CHANGE = re.compile(
    rb'(?:id: ?(\d+)\n)?event: ?change\ndata: ?[^\n]*?"(?:sent|note)": ?"([0-9.]+)"[^\n]*\n'
    rb"(?:id: ?(\d+)\n)?"
)
READY = re.compile(rb"event: ?ready\n")
# A heartbeat: a block of an id alone, just after the chunk size line (change and ready
# frames carry an event line after their id).
HEARTBEAT = re.compile(rb"\nid: \d+\n\n")
# Connections are spread over this many loopback source addresses, so ports never run out.
SOURCE_ADDRESSES = 16
FIRST_SOURCE = 2
# How long a stream may take to be ready (a loaded machine opening tens of thousands).
READY_SECONDS = 180
# Streams whose handshake is in flight at once (stays under gunicorn's listen backlog).
CONNECTING = 200


class Window:
    """Figures gathered since the last report."""

    def __init__(self) -> None:
        self.latencies = array.array("d")
        self.first_sent = float("inf")
        self.last_received = 0.0
        self.deliveries = 0
        self.out_of_order = 0
        self.cpu = _cpu()

    def figures(self, counts: list[int], heartbeats: list[int], lost: int) -> dict:
        """Summarise the window."""
        lat = sorted(self.latencies)
        seconds = self.last_received - self.first_sent if self.deliveries else 0.0
        return {
            "deliveries": self.deliveries,
            "seconds": round(seconds, 3),
            "deliveries_per_second": round(self.deliveries / seconds) if seconds > 0 else 0,
            "latency_ms": {
                name: round(lat[min(len(lat) - 1, int(q * len(lat)))] * 1000, 2) if lat else None
                for name, q in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("max", 1.0))
            },
            "per_stream_min": min(counts, default=0),
            "heartbeats_per_stream_min": min(heartbeats, default=0),
            "per_stream_max": max(counts, default=0),
            "out_of_order_or_repeated": self.out_of_order,
            "streams_lost": lost,
            "swarm_cpu_seconds": round(_cpu() - self.cpu, 2),
        }


def every_event_once(figures: dict, expected: int) -> bool:
    """Tell whether a report's figures say every stream got `expected` events, each once
    and in order, and none was lost."""
    return (
        figures["per_stream_min"] == figures["per_stream_max"] == expected
        and figures["out_of_order_or_repeated"] == 0
        and figures["streams_lost"] == 0
    )


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Blocks:
    """An SSE response's bytes as they arrive, handed on up to the end of the last whole
    block (a block cut by a read waits for the next)."""

    __slots__ = ("rest",)

    def __init__(self):
        self.rest = b""

    def take(self, data: bytes) -> tuple[bytes, int]:
        """Return the bytes so far and where their last whole block ends (0: none yet)."""
        data = self.rest + data
        end = data.rfind(b"\n\n") + 2
        if end == 1:
            self.rest = data
            return data, 0
        self.rest = data[end:]
        return data, end


class Subscriber(asyncio.Protocol):
    """One SSE stream. The body is HTTP/1.1 chunked (or close-delimited), and each chunk holds
    whole SSE blocks (the server writes whole frames), so chunk markers only ever sit between
    blocks and the frame pattern can be matched on the raw bytes without de-chunking."""

    def __init__(self, swarm: "Swarm", request: bytes):
        self.swarm = swarm
        self.request = request
        self.blocks = Blocks()
        self.ready = asyncio.get_running_loop().create_future()
        self.answered = False
        self.last_id = 0
        self.count = 0
        self.heartbeats = 0
        # Changes received up to the last report.
        self.reported = 0
        self.closing = False

    def connection_made(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        now = time.time()
        data, end = self.blocks.take(data)
        if not end:
            return
        if not self.ready.done():
            if not self.answered and not data.startswith(b"HTTP/1.1 200"):
                self.ready.set_exception(RuntimeError(data[:200].decode(errors="replace")))
                return
            self.answered = True
            if READY.search(data):
                self.ready.set_result(None)
        self.heartbeats += len(HEARTBEAT.findall(data, 0, end))
        window = self.swarm.window
        latencies = window.latencies
        last = self.last_id
        n = 0
        for match in CHANGE.finditer(data, 0, end):
            event_id = int(match[1] or match[3])
            # Ids are global: other topics' events leave holes, but never a step back.
            if event_id <= last:
                window.out_of_order += 1
            last = event_id
            sent = float(match[2])
            latencies.append(now - sent)
            if sent < window.first_sent:
                window.first_sent = sent
            n += 1
        if n:
            self.last_id = last
            self.count += n
            window.deliveries += n
            window.last_received = now

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(f"closed before ready: {exc}"))
        elif not self.closing:
            self.swarm.lost += 1


class Swarm:
    """Many subscribers of one server and their shared window of figures."""

    def __init__(self, url: str, path: str, first_source: int = FIRST_SOURCE):
        self.first_source = first_source
        parts = urlsplit(url)
        self.host, self.port = parts.hostname, parts.port
        token = os.environ.get(TOKEN_VARIABLE)
        authorization = f"Authorization: Bearer {token}\r\n" if token else ""
        self.request = (
            f"GET {path} HTTP/1.1\r\nHost: {parts.netloc}\r\nAccept: text/event-stream\r\n"
            f"{authorization}\r\n"
        ).encode()
        self.streams: list[Subscriber] = []
        self.window = Window()
        self.lost = 0
        self.failed: list[str] = []

    async def open(self, count: int) -> None:
        """Open `count` streams and wait until each is ready (or failed)."""
        gate = asyncio.Semaphore(CONNECTING)
        loop = asyncio.get_running_loop()

        async def one(index: int) -> None:
            source = (f"127.0.0.{self.first_source + index % SOURCE_ADDRESSES}", 0)
            async with gate:
                stream = None
                try:
                    _, stream = await loop.create_connection(
                        lambda: Subscriber(self, self.request),
                        self.host,
                        self.port,
                        local_addr=source,
                    )
                    await asyncio.wait_for(stream.ready, READY_SECONDS)
                    self.streams.append(stream)
                except (OSError, RuntimeError, TimeoutError) as exc:
                    self.failed.append(repr(exc))
                    # A stream that failed is no stream: it neither counts nor stays open.
                    if stream is not None:
                        stream.closing = True
                        stream.transport.close()

        await asyncio.gather(*(one(i) for i in range(count)))

    async def report(self, expected: int, timeout: float) -> dict:
        """Wait for `expected` changes on every stream, then summarise and start a new window."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(
            s.count - s.reported < expected for s in self.streams
        ):
            await asyncio.sleep(0.05)
        counts = [s.count - s.reported for s in self.streams]
        heartbeats = [s.heartbeats for s in self.streams]
        figures = self.window.figures(counts, heartbeats, self.lost)
        for stream in self.streams:
            stream.reported = stream.count
        self.window = Window()
        return figures

    def close(self) -> None:
        """Close every stream."""
        for stream in self.streams:
            stream.closing = True
            stream.transport.close()


async def _main(url: str, path: str, count: int, first_source: int = FIRST_SOURCE) -> None:
    swarm = Swarm(url, path, first_source)
    started = time.monotonic()
    await swarm.open(count)
    _answer(
        {
            "ready": len(swarm.streams),
            "failed": len(swarm.failed),
            "errors": sorted(set(swarm.failed))[:5],
            "seconds": round(time.monotonic() - started, 2),
        }
    )
    swarm.window = Window()
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := (await reader.readline()).decode().split():
        if line[0] == "report":
            _answer(await swarm.report(int(line[1]), float(line[2])))
        else:
            break
    swarm.close()
    await asyncio.sleep(0.2)


def _answer(figures: dict) -> None:
    sys.stdout.write(json.dumps(figures) + "\n")
    sys.stdout.flush()


def end_child(process: subprocess.Popen, last_words: str = "") -> None:
    """Tell a load process to stop (closing its stdin after `last_words`), wait for it,
    and kill it when it does not end in 30 s."""
    if process.poll() is None:
        if last_words:
            process.stdin.write(last_words)
        process.stdin.close()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    process.stdout.close()


class SwarmProcess:
    """The handle the scenarios hold: starts the swarm process and exchanges its JSON lines."""

    def __init__(self, url: str, path: str, count: int, first_source: int = FIRST_SOURCE):
        # The token goes through the environment: a command line is anyone's to read.
        env = {k: v for k, v in os.environ.items() if k != TOKEN_VARIABLE}
        if token := admin_token(url):
            env[TOKEN_VARIABLE] = token
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.swarm", url, path, str(count), str(first_source)],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.opened: dict | None = None

    def wait_opened(self) -> dict:
        """Wait for the streams to be ready (or failed); return how many were."""
        if self.opened is None:
            self.opened = self._read()
        return self.opened

    def _read(self) -> dict:
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError("the swarm process ended early")
        return json.loads(line)

    def report(self, expected: int, timeout: float) -> dict:
        """Return the figures of the window that ends once every stream saw `expected` changes."""
        self.process.stdin.write(f"report {expected} {timeout}\n")
        self.process.stdin.flush()
        return self._read()

    @property
    def pid(self) -> int:
        """Return the swarm's process id."""
        return self.process.pid

    def close(self) -> None:
        """Close the streams and wait for the process to end."""
        end_child(self.process, "close\n")

    def __enter__(self) -> "SwarmProcess":
        self.wait_opened()
        return self

    def __exit__(self, *exc) -> None:
        self.close()


if __name__ == "__main__":
    uvloop.run(_main(sys.argv[1], sys.argv[2], *map(int, sys.argv[3:])))
