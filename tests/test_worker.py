"""The worker's tuning: a sendall that loses nothing, the file limit and listen backlog sized
for the connections (or a warning), connections accepted in bursts, and kept-alive
connections let go when it stops."""

import subprocess
import sys

import gevent
import orjson
from gevent import socket
from gevent.server import StreamServer

import worker

from .servers import ROOT


def test_sendall_delivers_writes_larger_than_the_socket_buffer():
    left, right = socket.socketpair()
    left.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    payload = bytes(range(256)) * 8192  # 2 MiB: many partial sends
    expected = payload + b"tail"
    received = bytearray()

    def read():
        while len(received) < len(expected):
            received.extend(right.recv(65536))

    reader = gevent.spawn(read)
    worker.sendall(left, payload)
    worker.sendall(left, memoryview(b"tail"))
    reader.join(timeout=10)
    left.close()
    right.close()
    assert bytes(received) == expected


def _make_room_under(hard: int, connections: int) -> list[str]:
    """Run make_room_for in a child whose hard open-files limit is `hard`; return
    [warning, soft limit after]."""
    script = (
        "import resource, worker\n"
        f"resource.setrlimit(resource.RLIMIT_NOFILE, (256, {hard}))\n"
        f"print(worker.make_room_for({connections}))\n"
        "print(resource.getrlimit(resource.RLIMIT_NOFILE)[0])\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return done.stdout.splitlines()


def test_the_file_limit_is_raised_to_fit_the_connections():
    warning, soft = _make_room_under(hard=4096, connections=1000)
    assert warning == "None"
    assert int(soft) == 1000 + worker.RESERVED_FILES


def test_a_hard_file_limit_below_the_connections_is_warned_of():
    warning, soft = _make_room_under(hard=1024, connections=10_000)
    assert int(soft) == 1024
    assert "RLIMIT_NOFILE caps each worker at about 960 connections" in warning
    assert "WORKER_CONNECTIONS=10000" in warning


def test_a_backlog_the_kernel_caps_is_warned_of(tmp_path):
    somaxconn = tmp_path / "somaxconn"
    somaxconn.write_text("4096\n")
    assert worker.check_backlog(4096, str(somaxconn)) is None
    warning = worker.check_backlog(10_000, str(somaxconn))
    assert "net.core.somaxconn=4096 caps the listen backlog" in warning
    assert "LISTEN_BACKLOG=10000" in warning
    assert worker.check_backlog(10_000, str(tmp_path / "absent")) is None


def test_the_server_warns_at_start_up_of_a_capped_backlog(start_server):
    with open(worker.SOMAXCONN) as limit:
        above = int(limit.read()) + 1
    server = start_server(LISTEN_BACKLOG=str(above))
    assert f"LISTEN_BACKLOG={above}" in server.output()


def test_a_worker_accepts_a_burst_of_connections_per_turn():
    server = worker.BurstServer(("127.0.0.1", 0), handle=lambda sock, address: None)
    # What gunicorn sets for more than one worker: one connection per turn of the loop.
    server.max_accept = 1
    assert server.max_accept == StreamServer.max_accept > 1


def _answer(serve, sock) -> tuple[str, dict, bytes]:
    """Answer one request on `sock` through the wrapped app; return status, headers, body."""
    answered = {}

    def start_response(status, headers, exc_info=None):
        answered.update(status=status, headers=dict(headers))

    body = b"".join(serve({"REQUEST_METHOD": "POST", "gunicorn.socket": sock}, start_response))
    return answered["status"], answered["headers"], body


def test_a_request_on_a_connection_let_go_by_a_stopping_worker_is_refused_unread():
    served = []

    def app(environ, start_response):
        served.append(environ["gunicorn.socket"])
        start_response("201 Created", [("Content-Type", "application/json")])
        return [b"{}"]

    keepalives = worker.KeepAlives()
    serve = keepalives.wrap(app)
    idle, idle_peer = socket.socketpair()
    busy, busy_peer = socket.socketpair()
    keepalives.answered(idle)
    keepalives.stop()
    # The idle one was let go: a request that still comes on it is not the app's.
    status, headers, body = _answer(serve, idle)
    assert status.startswith("503") and headers["Retry-After"] == "1"
    assert orjson.loads(body)["error"] == "draining"
    assert served == []
    # One that was busy is served; once answered, it is let go too.
    assert _answer(serve, busy)[0] == "201 Created" and served == [busy]
    keepalives.answered(busy)
    assert _answer(serve, busy)[0].startswith("503") and served == [busy]
    for sock in (idle, idle_peer, busy, busy_peer):
        sock.close()
