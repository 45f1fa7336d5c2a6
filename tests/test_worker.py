"""The worker's sendall: whatever the kernel takes at once, the rest follows, nothing lost."""

import gevent
from gevent import socket

import worker


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
