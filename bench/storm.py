"""Reconnect storm: thousands of clients, each the same run of events behind, reconnect at once.

The scenario publishes EVENTS events to topic `bench`, then has CLIENTS clients — spread over
several processes and loopback source addresses — connect to /stream at the same instant with
Last-Event-ID at the cursor just before them, while LIVE clients of topic `live` receive a
publisher's modest rate. It measures the time until every storm client has every event exactly
once and in order, the connections refused, reset or answered with an error (each retried as an
EventSource does, after the `retry:` it was told), and the live clients' latency. The same storm
runs against the in-memory replay ceiling (bench.replay_ceiling) in the same run.

The live clients and their publisher stand for people on other machines: they run at a higher
CPU priority (nice LIVE_NICE) than the storm's clients, which would otherwise take the box's two
cores from them too, and their latency would be the load generator's (the ceiling's live p99 was
2.4-3.4 s that way). Both servers are measured the same way.

`python -m bench.storm URL PATH COUNT FIRST_SOURCE SOURCES` is one storm process: it answers a
JSON line once started, reads `{"cursor", "expected", "at"}`, connects its COUNT clients at the
wall-clock time `at`, answers a JSON line of figures when all are caught up (or DEADLINE_SECONDS
passed), and closes them when its stdin ends.
"""

import asyncio
import json
import os
import random
import re
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter

import requests
import uvloop

from tests.servers import free_port

from .publisher import bench_event, send_paced
from .server import BenchServer, authorization, cpu_seconds
from .swarm import TOKEN_VARIABLE, Blocks, SwarmProcess, admin_token, end_child

CLIENTS = 10_000
# Tidings is measured a second time with its stream openings unbounded (the default bounds
# them to 32 at work per worker): the trade-off, in the same run.
UNBOUNDED = "tidings, STREAM_OPENINGS=0"
EVENTS = 1_000
LIVE = 100
# Live events per second during the storm, on their own topic.
LIVE_RATE = 20
PROCESSES = 4
SOURCES_PER_PROCESS = 4
# The live clients' source address: apart from the storm's.
LIVE_SOURCE = 100
# The CPU priority of the live clients and their publisher (needs CAP_SYS_NICE; without it
# they run at the storm's, and the results say so).
LIVE_NICE = -10
# The longest a storm may take before its processes report what they have.
DEADLINE_SECONDS = 90
TARGET_SECONDS = 10
TARGET_P99_MS = 250
# Set to a directory, each server process is sampled by py-spy through the storm, its stacks
# written there (collapsed, one file per process); PY_SPY names the py-spy to run.
PROFILE_VARIABLE = "TIDINGS_BENCH_STORM_PROFILE"
# When an attempt fails before its answer carried a `retry:`, the client waits what it was
# told before the storm: Tidings' default RETRY_MS plus its jitter.
RETRY_SECONDS = (2.0, 5.0)

# The quantiles of the time to catch up reported by each storm process: p10, p50, p90.
QUANTILES = (0.1, 0.5, 0.9)

CHANGE_ID = re.compile(rb"id: (\d+)\nevent: change\n")
RETRY = re.compile(rb"retry: (\d+)\n")


class Client(asyncio.Protocol):
    """One reconnecting EventSource: checks that it gets exactly the expected ids, in order."""

    def __init__(self, storm: "Storm", source: str):
        self.storm = storm
        self.source = source
        self.got = 0
        self.bad = 0
        self.attempts = 0
        self.done_at = 0.0
        # When the first answer arrived: what opening the stream took, before its replay.
        self.answered_at = 0.0
        self.connected_at = 0.0
        self.connect_seconds = 0.0
        self.retry_seconds = random.uniform(*RETRY_SECONDS)
        self.blocks = Blocks()
        self.answered = False
        self.failure: str | None = None
        self.transport = None
        self.finished = asyncio.get_running_loop().create_future()

    def cursor(self) -> int:
        """Return the Last-Event-ID to send: the last change received, else the storm's cursor."""
        return self.storm.expected[self.got - 1] if self.got else self.storm.cursor

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.connect_seconds = max(self.connect_seconds, time.time() - self.connected_at)
        self.blocks = Blocks()
        self.answered = False
        self.failure = None
        transport.write(self.storm.request % self.cursor())

    def data_received(self, data: bytes) -> None:
        data, end = self.blocks.take(data)
        if not end:
            return
        if not self.answered:
            if not data.startswith(b"HTTP/1.1 200"):
                self.failure = "http " + data[9:12].decode(errors="replace")
                self.transport.close()
                return
            self.answered = True
            self.answered_at = self.answered_at or time.time()
            if retry := RETRY.search(data, 0, end):
                self.retry_seconds = int(retry[1]) / 1000
        expected = self.storm.ids
        found = CHANGE_ID.findall(data, 0, end)
        # The usual case compares whole runs of ids at C speed; else id by id.
        if found == expected[self.got : self.got + len(found)]:
            self.got += len(found)
        else:
            for event_id in found:
                if self.got < len(expected) and event_id == expected[self.got]:
                    self.got += 1
                else:
                    self.bad += 1
        if self.got == len(expected) and not self.done_at:
            self.done_at = time.time()
            self.finished.set_result(None)

    def connection_lost(self, exc) -> None:
        if not self.done_at and not self.storm.closing:
            failure = self.failure or (type(exc).__name__ if exc else "closed")
            self.storm.failures[failure] += 1
            asyncio.get_running_loop().call_later(self.retry_seconds, self.storm.connect, self)


class Storm:
    """One process's clients of the storm and the failures they met."""

    def __init__(self, url: str, path: str, first_source: int, sources: int, start: dict):
        host, port = url.split("//", 1)[1].split(":")
        self.address = (host, int(port))
        self.sources = [f"127.0.0.{first_source + i}" for i in range(sources)]
        token = os.environ.get(TOKEN_VARIABLE)
        auth = f"Authorization: Bearer {token}\r\n" if token else ""
        self.request = (
            f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAccept: text/event-stream\r\n"
            f"{auth}Last-Event-ID: %d\r\n\r\n"
        ).encode()
        self.cursor = start["cursor"]
        self.expected = start["expected"]
        # The same ids as the bytes the frames carry.
        self.ids = [b"%d" % event_id for event_id in self.expected]
        self.failures: Counter[str] = Counter()
        self.clients: list[Client] = []
        self.closing = False

    def connect(self, client: Client) -> None:
        """Start one attempt of a client, from its source address."""
        client.attempts += 1
        client.connected_at = time.time()
        loop = asyncio.get_running_loop()
        task = loop.create_task(
            loop.create_connection(lambda: client, *self.address, local_addr=(client.source, 0))
        )
        task.add_done_callback(lambda done: self._connected(client, done))

    def _connected(self, client: Client, done: asyncio.Task) -> None:
        if not done.cancelled() and done.exception() is not None and not self.closing:
            self.failures[type(done.exception()).__name__] += 1
            asyncio.get_running_loop().call_later(client.retry_seconds, self.connect, client)

    async def run(self, count: int, at: float) -> dict:
        """Connect every client at `at` and wait until all are caught up or the deadline."""
        self.clients = [Client(self, self.sources[i % len(self.sources)]) for i in range(count)]
        await asyncio.sleep(max(0.0, at - time.time()))
        started = time.time()
        for client in self.clients:
            self.connect(client)
        await asyncio.wait([c.finished for c in self.clients], timeout=DEADLINE_SECONDS)
        done = sorted(c.done_at - at for c in self.clients if c.done_at)
        answered = sorted(c.answered_at - at for c in self.clients if c.answered_at)
        usage = resource.getrusage(resource.RUSAGE_SELF)
        connects = sorted(c.connect_seconds for c in self.clients)
        return {
            "clients": count,
            "caught_up": len(done),
            "last_caught_up_seconds": round(max(done, default=float("nan")), 3),
            "caught_up_seconds": [round(done[int(q * (len(done) - 1))], 3) for q in QUANTILES]
            if done
            else None,
            "answered_seconds": [
                round(answered[int(q * (len(answered) - 1))], 3) for q in QUANTILES
            ]
            if answered
            else None,
            "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 1),
            "launch_seconds": round(started - at, 3),
            "wrong_or_repeated": sum(c.bad for c in self.clients),
            "attempts": sum(c.attempts for c in self.clients),
            "failures": dict(self.failures),
            "connect_seconds_p99": round(connects[int(0.99 * (len(connects) - 1))], 3),
            "connect_seconds_max": round(connects[-1], 3),
        }


async def _main(url: str, path: str, count: int, first_source: int, sources: int) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    _answer({"started": True})
    start = json.loads(await reader.readline())
    storm = Storm(url, path, first_source, sources, start)
    _answer(await storm.run(count, start["at"]))
    await reader.read()
    storm.closing = True
    for client in storm.clients:
        if client.transport is not None:
            client.transport.close()
    await asyncio.sleep(0.2)


def _answer(figures: dict) -> None:
    sys.stdout.write(json.dumps(figures) + "\n")
    sys.stdout.flush()


class StormProcess:
    """The handle of one storm process: starts it, sends the start, reads its figures."""

    def __init__(self, url: str, path: str, count: int, first_source: int, sources: int):
        env = {k: v for k, v in os.environ.items() if k != TOKEN_VARIABLE}
        if token := admin_token(url):
            env[TOKEN_VARIABLE] = token
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.storm", url, path, *map(str, (count, first_source,
             sources))],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        self._read()

    def _read(self) -> dict:
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError("the storm process ended early")
        return json.loads(line)

    def go(self, start: dict) -> None:
        """Hand it the cursor, the expected ids and the instant to connect at."""
        self.process.stdin.write(json.dumps(start) + "\n")
        self.process.stdin.flush()

    def figures(self) -> dict:
        """Wait for its clients to be caught up (or its deadline); return its figures."""
        return self._read()

    def close(self) -> None:
        """Close its clients and wait for it to end."""
        end_child(self.process)


class ReplayCeiling:
    """The in-memory replay ceiling server, in a process of its own."""

    def __enter__(self) -> "ReplayCeiling":
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.process = subprocess.Popen([sys.executable, "-m", "bench.replay_ceiling", str(port)])
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return self
            except OSError:
                time.sleep(0.05)
        self.__exit__()
        raise RuntimeError("the replay ceiling did not come up")

    def __exit__(self, *exc) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)

    def worker_pids(self) -> list[int]:
        """Return the one process serving."""
        return [self.process.pid]


def live_event(sent: str) -> dict:
    """Return a /api/publish body for the live clients, carrying the send time."""
    return {"topic": "live", "data": {"sent": sent}}


def _prefer(tid: int) -> bool:
    """Run a live client's process (or the publisher's thread) at LIVE_NICE; tell whether it
    could."""
    try:
        os.setpriority(os.PRIO_PROCESS, tid, LIVE_NICE)
    except PermissionError:
        return False
    return True


def _publish_until(url: str, stop: threading.Event, sent: list[int]) -> None:
    """Publish live events at LIVE_RATE until told to stop, counting them in `sent`.

    One keep-alive connection, as an app's HTTP client holds: a new connection now and then
    would wait in the listen backlog behind the storm's, and the live figures would measure
    the kernel's accept queue (the in-memory ceiling's live p99 was 4.0 s that way).
    """
    # Linux keeps a priority per thread: only this one is raised.
    _prefer(threading.get_native_id())
    most = LIVE_RATE * DEADLINE_SECONDS * 2
    published = send_paced(url, "/api/publish", live_event, rate=LIVE_RATE, count=most,
                           connections=1, stop=stop)  # fmt: skip
    sent[0] = published["writes"]


def _backlog(url: str, events: int) -> tuple[int, list[int]]:
    """Publish `events` events to `bench`; return the cursor before them and their ids."""
    headers = authorization(url)
    changes = url + "/api/changes"
    head = requests.get(changes, params={"topics": "bench"}, headers=headers, timeout=10)
    cursor = head.json()["cursor"]
    send_paced(url, "/api/publish", bench_event, rate=500, count=events)
    params = {"topics": "bench", "cursor": cursor, "limit": events}
    logged = requests.get(changes, params=params, headers=headers, timeout=10).json()["events"]
    expected = [event["id"] for event in logged]
    assert len(expected) == events, f"{len(expected)} of {events} events logged"
    return cursor, expected


def _profilers(name: str, pids: list[int]) -> list[subprocess.Popen]:
    """Start py-spy on each server process when TIDINGS_BENCH_STORM_PROFILE names a directory."""
    directory = os.environ.get(PROFILE_VARIABLE)
    if not directory:
        return []
    os.makedirs(directory, exist_ok=True)
    spy = os.environ.get("PY_SPY", "py-spy")
    return [
        subprocess.Popen(
            [spy, "record", "--pid", str(pid), "--format", "raw", "--nonblocking", "--rate", "100",
             "--output", os.path.join(directory, f"{name}-{pid}.txt")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for pid in pids
    ]  # fmt: skip


def _storm_against(name: str, server, clients: int, events: int, live: int, processes: int) -> dict:
    """Run one storm against a started server (Tidings or the ceiling); return its figures."""
    url = server.url
    cursor, expected = _backlog(url, events)
    shares = [clients // processes + (i < clients % processes) for i in range(processes)]
    with SwarmProcess(url, "/stream?topics=live", live, LIVE_SOURCE) as swarm:
        preferred = _prefer(swarm.pid)
        crowd = [
            StormProcess(url, "/stream?topics=bench", share, 2 + i * SOURCES_PER_PROCESS,
                         SOURCES_PER_PROCESS)
            for i, share in enumerate(shares)
        ]  # fmt: skip
        try:
            pids = server.worker_pids()
            cpu = sum(map(cpu_seconds, pids))
            load = os.getloadavg()[0]
            profilers = _profilers(name, pids)
            at = time.time() + 1
            for process in crowd:
                process.go({"cursor": cursor, "expected": expected, "at": at})
            stop, sent = threading.Event(), [0]
            publisher = threading.Thread(target=_publish_until, args=(url, stop, sent))
            publisher.start()
            parts = [process.figures() for process in crowd]
            stop.set()
            publisher.join()
            cpu = sum(map(cpu_seconds, pids)) - cpu
            for profiler in profilers:
                profiler.send_signal(signal.SIGINT)
                profiler.wait(timeout=30)
            received = swarm.report(sent[0], timeout=15)
        finally:
            for process in crowd:
                process.close()
    failures = sum((Counter(p["failures"]) for p in parts), Counter())
    caught_up = sum(p["caught_up"] for p in parts)
    return {
        "clients": clients,
        "caught_up": caught_up,
        "seconds": max(p["last_caught_up_seconds"] for p in parts)
        if caught_up == clients
        else None,
        "wrong_or_repeated": sum(p["wrong_or_repeated"] for p in parts),
        "failed_attempts": dict(failures),
        "retries": sum(p["attempts"] for p in parts) - clients,
        "connect_seconds_max": max(p["connect_seconds_max"] for p in parts),
        "launch_seconds_max": max(p["launch_seconds"] for p in parts),
        # Each storm process's p10, p50 and p90 of the time to catch up, and its CPU.
        "caught_up_seconds_by_process": [p["caught_up_seconds"] for p in parts],
        # And of the time to the first answer (the stream opened, its replay not yet read).
        "answered_seconds_by_process": [p["answered_seconds"] for p in parts],
        "storm_cpu_seconds": round(sum(p["cpu_seconds"] for p in parts), 1),
        "server_cpu_seconds": round(cpu, 1),
        "load_average_before": round(load, 2),
        "live": {
            "clients": live,
            "events": sent[0],
            "missed_by_the_worst": sent[0] - received["per_stream_min"],
            "lost": received["streams_lost"],
            "p50_ms": received["latency_ms"]["p50"],
            "p99_ms": received["latency_ms"]["p99"],
            "nice": LIVE_NICE if preferred else None,
        },
    }


def storm(
    clients: int = CLIENTS,
    events: int = EVENTS,
    live: int = LIVE,
    workers: int = 2,
    processes: int = PROCESSES,
    **env: str,
) -> dict:
    """Reconnect storm against Tidings and against the replay ceiling, in the same run."""
    print(
        f"storm: {clients:,} clients, each {events:,} events behind, reconnect at once with "
        f"Last-Event-ID ({processes} processes, {processes * SOURCES_PER_PROCESS} source "
        f"addresses), {live} live clients at {LIVE_RATE} events/s; Tidings with {workers} "
        f"gevent workers (openings as configured, 32 at a time by default, then unbounded), "
        f"then the in-memory "
        f"replay ceiling; load average "
        f"{os.getloadavg()[0]:.1f}"
    )
    servers = {}
    env = {"TOPICS": "bench,live", "WORKER_CONNECTIONS": str(clients + 2 * live), **env}
    # The default, then openings taking turns (feed.openings): its trade-off, same run.
    for name, turns in (("tidings", {}), (UNBOUNDED, {"STREAM_OPENINGS": "0"})):
        with BenchServer(workers=workers, **{**env, **turns}) as server:
            servers[name] = _storm_against("tidings", server, clients, events, live, processes)
        _print(name, servers[name])
    with ReplayCeiling() as ceiling:
        servers["ceiling"] = _storm_against("ceiling", ceiling, clients, events, live, processes)
    _print("ceiling", servers["ceiling"])
    tidings, ceiling = servers["tidings"], servers["ceiling"]
    ratio = (
        round(tidings["seconds"] / ceiling["seconds"], 2)
        if tidings["seconds"] and ceiling["seconds"]
        else None
    )
    print(f"  Tidings / ceiling time: {ratio}")
    return {
        "config": {"clients": clients, "events": events, "live": live, "live_rate": LIVE_RATE,
                   "workers": workers, "processes": processes, **env},
        "servers": servers,
        "tidings_time_of_ceiling": ratio,
        "target": {"seconds": TARGET_SECONDS, "live_p99_ms": TARGET_P99_MS},
        "met": tidings["seconds"] is not None
        and tidings["seconds"] <= TARGET_SECONDS
        and tidings["wrong_or_repeated"] == 0
        and not tidings["failed_attempts"]
        and tidings["live"]["missed_by_the_worst"] == 0
        and tidings["live"]["p99_ms"] is not None
        and tidings["live"]["p99_ms"] <= TARGET_P99_MS,
    }  # fmt: skip


def _print(name: str, figures: dict) -> None:
    live = figures["live"]
    print(
        f"  {name}: {figures['caught_up']:,} of {figures['clients']:,} caught up, the last after "
        f"{figures['seconds']} s; {figures['wrong_or_repeated']} wrong or repeated; failed "
        f"attempts {figures['failed_attempts'] or 'none'} ({figures['retries']} retries); "
        f"slowest connect {figures['connect_seconds_max']} s; server CPU "
        f"{figures['server_cpu_seconds']} s, storm processes' {figures['storm_cpu_seconds']} s; "
        f"p10/p50/p90 by process {figures['caught_up_seconds_by_process']}, answered "
        f"{figures['answered_seconds_by_process']}; live p50 "
        f"{live['p50_ms']} ms, p99 {live['p99_ms']} ms, worst missed "
        f"{live['missed_by_the_worst']} of {live['events']}"
    )


if __name__ == "__main__":
    uvloop.run(_main(sys.argv[1], sys.argv[2], *map(int, sys.argv[3:])))
