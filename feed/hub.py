"""In-process fan-out: topic → subscribers, each with a bounded queue of ready frames.

A subscriber whose queue passes its budget (frames or bytes) is conflated first: a table
row changed several times while it was behind keeps only its latest change, in the order of
latest changes, `low`-priority topics before `normal` ones. `high` topics are never
conflated; when conflating does not free half the budget, the queue is dropped and the
stream catches up from the log, exactly.
"""

import logging
from collections import defaultdict

import orjson
from gevent import get_hub, getcurrent

from . import sse
from .fanout import GROUPED, Group, Member
from .filters import Subscription, TopicView
from .log import Event
from .ring import Ring

logger = logging.getLogger("tidings.hub")
# Marks a view not yet evaluated for the event being delivered.
_UNSEEN = object()
# What each conflation pass may merge, in turn: `high` topics are never merged.
_CONFLATED_FIRST = (frozenset({"low"}), frozenset({"low", "normal"}))
_DATA = b"\ndata: "


# Subscribers woken since the loop last ran: one loop callback resumes them all, instead
# of one callback each (measured: scheduling one costs ~1.1 us, a list append ~0.3 us).
_woken: list["Subscriber"] = []


def _resume_soon(subscriber: "Subscriber") -> None:
    if not _woken:
        get_hub().loop.run_callback(_resume_woken)
    _woken.append(subscriber)


def _resume_woken() -> None:
    global _woken
    batch, _woken = _woken, []
    for subscriber in batch:
        try:
            subscriber._resume()
        except Exception:
            # One waiter's failure must not leave the others of the batch unwoken.
            logger.exception("resuming a woken subscriber failed")


def row_key(frame: bytes) -> tuple[str, object] | None:
    """Return the (topic, primary key) a change frame is about; None for custom topics."""
    data = orjson.loads(frame[frame.index(_DATA) + len(_DATA) : -2])
    pk = data.get("pk")
    return None if pk is None else (data["topic"], pk)


def render_frame(event: Event, view: TopicView, op: str) -> bytes:
    """Frame an event as a view sees it; the stored bytes are reused when nothing changes."""
    if op == event.data["op"] and view.select is None:
        return sse.change_frame(event.id, event.raw)
    return sse.change_frame(event.id, orjson.dumps(view.shape(event.data, op)))


class Subscriber:
    """One stream or long-poll waiter: its subscription, queued frames and its parked greenlet.

    It parks its one waiting greenlet itself instead of using a gevent Event with a Timeout
    per wait: an idle stream keeps one timer, rearmed in place, and its parked greenlet
    saves a shorter stack (measured: ~880 bytes less per idle connection, no allocation per
    wake).
    """

    __slots__ = (
        "subscription",
        "ids",
        "frames",
        "woken",
        "parked",
        "timer",
        "timer_seconds",
        "overflowed",
        "safe_cursor",
        "max_pending",
        "max_bytes",
        "pending_bytes",
        "ended",
        "group",
    )

    def __init__(self, subscription: Subscription, max_pending: int, max_bytes: int = 0):
        self.subscription = subscription
        # Queued event ids (ascending) and their frames, side by side: no tuple per delivery,
        # so a fan-out to thousands of subscribers allocates nothing the collector tracks.
        self.ids: list[int] = []
        self.frames: list[bytes] = []
        # Set when something was queued (or overflowed) since the last take.
        self.woken = False
        self.parked = None
        self.timer = None
        self.timer_seconds = 0.0
        # Set when the queue filled up: frames were dropped and must be read from the log.
        self.overflowed = False
        # Every event up to here was either queued or does not match.
        self.safe_cursor = 0
        self.max_pending = max_pending
        # A byte budget for the queue; 0 for none, and no conflation (a long-poll waiter).
        self.max_bytes = max_bytes
        self.pending_bytes = 0
        # Why its credential ended (expired, revoked, logged_out), once it has.
        self.ended: str | None = None
        # The group it is written to with, while it is caught up and parked (feed.fanout).
        self.group: Group | None = None

    def push(self, event_id: int, frame: bytes) -> str | None:
        """Queue a frame; past the budget, conflate first, or drop the queue for the log.
        Return what making room took ("conflated" or "overflowed"), None when nothing."""
        made_room = None
        if len(self.ids) >= self.max_pending or self.pending_bytes > self.max_bytes > 0:
            made_room = self._make_room()
            if self.overflowed:
                return made_room
        self.ids.append(event_id)
        self.frames.append(frame)
        self.pending_bytes += len(frame)
        self._wake()
        return made_room

    def _make_room(self) -> str:
        """Conflate until the queue is within half its budget, or else resync."""
        if self.max_bytes:
            for merged in _CONFLATED_FIRST:
                self._conflate(merged)
                if len(self.ids) <= self.max_pending // 2 and self.pending_bytes <= (
                    self.max_bytes // 2
                ):
                    return "conflated"
        self.resync()
        return "overflowed"

    def _conflate(self, merged: frozenset[str]) -> None:
        """Keep only the latest queued change of each row on topics of the `merged`
        priorities, where that latest change stands; other frames stay as they are."""
        views = self.subscription.views
        keys = [row_key(frame) for frame in self.frames]
        latest = {
            key: at
            for at, key in enumerate(keys)
            if key is not None and views[key[0]].priority in merged
        }
        kept = [at for at, key in enumerate(keys) if key is None or latest.get(key, at) == at]
        self.ids = [self.ids[at] for at in kept]
        self.frames = [self.frames[at] for at in kept]
        self.pending_bytes = sum(map(len, self.frames))

    def resync(self) -> None:
        """Drop the queue and wake the waiter: it must catch up from the log."""
        self.overflowed = True
        self.ids.clear()
        self.frames.clear()
        self.pending_bytes = 0
        self._wake()

    def end(self, reason: str) -> None:
        """Mark the credential behind this subscriber ended, and wake its waiter."""
        self.ended = reason
        self._wake()

    def _wake(self) -> None:
        if not self.woken:
            self.woken = True
            if self.parked is not None:
                _resume_soon(self)

    def wait(self, seconds: float) -> bool:
        """Park the calling greenlet until something is queued or `seconds` pass; return
        whether something was queued."""
        if not self.woken:
            self._arm(seconds)
            self.parked = getcurrent()
            try:
                get_hub().switch()
            finally:
                self.parked = None
        return self.woken

    def park(self, parked, seconds: float) -> None:
        """Have `parked.switch()` called from the loop on the next wake, or once `seconds`
        pass without one: a waiter with no greenlet of its own."""
        self._arm(seconds)
        self.parked = parked
        if self.woken:
            _resume_soon(self)

    def _arm(self, seconds: float) -> None:
        timer = self.timer
        if timer is None or self.timer_seconds != seconds:
            if timer is not None:
                timer.close()
            timer = self.timer = get_hub().loop.timer(seconds, seconds)
            self.timer_seconds = seconds
        # Restarts the countdown from now, in place: no allocation per wait.
        timer.again(self._expire)

    def _resume(self) -> None:
        # Scheduled by push; a no-op once the waiter took the queue and parked again.
        if self.woken:
            self._expire()

    def _expire(self) -> None:
        parked = self.parked
        if parked is not None:
            self.parked = None
            parked.switch()

    def close(self) -> None:
        """Release the wait timer; nothing parked is called any more."""
        self.parked = None
        if self.timer is not None:
            self.timer.close()
            self.timer = None

    def take(self, hub_head: int, most_bytes: int = 0) -> tuple[list[int], list[bytes]] | None:
        """Return and clear the queued ids and frames — only the oldest `most_bytes` of them
        (one frame at least) when given, the rest staying queued and woken; None means:
        catch up from the log."""
        self.woken = False
        if self.overflowed:
            return None
        if most_bytes and self.pending_bytes > most_bytes:
            # A reader slower than the stream holds only this much outside the queue, where
            # conflation can still merge what it has not written yet.
            end, size = 1, len(self.frames[0])
            while size + len(self.frames[end]) <= most_bytes:
                size += len(self.frames[end])
                end += 1
            taken = self.ids[:end], self.frames[:end]
            del self.ids[:end], self.frames[:end]
            self.pending_bytes -= size
            self.woken = True
            return taken
        taken = self.ids, self.frames
        self.ids, self.frames = [], []
        self.pending_bytes = 0
        self.safe_cursor = hub_head
        return taken

    def rearm(self) -> None:
        """Forget queued frames and wait again: a long-poll waiter only needs the wake-up,
        and once its queue overflowed the hub would skip it and never wake it."""
        self.woken = False
        self.overflowed = False
        self.ids.clear()
        self.frames.clear()
        self.pending_bytes = 0


class Hub:
    """Route each event once to every interested subscriber of this process."""

    def __init__(self, ring: Ring | None = None) -> None:
        # The newest events, for replays and polls that need no database; none by default.
        self.ring = ring if ring is not None else Ring(0, 0, 0)
        self.by_topic: dict[str, set[Subscriber]] = defaultdict(set)
        # One shared object per distinct view, with how many subscribers hold it: equal
        # views (same filter, same policy group) are then evaluated once per event.
        self.views: dict[TopicView, list] = {}
        # Likewise one shared subscription per distinct set of views, so idle subscribers
        # of the same thing keep no mapping of their own.
        self.subscriptions: dict[tuple, list] = {}
        # The group of each shared subscription that has caught-up members, by its id.
        self.groups: dict[int, Group] = {}
        # Newest event id delivered; events arrive here in id order with no holes.
        self.head = 0
        self.delivered = 0
        self.overflows = 0
        self.conflations = 0

    def start_at(self, head: int) -> None:
        """Begin at the log's head: what is already logged is history, not news."""
        self.head = head
        self.ring.start_at(head)

    def rewind(self, head: int) -> None:
        """Restart from a log that went back (it was recreated): every subscriber re-reads it."""
        self.start_at(head)
        for subscriber in self.waiting():
            subscriber.resync()

    def waiting(self) -> set[Subscriber]:
        """Return every subscriber events are routed to, grouped ones included."""
        waiting = set()
        for subscribers in self.by_topic.values():
            for subscriber in subscribers:
                if isinstance(subscriber, Group):
                    waiting.update(subscriber.members)
                else:
                    waiting.add(subscriber)
        return waiting

    def add(self, subscriber: Subscriber) -> None:
        """Start routing events to a subscriber, sharing its views and its subscription with
        equal ones."""
        views = {}
        for topic, view in subscriber.subscription.views.items():
            held = self.views.get(view)
            if held is None:
                held = self.views[view] = [view, 0]
            held[1] += 1
            views[topic] = held[0]
        key = tuple(views.items())
        shared = self.subscriptions.get(key)
        if shared is None:
            shared = self.subscriptions[key] = [Subscription(views), 0]
        shared[1] += 1
        subscriber.subscription = shared[0]
        for topic in views:
            self.by_topic[topic].add(subscriber)

    def attach(
        self, subscriber: Subscriber, member: Member, expires_at: float | None = None
    ) -> None:
        """Route a caught-up subscriber's events through the group of its shared
        subscription, written to `member` with the other members in one pass, after the
        member's cursor, until its credential expires (a Unix time; None for never)."""
        subscription = subscriber.subscription
        group = self.groups.get(id(subscription))
        if group is None:
            group = self.groups[id(subscription)] = Group(subscription)
            for topic in subscription.views:
                self.by_topic[topic].add(group)
        for topic in subscription.views:
            self.by_topic[topic].discard(subscriber)
        group.members[subscriber] = (member, expires_at)
        subscriber.group = group

    def detach(self, subscriber: Subscriber, *, share: bool = True) -> None:
        """Route a subscriber's events to it alone again; the group's frames it was not
        written yet go to its queue first, unless it is going away or reads the log anyway
        (it overflowed, or must resync)."""
        group, subscriber.group = subscriber.group, None
        member = group.members.pop(subscriber)[0]
        if share and not subscriber.overflowed:
            for event_id, frame in zip(*group.share(member.cursor), strict=True):
                subscriber.push(event_id, frame)
        subscription = group.subscription
        for topic in subscription.views:
            self.by_topic[topic].add(subscriber)
        if not group.members:
            del self.groups[id(subscription)]
            for topic in subscription.views:
                self.by_topic[topic].discard(group)

    def remove(self, subscriber: Subscriber) -> None:
        """Stop routing events to a subscriber and forget it."""
        if subscriber.group is not None:
            self.detach(subscriber, share=False)
        views = subscriber.subscription.views
        removed = False
        for topic, view in views.items():
            subscribers = self.by_topic.get(topic)
            if subscribers is not None and subscriber in subscribers:
                removed = True
                subscribers.discard(subscriber)
                if not subscribers:
                    del self.by_topic[topic]
                held = self.views[view]
                held[1] -= 1
                if not held[1]:
                    del self.views[view]
        if removed:
            key = tuple(views.items())
            shared = self.subscriptions[key]
            shared[1] -= 1
            if not shared[1]:
                del self.subscriptions[key]

    def deliver(self, event: Event) -> None:
        """Queue an event for every subscriber that sees it, formatting each shape once."""
        subscribers = self.by_topic.get(event.topic)
        if subscribers:
            topic, data, event_id = event.topic, event.data, event.id
            # Each distinct view is evaluated once and each shape formatted once per event.
            by_view: dict[int, bytes | None] = {}
            frames: dict[tuple, bytes] = {}
            delivered = 0
            for subscriber in subscribers:
                if subscriber.overflowed:
                    continue
                view = subscriber.subscription.views[topic]
                frame = by_view.get(id(view), _UNSEEN)
                if frame is _UNSEEN:
                    op = view.effective_op(data)
                    if op is None:
                        frame = None
                    else:
                        key = (op, view.select)
                        frame = frames.get(key)
                        if frame is None:
                            frame = frames[key] = render_frame(event, view, op)
                    by_view[id(view)] = frame
                if frame is None:
                    continue
                made_room = subscriber.push(event_id, frame)
                if made_room is None:
                    delivered += 1
                elif made_room is GROUPED:
                    delivered += len(subscriber.members)
                elif made_room == "conflated":
                    self.conflations += 1
                    delivered += 1
                else:
                    self.overflows += 1
            self.delivered += delivered
        self.head = event.id
        self.ring.add(event)
