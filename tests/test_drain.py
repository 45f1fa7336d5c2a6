"""A stopped or reloaded server drains: readiness fails, streams end with a jittered `retry:`,
long polls and writes in flight are answered, and clients resume elsewhere losing nothing."""

import os
import signal
import socket
import threading
import time
import uuid

import orjson

from .delivery_tools import Writer, changes, create_bread_types, finish, head, ids, wait_for
from .roamer import Roamer
from .servers import http

QUERIES = (
    "topics=sales_logs,production_logs,shift_feedback,bread_types",
    "topics=sales_logs&sales_logs.shift=eq.night",
    "topics=production_logs&production_logs.select=id,quantity",
)
DRAIN_SECONDS = 2
READINESS_DRAINING = {
    "status": "draining",
    "error": "draining",
    "message": "This server is shutting down; send requests to another.",
    "details": {},
}
STREAM_DRAINING = {
    "error": "draining",
    "message": "This server is shutting down; try again shortly.",
    "details": {},
}
GRACEFUL_TIMEOUT = 3


def begun_request(url: str, line: str, headers: str = "") -> socket.socket:
    """Send a signed-in request's line (`GET /readyz`) and headers, all but the blank line
    that ends them unless `headers` ends with it."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    authorization = http(url).headers["Authorization"]
    sock.sendall(
        f"{line} HTTP/1.1\r\nHost: {host}\r\nAuthorization: {authorization}\r\n{headers}".encode()
    )
    return sock


def slow_write(url: str) -> tuple[socket.socket, bytes]:
    """Start a POST whose body is still to come: the write is in flight until it is sent."""
    body = orjson.dumps({"shift": "night", "note": "in flight", "mood": 3})
    headers = f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    return begun_request(url, "POST /api/shift_feedback", headers), body


def answer_of(sock: socket.socket) -> tuple[int, dict]:
    """Read a whole HTTP response from a stopping server, which closes the connection after
    it and says so (a client sends no other request on it)."""
    data = b""
    with sock:
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert b"\r\nconnection: close" in head.lower(), head
    return int(head.split()[1]), orjson.loads(body)


def long_poll(url: str, cursor: int, answers: list) -> None:
    """Wait up to 20 s for an event that never comes; note the answer and when it came."""
    response = http(url).get(
        f"{url}/api/changes",
        params={
            "topics": "bread_types",
            "bread_types.name": f"eq.{uuid.uuid4()}",
            "cursor": cursor,
            "wait": 20,
        },
        timeout=30,
    )
    answers.append((time.monotonic(), response.status_code, response.json()))


def test_sigterm_drains_streams_polls_and_writes_and_clients_resume_losing_nothing(start_server):
    settings = {
        "GRACEFUL_TIMEOUT": str(GRACEFUL_TIMEOUT),
        "DRAIN_SECONDS": str(DRAIN_SECONDS),
        "HEARTBEAT_SECONDS": "1",
    }
    node = start_server(workers=2, **settings)
    bread_types = create_bread_types(node.url)
    start = head(node.url)
    deadline = time.monotonic() + 45
    serving = {"url": node.url}
    roamers = [Roamer(lambda: serving["url"], QUERIES[n % 3], start, deadline) for n in range(30)]
    for roamer in roamers:
        roamer.start()
    wait_for(lambda: all(r.ready.is_set() for r in roamers), 15, "the streams to be ready")
    writer = Writer(node.url, bread_types, seed=1)
    stop_writing = threading.Event()

    def write() -> None:
        while not stop_writing.is_set():
            try:
                writer.step()
            except OSError:
                return

    writing = threading.Thread(target=write, daemon=True)
    writing.start()
    wait_for(lambda: len(writer.written) >= 20, 20, "20 acknowledged writes")
    poll_answers: list = []
    poller = threading.Thread(target=long_poll, args=(node.url, head(node.url), poll_answers))
    poller.start()
    in_flight, body = slow_write(node.url)
    # A readiness request and a stream whose headers end only once the drain has begun.
    probe = begun_request(node.url, "GET /readyz")
    late_stream = begun_request(node.url, f"GET /stream?{QUERIES[0]}")
    time.sleep(0.3)

    serving["url"] = None
    stopped = threading.Event()
    exit_seconds = []
    stopper = threading.Thread(
        target=lambda: (exit_seconds.append(node.terminate()), stopped.set()), daemon=True
    )
    sigterm_at = time.monotonic()
    stopper.start()
    wait_for(lambda: all(r.ends for r in roamers), 5, "every stream to end")
    probe.sendall(b"\r\n")
    assert answer_of(probe) == (503, READINESS_DRAINING)
    # Opened, the stream would only be let go again: it is asked to come back shortly.
    late_stream.sendall(b"\r\n")
    assert answer_of(late_stream) == (503, STREAM_DRAINING)
    in_flight.sendall(body)
    status, written = answer_of(in_flight)
    assert status == 201, written
    poller.join(timeout=5)
    stopped.wait(15)
    stop_writing.set()
    writing.join(timeout=10)
    took, output = exit_seconds[0]
    assert took < GRACEFUL_TIMEOUT - 0.5, f"{took:.2f} s to exit\n{output}"
    assert "graceful timeout" not in output, output

    [(answered_at, poll_status, poll_body)] = poll_answers
    assert poll_status == 200 and poll_body["events"] == [] and poll_body["cursor"] >= start
    assert answered_at - sigterm_at < 1.5
    for roamer in roamers:
        [end] = roamer.ends
        assert end.clean, "a stream was cut instead of ended"
        assert 0 <= end.retry <= DRAIN_SECONDS * 1000
        assert end.at - sigterm_at < 1.5
    assert len({r.ends[0].retry for r in roamers}) > 10, "retries are not spread"

    # A fresh server on the same database and Redis takes every client back.
    fresh = start_server(workers=1, **settings)
    serving["url"] = fresh.url
    acknowledged = {w.event for w in writer.written} | {written["event"]}
    everything = ids(changes(fresh.url, QUERIES[0], start))
    assert acknowledged <= set(everything)
    finish(fresh.url, roamers, start, deadline)


def test_a_reload_drains_the_old_workers_streams_to_the_new_ones(start_server):
    node = start_server(workers=1, DRAIN_SECONDS="1", HEARTBEAT_SECONDS="1", GRACEFUL_TIMEOUT="3")
    bread_types = create_bread_types(node.url)
    start = head(node.url)
    deadline = time.monotonic() + 30
    roamers = [Roamer(lambda: node.url, QUERIES[n % 3], start, deadline) for n in range(10)]
    for roamer in roamers:
        roamer.start()
    wait_for(lambda: all(r.ready.is_set() for r in roamers), 15, "the streams to be ready")
    [old] = node.worker_pids()
    os.kill(node.process.pid, signal.SIGHUP)
    wait_for(lambda: all(r.ends for r in roamers), 10, "every stream to end")
    assert all(r.ends[0].clean and r.ends[0].retry <= 1000 for r in roamers)
    wait_for(lambda: node.worker_pids() and old not in node.worker_pids(), 10, "the new worker")
    writer = Writer(node.url, bread_types, seed=2)
    writer.run(30)
    finish(node.url, roamers, start, deadline)
    assert "graceful timeout" not in node.output()


def test_ctrl_c_stops_the_master_and_its_workers_without_a_traceback(start_server):
    server = start_server(workers=2)
    for _ in range(4):
        assert http(server.url).get(f"{server.url}/healthz", timeout=5).status_code == 200
    # Ctrl-C in a terminal interrupts the whole process group, master and workers alike.
    os.killpg(server.process.pid, signal.SIGINT)
    code = server.process.wait(timeout=10)
    output = server.output()
    assert code == 0 and "Traceback" not in output, output
