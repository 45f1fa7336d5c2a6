"""Tuning of a serving gevent worker: cheaper socket writes, lean greenlets, calmer GC, and
a drain when it is told to stop."""

import contextlib
import gc
import resource
import signal
import socket
import time
import weakref

import gevent
from gevent import socket as gevent_socket
from gevent.server import StreamServer
from gunicorn.http.wsgi import Response
from gunicorn.workers import ggevent

from blueprints.http import json_response
from feed import drain

_gevent_sendall = gevent_socket.socket.sendall


def sendall(self, data, flags=0):
    """Send what the kernel takes at once; only the rest goes through gevent's sendall.

    gevent's sendall asks the kernel for SO_SNDBUF on every call: one extra syscall per SSE
    write (~10% of a worker's time at 100,000 writes/s). A stream's write almost always fits.
    """
    if type(data) is not bytes:
        return _gevent_sendall(self, data, flags)
    try:
        sent = self._sock.send(data, flags)
    except BlockingIOError:
        sent = 0
    if sent < len(data):
        _gevent_sendall(self, memoryview(data)[sent:], flags)


# Files a worker holds besides its clients' sockets: database, Redis, logs, metrics files.
RESERVED_FILES = 64


def make_room_for(connections: int) -> str | None:
    """Raise the open-files limit toward what `connections` need; return a warning when the
    hard limit still caps them."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = connections + RESERVED_FILES
    if soft < wanted:
        soft = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    if soft >= wanted:
        return None
    return (
        f"RLIMIT_NOFILE caps each worker at about {soft - RESERVED_FILES} connections, fewer "
        f"than WORKER_CONNECTIONS={connections}: clients beyond that are refused. Raise the "
        f"limit (ulimit -n, or LimitNOFILE= in the systemd unit) or lower WORKER_CONNECTIONS."
    )


# Where the kernel says how long a listen queue may be.
SOMAXCONN = "/proc/sys/net/core/somaxconn"


def check_backlog(backlog: int, somaxconn: str = SOMAXCONN) -> str | None:
    """Return a warning when the kernel caps the listen backlog below `backlog`."""
    try:
        with open(somaxconn) as limit:
            cap = int(limit.read())
    except (OSError, ValueError):
        return None
    if cap >= backlog:
        return None
    return (
        f"net.core.somaxconn={cap} caps the listen backlog below LISTEN_BACKLOG={backlog}: "
        f"clients reconnecting at once beyond it wait for retransmitted SYNs or are reset. "
        f"Raise it (sysctl net.core.somaxconn={backlog}) or lower LISTEN_BACKLOG."
    )


class BurstServer(StreamServer):
    """gunicorn's server of a gevent worker, taking gevent's burst of connections per wake-up.

    With several workers gunicorn accepts one connection per turn of a worker's loop, to
    spread them; a worker busy with thousands of reconnecting streams turns slowly, the listen
    queue overflows and clients are reset or wait for retransmitted SYNs (measured: 1,100 of
    10,000 reset in a reconnect storm). Every worker is woken by a new connection, so they
    still share a burst.
    """

    @property
    def max_accept(self) -> int:
        return StreamServer.max_accept

    @max_accept.setter
    def max_accept(self, value: int) -> None:
        # gunicorn's one per turn is the slow accept described above.
        pass


def prepare() -> None:
    """Tune gevent and gunicorn's gevent worker before the app starts."""
    gevent_socket.socket.sendall = sendall
    ggevent.StreamServer = BurstServer
    # Each connection's greenlet would keep a record of where it was spawned; nothing reads it.
    gevent.config.track_greenlet_tree = False


def settle() -> None:
    """Tune the collector once the app is up.

    Start-up objects live as long as the process: keep them out of every collection, and let
    a fan-out to thousands of streams finish before the young generation is scanned. Measured
    (bench, 1,000 streams): GC time 1.9 s -> 0.1 s per run, no more 100+ ms full-collection
    pauses.
    """
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)


class KeepAlives:
    """The client connections of this worker that wait for their next request.

    A stopping gevent worker waits for every connection to end, and one kept alive ends only
    at gunicorn's `keepalive` timeout, past `graceful_timeout`: the worker would be killed
    instead of exiting. Shutting their reading side ends that wait at once. Once stopping,
    every answer closes its connection, so no client sends another request on it; a request
    that still comes on a connection let go (sent as it was shut) is refused whole, 503 with
    Retry-After, never read: its body may be cut short by the shut reading side.
    """

    def __init__(self) -> None:
        self.idle: weakref.WeakSet = weakref.WeakSet()
        self.let_go: weakref.WeakSet = weakref.WeakSet()
        self.stopping = False

    def wrap(self, app):
        """Return the WSGI app, noting that each request's connection is busy again."""

        def serve(environ, start_response):
            sock = environ.get("gunicorn.socket")
            if sock is not None:
                self.idle.discard(sock)
            if self.stopping and sock in self.let_go:
                refusal = drain.refusal()
                answer = json_response(refusal.body(), refusal.status, refusal.headers)
                body = answer(environ, start_response)
            else:
                body = app(environ, start_response)
            # gunicorn sends the headers with the body's first write, after this: a request
            # answered once the worker stops (even one that began before) says it closes.
            server_response = getattr(start_response, "__self__", None)
            if self.stopping and isinstance(server_response, Response):
                server_response.force_close()
            return body

        return serve

    def answered(self, sock) -> None:
        """Note a connection that answered its request; a stopping worker lets it go."""
        if sock is None:
            return
        if self.stopping:
            self._let_go(sock)
        else:
            self.idle.add(sock)

    def stop(self) -> None:
        """Let every waiting connection go, and each one that answers from now on."""
        self.stopping = True
        for sock in list(self.idle):
            self._let_go(sock)
        self.idle.clear()

    def _let_go(self, sock) -> None:
        self.let_go.add(sock)
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RD)


KEEPALIVES = KeepAlives()
# The longest a stopping worker waits for its streams to go before gunicorn's own wait.
LINGER_SECONDS = 1.0


def drain_on_stop(worker) -> None:
    """Drain the worker when gunicorn stops it with SIGTERM (a stop, or the old workers of
    a reload): readiness fails, streams and long polls are let go to reconnect elsewhere,
    requests in flight finish, kept-alive connections close; then gunicorn's flag is set,
    and its loop finds nothing left to wait for.

    While its streams go (LINGER_SECONDS at most) the worker still accepts, so a proxy's
    health check meets the 503 before connections are refused. The signal handler only
    spawns: it may run inside any greenlet, even the hub, where nothing may block.
    """
    drain = worker.wsgi.extensions["tidings"].drain
    worker.wsgi = KEEPALIVES.wrap(worker.wsgi)

    def stopping(sig, frame) -> None:
        drain.begin()
        KEEPALIVES.stop()
        deadline = time.monotonic() + LINGER_SECONDS
        while not drain.drained() and time.monotonic() < deadline:
            gevent.sleep(0.05)
        worker.handle_exit(sig, frame)

    signal.signal(signal.SIGTERM, lambda sig, frame: gevent.spawn(stopping, sig, frame))


class Worker(ggevent.GeventWorker):
    """gunicorn's gevent worker, leaving Ctrl-C to the master from the moment it has signals."""

    def init_signals(self) -> None:
        """Ignore SIGINT: Ctrl-C reaches the terminal's whole process group, and the master
        stops its workers itself (SIGQUIT). Quitting on both, a worker got the second while
        exiting from the first and printed a SystemExit traceback. Ignored here, before the
        app loads, not once it has: a worker still booting when Ctrl-C came printed one too."""
        super().init_signals()
        signal.signal(signal.SIGINT, signal.SIG_IGN)
