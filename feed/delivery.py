"""Streams and polls: replay from the log, then live from the hub, each event exactly once."""

from __future__ import annotations

import random
import time
from bisect import bisect_right
from collections.abc import Iterator
from typing import TYPE_CHECKING

import gevent
import orjson

from . import sse
from .credentials import Credential
from .drain import let_go
from .errors import ApiError
from .filters import Subscription, TopicView, view_query
from .hub import Subscriber, render_frame
from .log import Event, same_log
from .principal import Principal
from .replays import Page

if TYPE_CHECKING:
    from .extension import FeedRuntime

# Events read from the log per query while replaying or polling.
PAGE = 500
# Bytes of frames one replay page aims at: large rows make pages of fewer events, so a
# stream stalled on a slow socket holds little of the log while it waits.
REPLAY_PAGE_BYTES = 128 * 1024
# Events of the first replay page, before the size of the rows is known: few, as rows may
# be large; the next pages grow toward PAGE when they are small.
FIRST_REPLAY_PAGE = 16
# The most bytes one write to a socket carries: a stalled socket holds at most this much.
CHUNK_BYTES = 64 * 1024
# Pages one poll may scan for matches before it answers with what it has.
POLL_SCAN_PAGES = 20

Match = tuple[Event, TopicView, str]


def _scan(
    runtime: FeedRuntime,
    subscription: Subscription,
    after: int,
    page: int = PAGE,
    *,
    exact: bool = False,
) -> tuple[list[Match], int, bool]:
    """Read one page of `page` events after a cursor — from the ring when it holds them all,
    else from the log; return matches, the position reached, and whether it is the head.

    The ring's head may trail the log's by a commit not relayed here yet. A stream or a long
    poll gets that one live, as the hub brings it; an `exact` read (a poll that answers at
    once) takes the ring only when it is ahead of the cursor, and asks the log for its head
    before it says it reached it.
    """
    ring = runtime.hub.ring
    if ring.ahead_of(after) if exact else ring.holds(after):
        events, position, at_head = ring.after(after, subscription.topics, page)
        ring.hits += 1
        if at_head and exact:
            at_head = _head(runtime) <= position
        return _matches(subscription, events), position, at_head
    ring.misses += 1
    with runtime.read() as conn:
        head = runtime.log.head(conn)
        if not same_log(after, head):
            # The log moved to another epoch: nothing here follows this cursor (it resets).
            return [], after, True
        events = runtime.log.read(
            conn, after, topics=list(subscription.topics), until=head, limit=page
        )
    matches = _matches(subscription, events)
    if len(events) < page:
        return matches, max(head, after), True
    return matches, events[-1].id, False


def _matches(subscription: Subscription, events: list[Event]) -> list[Match]:
    """Return the events the subscription sees, with its view and the op it sees."""
    matches = []
    for event in events:
        view = subscription.views[event.topic]
        op = view.effective_op(event.data)
        if op is not None:
            matches.append((event, view, op))
    return matches


def reset_for(runtime: FeedRuntime, subscription: Subscription, cursor: int | None) -> dict | None:
    """Return the reset a cursor calls for (expired or from another epoch), or None."""
    if cursor is None or runtime.hub.ring.holds(cursor):
        return None
    with runtime.read() as conn:
        bounds = runtime.log.bounds(conn)
    if bounds.expired(cursor):
        reason = "expired"
    elif bounds.from_other_epoch(cursor):
        reason = "epoch"
    else:
        return None
    return reset_body(runtime, subscription, reason, bounds.head)


def reset_body(runtime: FeedRuntime, subscription: Subscription, reason: str, head: int) -> dict:
    """Describe a reset: why, where the subscriber continues, and where to reload from."""
    runtime.metrics.reset_sent(reason)
    snapshots = {}
    for topic, view in subscription.views.items():
        if topic in runtime.tables:
            query = view_query(view)
            snapshots[topic] = f"/api/{topic}" + (f"?{query}" if query else "")
    first = next(iter(snapshots.values()), None)
    return {"reason": reason, "cursor": head, "snapshot": first, "snapshots": snapshots}


def _reset_frame(reset: dict) -> bytes:
    """Frame a reset; its id moves lastEventId to where the stream continues."""
    return sse.frame(orjson.dumps(reset), id=reset["cursor"], event="reset")


def _replay_page(runtime: FeedRuntime, subscription: Subscription, after: int, page: int) -> Page:
    """Read one replay page after a cursor, its frames joined into writes (the events
    themselves are let go). Streams of the same shared subscription replaying the same page
    of the ring share it."""
    ring = runtime.hub.ring

    def render() -> Page:
        matches, position, at_head = _scan(runtime, subscription, after, page)
        frames = [render_frame(event, view, op) for event, view, op in matches]
        size = sum(map(len, frames))
        return Page(tuple(chunks(frames)), len(matches), size, position, at_head)

    if not ring.holds(after):
        return render()
    return ring.replays.page(ring, subscription, after, page, render)


def _next_page(replayed: Page, page: int) -> int:
    """Size the next replay page so its frames come to about REPLAY_PAGE_BYTES."""
    if not replayed.frames:
        return page
    return max(1, min(PAGE, REPLAY_PAGE_BYTES * replayed.frames // replayed.size))


def chunks(frames: list[bytes]) -> Iterator[bytes]:
    """Write frames in joins of at most CHUNK_BYTES (or one frame, when it is larger),
    letting go of each join's frames before it is written."""
    while frames:
        size, end, count = len(frames[0]), 1, len(frames)
        while end < count and size + len(frames[end]) <= CHUNK_BYTES:
            size += len(frames[end])
            end += 1
        chunk = b"".join(frames[:end])
        del frames[:end]
        yield chunk


def _head(runtime: FeedRuntime) -> int:
    with runtime.read() as conn:
        return runtime.log.head(conn)


def _auth_expired_frame(reason: str, cursor: int) -> bytes:
    """Frame the end of a stream whose credential ended; its id keeps the cursor to resume."""
    return sse.frame(orjson.dumps({"reason": reason}), id=cursor, event="auth-expired")


# What a live stream does after a wake: wait for the next, catch up from the log, or end.
WAIT, CATCH_UP, END = "wait", "catch_up", "end"


class Stream:
    """One SSE response: its subscriber, cursor and counters.

    Its life has three parts, each a method, so that one stream's driver can be a greenlet
    of its own (iterating it, on any server) or the worker's loop (feed.parking, under
    gunicorn): `opening` replays up to the head, each wake's `live` says what to write and
    what comes next, `catch_up` reads from the log what the hub could not queue, and
    `close` lets go of everything the stream holds.
    """

    __slots__ = (
        "runtime",
        "subscription",
        "cursor",
        "sent",
        "subscriber",
        "principal",
        "credential",
        "presence",
        "heartbeat_seconds",
        "lives_in_greenlet",
    )

    def __init__(
        self,
        runtime: FeedRuntime,
        subscription: Subscription,
        cursor: int | None,
        principal: Principal | None = None,
    ):
        self.runtime = runtime
        self.subscription = subscription
        self.cursor = cursor
        self.sent = 0
        config = runtime.config
        self.subscriber = Subscriber(
            subscription, config["SUBSCRIBER_MAX_PENDING"], config["SUBSCRIBER_MAX_PENDING_BYTES"]
        )
        self.principal = principal
        self.credential = Credential(runtime.credentials, principal)
        self.presence = None
        # Read once: every wake of a live stream asks how long it may wait next.
        self.heartbeat_seconds = config["HEARTBEAT_SECONDS"]
        # Whether the greenlet reading it parks for the stream's life (it is iterated);
        # a driver that runs it from the loop (feed.parking) clears it.
        self.lives_in_greenlet = True

    def _read(self, read, *args):
        """Run a read (of the log, of Redis) and return what it returns: in a greenlet of
        its own when the stream's greenlet parks for the stream's life, as the pages of
        Python frame stack a read touches would stay resident with it; a helper's go back
        when it ends (measured: 15 us a read, so not for a driver that needs none)."""
        if self.lives_in_greenlet:
            return gevent.spawn(read, *args).get()
        return read(*args)

    def _replay(self) -> Iterator[bytes]:
        """Send every matching logged event after the cursor, up to the head, in pages sized
        by bytes and writes of bounded size."""
        page = FIRST_REPLAY_PAGE
        while True:
            replayed = self._read(_replay_page, self.runtime, self.subscription, self.cursor, page)
            self.sent += replayed.frames
            page = _next_page(replayed, page)
            yield from replayed.writes
            self.cursor = replayed.position
            if replayed.at_head:
                return

    def opening(self) -> Iterator[bytes]:
        """Register the stream, then yield its opening, its replay and its `ready` block."""
        runtime, subscriber, config = self.runtime, self.subscriber, self.runtime.config
        # Registered before the log is read, so nothing falls between replay and live.
        runtime.hub.add(subscriber)
        # The hub's shared copy: equal subscriptions of this process are one object.
        self.subscription = subscriber.subscription
        self.credential.watch(subscriber)
        # Counted once registered, so the stream sees its own user's join.
        topics = tuple(self.subscription.topics)
        self.presence = self._read(runtime.presence.opened, self.principal, topics)
        runtime.drain.opened(subscriber)
        retry = config["RETRY_MS"] + random.randint(0, config["RETRY_JITTER_MS"])
        opening = [sse.frame(retry=retry)]
        reset = self._read(reset_for, runtime, self.subscription, self.cursor)
        if reset is not None:
            opening.append(_reset_frame(reset))
            self.cursor = reset["cursor"]
        elif self.cursor is None:
            self.cursor = self._read(_head, runtime)
        yield b"".join(opening)
        yield from self._replay()
        ready = {"cursor": self.cursor, "replayed": self.sent}
        # The id moves a native EventSource's lastEventId past what replay scanned.
        yield sse.frame(orjson.dumps(ready), id=self.cursor, event="ready")

    def wait_seconds(self) -> float:
        """Return how long the stream may wait for its next wake: a heartbeat's interval,
        or less when its credential expires sooner."""
        return self.credential.wait_at_most(self.heartbeat_seconds)

    def live(self, woke: bool) -> tuple[list[bytes], str]:
        """Answer one wake (or, when not `woke`, a wait that timed out): the frames to
        write, and what comes next (WAIT, CATCH_UP or END)."""
        subscriber = self.subscriber
        ended = self.credential.ended(subscriber)
        if let_go(ended):
            # This worker stops or sheds streams: the client resumes on another.
            return [self.runtime.drain.farewell(self.cursor)], END
        if ended is not None:
            # Nothing more for this credential; the client signs in again and resumes.
            return [_auth_expired_frame(ended, self.cursor)], END
        taken = subscriber.take(self.runtime.hub.head, CHUNK_BYTES)
        if taken is None:
            return [], CATCH_UP
        ids, frames = taken
        # Only the frames still to write stay referenced while the socket drains.
        del taken
        # Ids ascend, so what replay already sent is a prefix of the queue.
        if ids and ids[0] <= self.cursor:
            frames = frames[bisect_right(ids, self.cursor) :]
        if frames:
            self.cursor = ids[-1]
            self.sent += len(frames)
            return frames, WAIT
        if not woke:
            self.cursor = max(self.cursor, subscriber.safe_cursor)
            return [sse.heartbeat(self.cursor)], WAIT
        return [], WAIT

    def catch_up(self) -> Iterator[bytes]:
        """Yield what the stream missed while it was too far behind to queue in memory, or
        after the log was recreated: from the log, after a reset if its cursor left it."""
        self.subscriber.overflowed = False
        reset = self._read(reset_for, self.runtime, self.subscription, self.cursor)
        if reset is not None:
            self.cursor = reset["cursor"]
            yield _reset_frame(reset)
        yield from self._replay()

    def close(self) -> None:
        """Let go of the stream's presence, registrations and timer."""
        runtime, subscriber = self.runtime, self.subscriber
        runtime.presence.closed(self.presence)
        self.presence = None
        runtime.drain.closed(subscriber)
        self.credential.unwatch(subscriber)
        runtime.hub.remove(subscriber)
        subscriber.close()

    def __iter__(self) -> Iterator[bytes]:
        """Yield the stream's bytes until the client goes away, waiting in this greenlet."""
        subscriber = self.subscriber
        try:
            yield from self.runtime.openings.admitted(self.opening())
            while True:
                frames, then = self.live(subscriber.wait(self.wait_seconds()))
                if frames:
                    yield from chunks(frames)
                if then is END:
                    return
                if then is CATCH_UP:
                    yield from self.catch_up()
        finally:
            self.close()


def poll(
    runtime: FeedRuntime,
    subscription: Subscription,
    cursor: int | None,
    limit: int,
    wait: float,
    principal: Principal | None = None,
) -> dict:
    """Answer one poll or long poll: matching events after the cursor, and the next cursor.

    A long poll whose credential ends while it waits answers 401 `auth_expired`.
    """
    reset = reset_for(runtime, subscription, cursor)
    if reset is not None:
        raise ApiError(
            410,
            "cursor_expired",
            "Events after this cursor are no longer in the log; reload the snapshot.",
            {"cursor": cursor},
            extra={"reset": reset},
        )
    if cursor is None:
        cursor = _head(runtime)
    waiter = Subscriber(subscription, max_pending=1)
    credential = Credential(runtime.credentials, principal)
    deadline = time.monotonic() + wait
    if wait > 0:
        runtime.hub.add(waiter)
        credential.watch(waiter)
    try:
        while True:
            ended = credential.ended(waiter)
            if let_go(ended):
                # This worker stops: answer now, the client polls again from the cursor.
                return {"events": [], "cursor": cursor, "more": False}
            if ended is not None:
                raise ApiError(
                    401,
                    "auth_expired",
                    "Your sign-in ended while waiting; sign in again and poll from your cursor.",
                    {"reason": ended, "cursor": cursor},
                )
            waiter.rearm()
            ring = runtime.hub.ring
            if wait > 0 and ring.holds(cursor):
                # A long poll: the ring answers, and what it has not got yet wakes it.
                events, position, more = _collect(runtime, subscription, cursor, limit, exact=False)
            elif ring.ahead_of(cursor):
                # Everything after the cursor is in memory, but for the log's head.
                events, position, more = _collect(runtime, subscription, cursor, limit)
            else:
                # Identical polls woken by one event share one read of the log.
                events, position, more = runtime.cache.poll(
                    runtime, subscription, cursor, limit, _collect
                )
            remaining = deadline - time.monotonic()
            if events or remaining <= 0:
                return {"events": events, "cursor": position, "more": more}
            cursor = position
            waiter.wait(credential.wait_at_most(remaining))
    finally:
        if wait > 0:
            credential.unwatch(waiter)
            runtime.hub.remove(waiter)
        waiter.close()


def _collect(
    runtime: FeedRuntime,
    subscription: Subscription,
    cursor: int,
    limit: int,
    *,
    exact: bool = True,
) -> tuple[list, int, bool]:
    """Gather up to `limit` matching events after the cursor; return them, the next cursor
    (the last event returned, or how far the log was read when none matched) and `more`."""
    events: list = []
    last_id = None
    position = cursor
    for _ in range(POLL_SCAN_PAGES):
        matches, position, at_head = _scan(runtime, subscription, position, exact=exact)
        for event, view, op in matches:
            shaped = view.shape(event.data, op)
            # Unchanged events go out as their stored bytes, not re-encoded.
            events.append(orjson.Fragment(event.raw) if shaped is event.data else shaped)
            last_id = event.id
            if len(events) == limit:
                return events, last_id, True
        if at_head:
            return events, position if last_id is None else last_id, False
    return events, position if last_id is None else last_id, True
