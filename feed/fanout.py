"""Shared fan-out: the caught-up streams of one shared subscription, written to as one.

A parked stream with nothing queued joins the group of its shared subscription. The hub then
routes each event once to the group instead of once to each member, and one loop callback
writes what came meanwhile to every member in one pass: one join, one chunk header, one send
each — no queue, wake or switch per stream. A member leaves when a send does not take
everything (the rest pends, its own queue takes over), when it wakes for anything else (a
heartbeat, its credential's end, a resync: the group's frames it was not written go to its
queue first, so nothing is lost or repeated), and when it closes.
"""

from __future__ import annotations

import time
from bisect import bisect_right
from typing import TYPE_CHECKING, Protocol

from gevent import get_hub

if TYPE_CHECKING:
    from .filters import Subscription
    from .hub import Subscriber

# What `Group.push` answers the hub: the frame went to every member at once.
GROUPED = "grouped"


class Member(Protocol):
    """What a group writes to: a parked stream's connection, and the id of the newest event
    it has (a replay from the log can take it past the hub's head)."""

    cursor: int

    def write_shared(self, body: bytes, chunk: bytes, count: int, last_id: int) -> None:
        """Write `count` frames ending at `last_id`: `body` raw, or `chunk` as one HTTP chunk."""


class Group:
    """The members of one shared subscription, and the frames not yet written to them.

    The hub holds it among a topic's subscribers, so it answers what the hub asks of one.
    """

    __slots__ = ("subscription", "members", "ids", "frames")

    # A group never overflows nor ends: its members do, and leave it first.
    overflowed = False
    ended = None

    def __init__(self, subscription: Subscription):
        self.subscription = subscription
        # Each member's subscriber, its connection and when its credential expires.
        self.members: dict[Subscriber, tuple[Member, float | None]] = {}
        self.ids: list[int] = []
        self.frames: list[bytes] = []

    def push(self, event_id: int, frame: bytes) -> str:
        """Queue a frame for every member; the first since a write schedules the next."""
        if not self.ids:
            get_hub().loop.run_callback(self.flush)
        self.ids.append(event_id)
        self.frames.append(frame)
        return GROUPED

    def share(self, cursor: int) -> tuple[list[int], list[bytes]]:
        """Return the queued ids and frames after `cursor`."""
        skip = bisect_right(self.ids, cursor)
        return self.ids[skip:], self.frames[skip:]

    def flush(self) -> None:
        """Write the queued frames after each member's cursor to it, skipping those about to
        wake: a member whose credential ended (or expired: its timer is due) or that must
        resync ends or reads the log from its cursor."""
        ids, frames = self.ids, self.frames
        if not ids:
            return
        self.ids, self.frames = [], []
        body = b"".join(frames)
        chunk = http_chunk(body)
        first, last, count = ids[0], ids[-1], len(ids)
        now = time.time()
        # A member may leave while being written to (a short send, a broken connection).
        for subscriber, (member, expires_at) in list(self.members.items()):
            if subscriber.woken or (expires_at is not None and expires_at <= now):
                continue
            cursor = member.cursor
            if cursor < first:
                member.write_shared(body, chunk, count, last)
                continue
            # It joined while these were queued, having had those up to its cursor.
            skip = bisect_right(ids, cursor)
            if skip < count:
                rest = b"".join(frames[skip:])
                member.write_shared(rest, http_chunk(rest), count - skip, last)


def http_chunk(data: bytes) -> bytes:
    """Frame bytes as one chunk of an HTTP/1.1 chunked body."""
    return b"%x\r\n%s\r\n" % (len(data), data)
