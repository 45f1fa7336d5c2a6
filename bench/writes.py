"""Writes over HTTP: 8 keep-alive writers inserting feedback rows into Tidings (1 and 2
gevent workers) and into a plain Flask + SQLAlchemy endpoint storing the same rows
(bench/plain_writes_app.py), in the same run, on SQLite and then on PostgreSQL.

Commit → deliver at 100 writes/s to 1,000 subscribers is the `commit_latency` scenario.
"""

import http.client
import os
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from pathlib import Path

import orjson

from tests.servers import TidingsServer, free_port

from .publisher import request_ms, run_all
from .scale import postgres_and_redis
from .server import BenchServer, authorization, cpu_seconds

BENCH = Path(__file__).resolve().parent
WRITERS = 8
WARM_SECONDS = 1.5
SECONDS = 8.0
WORKERS = (1, 2)
# The target: Tidings keeps this share of the plain endpoint's writes/s, within this p99.
OF_PLAIN = 0.67
P99_MS = 100


class PlainServer:
    """bench/plain_writes_app.py on gunicorn + gevent with `workers` workers."""

    def __init__(self, database_url: str, workers: int):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.database_url = database_url
        self.workers = workers
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> "PlainServer":
        gunicorn = str(Path(sys.executable).parent / "gunicorn")
        env = {**os.environ, "PLAIN_DATABASE_URL": self.database_url}
        # The tables first, once: workers creating them at once on PostgreSQL collide, and
        # the loser dies.
        subprocess.run([sys.executable, "-c", "import plain_writes_app"], cwd=BENCH, env=env,
                       check=True)  # fmt: skip
        # From bench/: the project's gunicorn.conf.py is Tidings' own.
        self.process = subprocess.Popen(
            [gunicorn, "-k", "gevent", "-w", str(self.workers), "--keep-alive", "5",
             "--log-level", "warning", "-b", f"127.0.0.1:{self.port}", "plain_writes_app:app"],
            cwd=BENCH,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while len(self.worker_pids()) < self.workers or not self._answers():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.__exit__()
                raise RuntimeError("the plain write app did not come up")
            time.sleep(0.1)
        return self

    # Both read only self.url and self.process.
    _answers = TidingsServer._healthy
    worker_pids = TidingsServer.worker_pids

    def __exit__(self, *exc) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, 9)
            self.process.wait()


def hammer(url: str, seconds: float, writers: int = WRITERS) -> dict:
    """Have `writers` keep-alive connections POST feedback rows back to back for `seconds`;
    return writes/s, request p50/p99 and the statuses."""
    host, port = url.split("//", 1)[1].split(":")
    headers = {"Content-Type": "application/json", **authorization(url)}
    took: list[float] = []
    statuses: dict[int | str, int] = {}
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds

    def writer(n: int) -> None:
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        try:
            sent = 0
            while time.monotonic() < stop_at:
                body = {"shift": "morning", "note": f"writer {n} row {sent}", "mood": 3}
                began = time.monotonic()
                try:
                    conn.request("POST", "/api/shift_feedback", orjson.dumps(body), headers)
                    response = conn.getresponse()
                    response.read()
                    status = response.status
                except (OSError, http.client.HTTPException) as error:
                    # A dropped connection counts against the server; the writer reconnects.
                    status = type(error).__name__
                    conn.close()
                sent += 1
                with lock:
                    statuses[status] = statuses.get(status, 0) + 1
                    if status == 201:
                        took.append(time.monotonic() - began)
        finally:
            conn.close()

    elapsed = run_all([threading.Thread(target=writer, args=(n,)) for n in range(writers)])
    return {
        "writes_per_second": round(len(took) / elapsed, 1),
        "request_ms": request_ms(took),
        "statuses": {str(k): v for k, v in sorted(statuses.items(), key=str)},
    }


def _run(server) -> dict:
    """Warm a server up, then measure it; add its workers' CPU share."""
    hammer(server.url, WARM_SECONDS)
    pids = server.worker_pids()
    before = [cpu_seconds(pid) for pid in pids]
    started = time.monotonic()
    figures = hammer(server.url, SECONDS)
    elapsed = time.monotonic() - started
    used = sum(cpu_seconds(pid) - b for pid, b in zip(pids, before, strict=True))
    figures["worker_cpu_share"] = round(used / elapsed, 2)
    # What a loaded machine distorts least: the workers' CPU time per committed write.
    figures["cpu_ms_per_write"] = round(
        used / max(figures["writes_per_second"] * elapsed, 1) * 1e3, 2
    )
    return figures


def _compare(name: str, tidings: dict, plain: dict) -> dict:
    """Put Tidings' and the plain app's runs side by side, worker count by worker count."""
    figures = {"tidings": tidings, "plain": plain}
    for workers in WORKERS:
        ours, theirs = tidings[str(workers)], plain[str(workers)]
        ratio = round(ours["writes_per_second"] / max(theirs["writes_per_second"], 1), 2)
        figures[f"tidings_of_plain_{workers}w"] = ratio
        per_cpu = round(theirs["cpu_ms_per_write"] / max(ours["cpu_ms_per_write"], 0.01), 2)
        figures[f"tidings_of_plain_per_cpu_second_{workers}w"] = per_cpu
        print(
            f"  {name}, {workers} worker(s): Tidings {ours['writes_per_second']}/s p50 "
            f"{ours['request_ms']['p50']} p99 {ours['request_ms']['p99']} ms cpu "
            f"{ours['worker_cpu_share']} ({ours['cpu_ms_per_write']} ms/write) {ours['statuses']}; "
            f"plain {theirs['writes_per_second']}/s p50 {theirs['request_ms']['p50']} p99 "
            f"{theirs['request_ms']['p99']} ms cpu {theirs['worker_cpu_share']} "
            f"({theirs['cpu_ms_per_write']} ms/write) {theirs['statuses']}; ratio {ratio}, "
            f"per CPU-second {per_cpu}"
        )
    figures["tidings_2w_of_1w"] = round(
        tidings["2"]["writes_per_second"] / max(tidings["1"]["writes_per_second"], 1), 2
    )
    figures["met"] = (
        all(figures[f"tidings_of_plain_{w}w"] >= OF_PLAIN for w in WORKERS)
        and all(tidings[str(w)]["request_ms"]["p99"] <= P99_MS for w in WORKERS)
        and figures["tidings_2w_of_1w"] >= 1
        and all(set(run["statuses"]) == {"201"} for run in (*tidings.values(), *plain.values()))
    )
    return figures


def _on_sqlite() -> dict:
    tidings, plain = {}, {}
    for workers in WORKERS:
        with BenchServer(workers=workers) as server:
            tidings[str(workers)] = _run(server)
        with tempfile.TemporaryDirectory(prefix="tidings-plain-") as directory:
            with PlainServer(f"sqlite:///{directory}/plain.db", workers) as server:
                plain[str(workers)] = _run(server)
    return _compare("SQLite", tidings, plain)


def _on_postgres() -> dict:
    tidings, plain = {}, {}
    with ExitStack() as stack:
        database, redis = postgres_and_redis(stack)
        for workers in WORKERS:
            url = database.create_database(f"tidings_{workers}")
            server = TidingsServer(url, redis.url, workers=workers).start(timeout=30)
            try:
                tidings[str(workers)] = _run(server)
            finally:
                server.stop()
            with PlainServer(database.create_database(f"plain_{workers}"), workers) as server:
                plain[str(workers)] = _run(server)
    return _compare("PostgreSQL", tidings, plain)


def writes() -> dict:
    """Writes/s and request p50/p99 of Tidings against the plain endpoint, same rows, same run."""
    print(
        f"writes: {WRITERS} keep-alive writers POST /api/shift_feedback back to back for "
        f"{SECONDS:g} s each, Tidings and a plain Flask + SQLAlchemy app storing the same rows, "
        f"{WORKERS} gevent worker(s); load average {os.getloadavg()[0]:.1f}"
    )
    sqlite = _on_sqlite()
    pg = _on_postgres()
    print(f"  load average after: {os.getloadavg()[0]:.1f}")
    return {
        "config": {"writers": WRITERS, "seconds": SECONDS, "workers": WORKERS},
        "sqlite": sqlite,
        "postgresql": pg,
        "load_average_after": os.getloadavg(),
        "target": {"of_plain": OF_PLAIN, "p99_ms": P99_MS},
        "met": sqlite["met"] and pg["met"],
    }
