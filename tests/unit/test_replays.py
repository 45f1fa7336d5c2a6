"""Replay pages of the ring rendered once and shared: the same bytes as a page of one's own,
never another subscription's, another head's or another run of the ring's."""

from types import SimpleNamespace

import orjson

from feed.conditions import Condition
from feed.delivery import _replay_page
from feed.filters import Subscription, TopicView
from feed.hub import Hub, Subscriber, render_frame
from feed.log import Event
from feed.replays import Replays
from feed.ring import Ring


def _event(event_id: int, store: int, topic: str = "sales") -> Event:
    data = {"id": event_id, "topic": topic, "op": "INSERT", "pk": event_id, "version": 1,
            "row": {"id": event_id, "store_id": store}, "old": None,
            "at": "2026-12-01T00:00:00.000Z", "mutation": None}  # fmt: skip
    return Event(data, orjson.dumps(data))


def _runtime(events: int) -> SimpleNamespace:
    """A runtime of only a hub whose ring holds events 1..`events`, two stores in turn."""
    hub = Hub(Ring(1000, 1 << 20, 3600))
    hub.start_at(0)
    for n in range(1, events + 1):
        hub.deliver(_event(n, store=1 + n % 2))
    return SimpleNamespace(hub=hub)


def _shared(runtime, store: int | None = None, select=None) -> Subscription:
    """Return the hub's shared subscription of `sales` (in one store), held by a subscriber."""
    conditions = () if store is None else (Condition("store_id", "eq", store),)
    subscriber = Subscriber(Subscription({"sales": TopicView("sales", conditions, select)}), 10)
    runtime.hub.add(subscriber)
    return subscriber.subscription


def _own(runtime, subscription: Subscription, after: int, size: int) -> list[bytes]:
    """Render a page from the ring, as a stream with no one to share with would."""
    found, _, _ = runtime.hub.ring.after(after, subscription.topics, size)
    view = subscription.views["sales"]
    return [
        render_frame(e, view, op) for e in found if (op := view.effective_op(e.data)) is not None
    ]


def _bytes(page) -> bytes:
    """Return what a page's writes put on the wire."""
    return b"".join(page.writes)


def test_streams_of_one_subscription_share_a_page():
    runtime = _runtime(20)
    for subscription in (_shared(runtime), _shared(runtime, select=("id",))):
        first = _replay_page(runtime, subscription, 4, 5)
        own = _own(runtime, subscription, 4, 5)
        assert _bytes(first) == b"".join(own)
        assert (first.frames, first.size, first.position, first.at_head) == (
            len(own), sum(map(len, own)), 9, False
        )  # fmt: skip
        assert _replay_page(runtime, subscription, 4, 5) is first


def test_each_policy_group_gets_its_own_rows():
    runtime = _runtime(20)
    one, two = _shared(runtime, store=1), _shared(runtime, store=2)
    assert one is not two
    for subscription in (one, two, one, two):
        page = _replay_page(runtime, subscription, 0, 100)
        frames = _own(runtime, subscription, 0, 100)
        assert _bytes(page) == b"".join(frames) and page.frames == len(frames) == 10
        assert (page.position, page.at_head) == (20, True)
    stores = {orjson.loads(f.split(b"data: ")[1])["row"]["store_id"] for f in frames}
    assert stores == {2}


def test_a_page_that_reached_the_head_follows_the_head():
    runtime = _runtime(20)
    subscription = _shared(runtime)
    assert _replay_page(runtime, subscription, 10, 100)[3:] == (20, True)
    runtime.hub.deliver(_event(21, store=1))
    runtime.hub.deliver(_event(22, store=1, topic="other"))
    page = _replay_page(runtime, subscription, 10, 100)
    assert _bytes(page) == b"".join(_own(runtime, subscription, 10, 100)) and page.frames == 11
    assert (page.position, page.at_head) == (22, True)


def test_a_ring_started_again_renders_its_own_events():
    runtime = _runtime(20)
    subscription = _shared(runtime)
    before = _replay_page(runtime, subscription, 0, 100)
    # The log was recreated: the same ids now name other events.
    runtime.hub.rewind(0)
    for n in range(1, 21):
        runtime.hub.deliver(_event(n, store=7))
    after = _replay_page(runtime, subscription, 0, 100)
    assert _bytes(after) == b"".join(_own(runtime, subscription, 0, 100)) != _bytes(before)


def test_the_pages_kept_stay_within_their_bytes():
    runtime = _runtime(200)
    ring = runtime.hub.ring
    ring.replays = Replays(max_bytes=4000)
    subscription = _shared(runtime)
    for after in range(0, 200, 10):
        page = _replay_page(runtime, subscription, after, 10)
        assert _bytes(page) == b"".join(_own(runtime, subscription, after, 10))
        assert 0 < ring.replays.bytes <= 4000
    # A page larger than the budget is answered, not kept.
    page = _replay_page(runtime, subscription, 0, 200)
    assert _bytes(page) == b"".join(_own(runtime, subscription, 0, 200)) and page.size > 4000
    assert ring.replays.bytes <= 4000
