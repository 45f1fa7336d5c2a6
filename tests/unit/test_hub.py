"""The in-process fan-out: routing, shared frames, overflow and resync, parking and waking."""

import time

import gevent
import orjson

from feed import sse
from feed.conditions import Condition
from feed.filters import Subscription, TopicView
from feed.hub import Hub, Subscriber
from feed.log import Event


def change(event_id: int, topic: str = "a", name: str = "x", op: str = "INSERT") -> Event:
    """A committed event as the hub receives it."""
    row = {"id": 1, "name": name, "size": 2}
    old = None if op == "INSERT" else {"id": 1, "name": "old", "size": 1}
    return Event.from_raw(
        orjson.dumps({"id": event_id, "topic": topic, "op": op, "row": row, "old": old})
    )


def subscriber(*views: TopicView, max_pending: int = 10) -> Subscriber:
    return Subscriber(Subscription({view.topic: view for view in views}), max_pending)


def joined(hub: Hub, *subscribers: Subscriber) -> list[Subscriber]:
    for s in subscribers:
        hub.add(s)
    return list(subscribers)


def test_events_reach_the_subscribers_of_their_topic_only():
    hub = Hub()
    on_a, on_b, on_both = joined(
        hub,
        subscriber(TopicView("a")),
        subscriber(TopicView("b")),
        subscriber(TopicView("a"), TopicView("b")),
    )
    first, second, third = change(1, "a"), change(2, "b"), change(3, "c")
    for e in (first, second, third):
        hub.deliver(e)
    assert on_a.ids == [1] and on_b.ids == [2] and on_both.ids == [1, 2]
    assert on_a.frames == [sse.change_frame(1, first.raw)]
    assert on_b.frames == [sse.change_frame(2, second.raw)]
    assert (hub.head, hub.delivered, hub.overflows) == (3, 4, 0)
    assert all(s.woken for s in (on_a, on_b, on_both))


def test_a_shape_is_formatted_once_and_shared():
    hub = Hub()
    plain, filtered, projected, projected_too, entering = joined(
        hub,
        subscriber(TopicView("a")),
        # Old and new rows are both inside this view: it sees the event as stored.
        subscriber(TopicView("a", (Condition("size", "gte", 1),))),
        subscriber(TopicView("a", select=("id",))),
        subscriber(TopicView("a", select=("id",))),
        # The old row is outside this view: the UPDATE reaches it as an INSERT.
        subscriber(TopicView("a", (Condition("size", "eq", 2),))),
    )
    e = change(1, op="UPDATE")
    hub.deliver(e)
    assert plain.frames[0] == sse.change_frame(1, e.raw)
    assert filtered.frames[0] is plain.frames[0]
    assert projected_too.frames[0] is projected.frames[0]
    assert orjson.loads(projected.frames[0].split(b"data: ")[1]) == e.data | {
        "row": {"id": 1},
        "old": {"id": 1},
    }
    assert orjson.loads(entering.frames[0].split(b"data: ")[1]) == e.data | {"op": "INSERT"}
    assert len({id(s.frames[0]) for s in (plain, projected, entering)}) == 3


def test_a_view_that_sees_nothing_gets_nothing_and_is_not_woken():
    hub = Hub()
    [other] = joined(hub, subscriber(TopicView("a", (Condition("name", "eq", "y"),))))
    hub.deliver(change(1))
    assert (other.ids, other.woken, hub.delivered, hub.head) == ([], False, 0, 1)


def test_take_hands_over_the_queue_and_moves_the_safe_cursor():
    hub = Hub()
    [s] = joined(hub, subscriber(TopicView("a")))
    assert s.safe_cursor == 0
    hub.deliver(change(1))
    hub.deliver(change(2, "b"))
    ids, frames = s.take(hub.head)
    assert ids == [1] and len(frames) == 1
    assert (s.safe_cursor, s.woken, s.ids, s.frames) == (2, False, [], [])
    assert s.take(hub.head) == ([], [])


def test_overflow_drops_the_queue_until_rearmed():
    hub = Hub()
    [small, roomy] = joined(
        hub, subscriber(TopicView("a"), max_pending=2), subscriber(TopicView("a"))
    )
    for event_id in (1, 2, 3):
        hub.deliver(change(event_id))
    assert small.overflowed and small.woken
    assert (small.ids, small.frames) == ([], [])
    assert (hub.overflows, hub.delivered) == (1, 5)
    # An overflowed subscriber is skipped until it has caught up from the log.
    hub.deliver(change(4))
    assert small.ids == [] and roomy.ids == [1, 2, 3, 4]
    assert (hub.overflows, hub.delivered) == (1, 6)
    assert small.take(hub.head) is None
    assert small.safe_cursor == 0 and small.overflowed and not small.woken

    small.rearm()
    assert (small.overflowed, small.woken, small.ids) == (False, False, [])
    hub.deliver(change(5))
    assert small.take(hub.head)[0] == [5]
    assert small.safe_cursor == 5


def test_rearm_forgets_queued_frames():
    s = subscriber(TopicView("a"))
    s.push(1, b"frame")
    s.rearm()
    assert (s.ids, s.frames, s.woken) == ([], [], False)


def test_rewind_sets_the_head_and_resyncs_every_subscriber_once():
    hub = Hub()
    subscribers = joined(
        hub, subscriber(TopicView("a"), TopicView("b")), subscriber(TopicView("b"))
    )
    hub.deliver(change(9))
    hub.rewind(3)
    assert hub.head == 3
    for s in subscribers:
        assert s.overflowed and s.woken and s.ids == []
        assert s.take(hub.head) is None


def test_remove_stops_routing_and_forgets_empty_topics():
    hub = Hub()
    both, only_b = joined(
        hub, subscriber(TopicView("a"), TopicView("b")), subscriber(TopicView("b"))
    )
    hub.remove(both)
    assert set(hub.by_topic) == {"b"} and hub.by_topic["b"] == {only_b}
    hub.deliver(change(1, "a"))
    hub.deliver(change(2, "b"))
    assert both.ids == [] and only_b.ids == [2]
    hub.remove(only_b)
    hub.remove(only_b)
    assert dict(hub.by_topic) == {}


def test_wait_returns_at_once_when_something_is_queued():
    s = subscriber(TopicView("a"))
    s.push(1, b"frame")
    assert s.wait(60) is True
    assert s.timer is None


def test_wait_times_out_on_its_timer_and_reuses_it():
    s = subscriber(TopicView("a"))
    assert s.wait(0.005) is False
    timer = s.timer
    assert s.wait(0.005) is False
    assert s.timer is timer and s.parked is None
    assert s.wait(0.002) is False
    assert s.timer is not timer and s.timer_seconds == 0.002
    s.close()
    assert s.timer is None


def test_push_from_another_greenlet_wakes_the_waiter():
    s = subscriber(TopicView("a"))
    gevent.spawn(s.push, 1, b"frame")
    started = time.monotonic()
    assert s.wait(60) is True
    assert time.monotonic() - started < 1
    assert s.take(1) == ([1], [b"frame"])
    s.close()


def test_resync_wakes_the_waiter():
    s = subscriber(TopicView("a"))
    gevent.spawn(s.resync)
    assert s.wait(60) is True
    assert s.take(1) is None
    s.close()


def test_a_wake_taken_before_it_runs_does_not_resume_the_waiter():
    s = subscriber(TopicView("a"))
    waiter = gevent.spawn(s.wait, 60)
    gevent.sleep(0)
    assert s.parked is waiter
    s.push(1, b"frame")
    # Taken before the scheduled wake-up runs: that wake-up must not resume the waiter.
    s.take(1)
    gevent.sleep(0)
    assert s.parked is waiter and not waiter.ready()
    s.push(2, b"frame")
    assert waiter.get(timeout=1) is True
    s.close()


def test_a_bounded_take_leaves_the_rest_queued_and_woken_in_order():
    s = subscriber(TopicView("a"), max_pending=100)
    for event_id in range(1, 11):
        s.push(event_id, b"%02d-frame" % event_id)
    taken = []
    while s.woken:
        ids, frames = s.take(10, most_bytes=25)
        # Within the bound (8-byte frames: three at most), the oldest first.
        assert 1 <= len(frames) <= 3 and sum(map(len, frames)) <= 25
        taken += ids
        assert frames == [b"%02d-frame" % i for i in ids]
        assert s.pending_bytes == sum(map(len, s.frames))
    assert taken == list(range(1, 11))
    # The cursor a heartbeat may claim moves only once the queue is empty.
    assert s.safe_cursor == 10 and s.take(10, most_bytes=25) == ([], [])


def test_a_bounded_take_gives_a_frame_larger_than_the_bound_alone():
    s = subscriber(TopicView("a"))
    s.push(1, b"x" * 100)
    s.push(2, b"y")
    assert s.take(2, most_bytes=10) == ([1], [b"x" * 100])
    assert s.woken and s.take(2, most_bytes=10) == ([2], [b"y"])


def test_one_parked_waiter_failing_leaves_the_others_of_its_wake_woken(caplog):
    class Failing:
        def switch(self):
            raise RuntimeError("broken")

    class Recording:
        calls = 0

        def switch(self):
            Recording.calls += 1

    failing, recording = subscriber(TopicView("a")), subscriber(TopicView("a"))
    failing.park(Failing(), 60)
    recording.park(Recording(), 60)
    failing.push(1, b"frame")
    recording.push(1, b"frame")
    gevent.sleep(0)
    assert Recording.calls == 1
    assert "resuming a woken subscriber failed" in caplog.text
    failing.close()
    recording.close()
