"""Live streams held by the worker's event loop, with no greenlet of their own.

Once a stream has replayed up to the head, its connection can be handed here. Then a wake
from the hub writes the stream's frames straight to its socket from the loop — one
non-blocking send per wake, no greenlet switch, no generator — and while nothing is
queued for it, it is written to with the other caught-up streams of its subscription, one
pass for all (feed.fanout). Its heartbeat is its subscriber's timer, and only a catch-up
from the log borrows a greenlet for a while. A socket that cannot take everything keeps
the rest until the loop says it is writable; meanwhile the hub queues, conflates or drops
frames for that stream as for any other.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import TYPE_CHECKING

import gevent
from gevent import get_hub
from gevent.monkey import get_original
from gevent.socket import wait_write

from .delivery import CATCH_UP, END
from .fanout import http_chunk

if TYPE_CHECKING:
    from .delivery import Stream

logger = logging.getLogger("tidings.parking")

# The socket module's own class: non-blocking sends that raise instead of waiting.
_socket_class = get_original("socket", "socket")
# libev's flags for "tell me when the socket is readable" and "... writable".
_READABLE, _WRITABLE = 1, 2
# What ends a chunked HTTP/1.1 body.
_LAST_CHUNK = b"0\r\n\r\n"


def own_socket(sock) -> object:
    """Return a non-blocking socket of our own on the connection `sock` holds: the server
    may close its object once it is done with the request, the connection stays open."""
    owned = _socket_class(fileno=os.dup(sock.fileno()))
    owned.setblocking(False)
    return owned


class Parked:
    """One live stream written to by the loop: its socket, and the bytes it has not taken."""

    __slots__ = ("stream", "sock", "chunked", "pending", "watcher", "reader", "ending", "on_close")

    def __init__(self, stream: Stream, sock, chunked: bool, on_close: Callable[[], None]):
        self.stream = stream
        self.sock = sock
        # Whether the response's body is HTTP/1.1 chunks (else it ends with the connection).
        self.chunked = chunked
        self.pending: memoryview | None = None
        self.watcher = None
        # Tells at once when the client hangs up, instead of at a write that fails.
        self.reader = None
        # Set once the stream's last bytes are sent or pending: then the socket closes.
        self.ending = False
        self.on_close = on_close

    def start(self) -> None:
        """Wait for the stream's first wake, and for the client to hang up."""
        self.reader = get_hub().loop.io(self.sock.fileno(), _READABLE)
        self.reader.start(self._readable)
        self._park()

    def _readable(self) -> None:
        """Close when the client hung up; a client says nothing else on a stream."""
        try:
            if self.sock.recv(4096):
                return
        except BlockingIOError:
            return
        except OSError:
            pass
        self.close()

    @property
    def cursor(self) -> int:
        """The id of the newest event its stream has: the group writes only what follows."""
        return self.stream.cursor

    def _park(self) -> None:
        """Wait for the next wake; with nothing queued, be written to with the streams of
        the same subscription (feed.fanout) until then."""
        stream = self.stream
        subscriber = stream.subscriber
        subscriber.park(self, stream.wait_seconds())
        if not subscriber.woken:
            stream.runtime.hub.attach(subscriber, self, stream.credential.expires_at)

    def switch(self) -> None:
        """Answer a wake or a heartbeat's timeout, from the loop: write what the stream has,
        or lend it a greenlet to catch up from the log."""
        if self.sock is None:
            return
        stream = self.stream
        subscriber = stream.subscriber
        if subscriber.group is not None:
            # What the group holds for it goes to its queue, and from there out, in order.
            stream.runtime.hub.detach(subscriber)
        try:
            frames, then = stream.live(subscriber.woken)
            if then is CATCH_UP:
                # Its writes fail if the client hangs up meanwhile: nothing closes the
                # socket under the greenlet.
                self.reader.stop()
                gevent.spawn(self._catch_up)
                return
            self.ending = then is END
            if frames or self.ending:
                self._send(b"".join(frames))
        except OSError:
            # The client went away (or its connection broke): nothing more to write.
            self.close()
            return
        except Exception:
            logger.exception("a parked stream failed; closing it")
            self.close()
            return
        self._next()

    def _next(self) -> None:
        """Park again, unless bytes are still pending (the watcher goes on) or it ended."""
        if self.pending is not None:
            return
        if self.ending:
            self.close()
        else:
            self._park()

    def _frame(self, data: bytes) -> bytes:
        if self.chunked:
            if data:
                data = http_chunk(data)
            if self.ending:
                data += _LAST_CHUNK
        return data

    def _send(self, data: bytes) -> None:
        """Send what the socket takes now; keep the rest for when it is writable."""
        data = self._frame(data)
        try:
            sent = self.sock.send(data)
        except BlockingIOError:
            sent = 0
        if sent < len(data):
            self._pend(memoryview(data)[sent:])

    def _pend(self, rest: memoryview) -> None:
        self.pending = rest
        self.watcher = get_hub().loop.io(self.sock.fileno(), _WRITABLE)
        self.watcher.start(self._writable)

    def write_shared(self, body: bytes, chunk: bytes, count: int, last_id: int) -> None:
        """Write frames its group was handed, from the loop; a short send leaves the group
        and stops the wait, the rest pending until the socket is writable."""
        data = chunk if self.chunked else body
        try:
            sent = self.sock.send(data)
        except BlockingIOError:
            sent = 0
        except OSError:
            self.close()
            return
        stream = self.stream
        stream.cursor = last_id
        stream.sent += count
        if sent < len(data):
            subscriber = stream.subscriber
            stream.runtime.hub.detach(subscriber)
            # Its wakes wait until the socket took the rest (then `_next` parks it again).
            subscriber.parked = None
            self._pend(memoryview(data)[sent:])

    def _writable(self) -> None:
        """Send more of the pending bytes; once all are sent, carry on."""
        try:
            sent = self.sock.send(self.pending)
        except BlockingIOError:
            return
        except OSError:
            self.close()
            return
        self.pending = self.pending[sent:]
        if self.pending:
            return
        self.pending = None
        self.watcher.stop()
        self.watcher = None
        self._next()

    def _catch_up(self) -> None:
        """Write what the log has for the stream, in this greenlet, then park again."""
        try:
            for chunk in self.stream.catch_up():
                self._send_all(self._frame(chunk))
        except OSError:
            self.close()
            return
        except Exception:
            logger.exception("a parked stream's catch-up failed; closing it")
            self.close()
            return
        self.reader.start(self._readable)
        self._park()

    def _send_all(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                view = view[self.sock.send(view) :]
            except BlockingIOError:
                wait_write(self.sock.fileno())

    def close(self) -> None:
        """Close the connection and let go of the stream."""
        sock, self.sock = self.sock, None
        if sock is None:
            return
        for watcher in (self.watcher, self.reader):
            if watcher is not None:
                watcher.stop()
        self.watcher = self.reader = None
        self.pending = None
        sock.close()
        try:
            self.stream.close()
        finally:
            # It may wait on Redis (the stream's slot), and this may run in a loop callback,
            # where nothing may block.
            gevent.spawn(self.on_close)
