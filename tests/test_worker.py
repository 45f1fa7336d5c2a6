"""The worker's sendall: whatever the kernel takes at once, the rest follows, nothing lost."""

import subprocess
import sys

import gevent
from gevent import socket

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
