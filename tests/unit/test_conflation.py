"""Conflation of a subscriber past its budget: the latest change of every row, in the order
of latest changes, `low` topics first, `high` topics never."""

import orjson
from hypothesis import given
from hypothesis import strategies as st

from feed.filters import Subscription, TopicView
from feed.hub import Hub, Subscriber
from feed.log import Event


def change(event_id: int, topic: str, pk: int | None, version: int = 1) -> Event:
    """A committed change of row `pk` (None: a custom topic's publish)."""
    op = "PUBLISH" if pk is None else ("INSERT" if version == 1 else "UPDATE")
    row = {"id": pk, "version": version, "pad": "x" * 40}
    return Event.from_raw(
        orjson.dumps({"id": event_id, "topic": topic, "op": op, "pk": pk, "row": row, "old": None})
    )


def queued(subscriber: Subscriber) -> list[tuple]:
    """Return (id, topic, pk, version) of each queued frame, in order."""
    found = []
    for event_id, frame in zip(subscriber.ids, subscriber.frames, strict=True):
        data = orjson.loads(frame.split(b"data: ", 1)[1])
        found.append((event_id, data["topic"], data["pk"], data["row"]["version"]))
    return found


def deliver(hub: Hub, events: list[Event]) -> None:
    for event in events:
        hub.deliver(event)


def test_rows_changed_while_behind_keep_their_latest_change_in_order_of_latest_changes():
    hub = Hub()
    subscriber = Subscriber(Subscription({"t": TopicView("t")}), 8, 1 << 20)
    hub.add(subscriber)
    # Rows 1, 2, 3 change in turn, three times. The queue is full when event 9 comes: rows 3,
    # 1 and 2 last changed in that order (events 6, 7, 8), and event 9 follows them.
    deliver(hub, [change(i, "t", pk, v) for i, (pk, v) in enumerate(
        [(1, 1), (2, 1), (3, 1), (1, 2), (2, 2), (3, 2), (1, 3), (2, 3), (3, 3)], start=1
    )])  # fmt: skip
    assert queued(subscriber) == [(6, "t", 3, 2), (7, "t", 1, 3), (8, "t", 2, 3), (9, "t", 3, 3)]
    assert not subscriber.overflowed
    assert (hub.conflations, hub.overflows) == (1, 0)


def test_a_high_priority_topic_is_never_conflated_it_is_caught_up_from_the_log():
    hub = Hub()
    subscriber = Subscriber(Subscription({"t": TopicView("t", priority="high")}), 8, 1 << 20)
    hub.add(subscriber)
    deliver(hub, [change(i, "t", 1, i) for i in range(1, 10)])
    assert subscriber.overflowed and subscriber.take(hub.head) is None
    assert (hub.conflations, hub.overflows) == (0, 1)


def test_low_priority_topics_are_conflated_before_normal_ones():
    hub = Hub()
    views = {"low": TopicView("low", priority="low"), "normal": TopicView("normal")}
    subscriber = Subscriber(Subscription(views), 8, 1 << 20)
    hub.add(subscriber)
    # The queue is full when event 9 comes: merging the `low` row frees half of it, so the
    # `normal` rows stay exact.
    events = [change(i, "low", 1, i) for i in range(1, 6)]
    events += [change(i, "normal", i, 1) for i in range(6, 10)]
    deliver(hub, events)
    assert queued(subscriber) == [
        (5, "low", 1, 5),
        (6, "normal", 6, 1),
        (7, "normal", 7, 1),
        (8, "normal", 8, 1),
        (9, "normal", 9, 1),
    ]


def test_a_normal_topic_is_merged_when_low_alone_frees_too_little():
    hub = Hub()
    views = {"low": TopicView("low", priority="low"), "normal": TopicView("normal")}
    subscriber = Subscriber(Subscription(views), 8, 1 << 20)
    hub.add(subscriber)
    deliver(hub, [change(i, "normal", 1, i) for i in range(1, 8)] + [change(8, "low", 2)])
    deliver(hub, [change(9, "normal", 1, 9)])
    assert queued(subscriber) == [(7, "normal", 1, 7), (8, "low", 2, 1), (9, "normal", 1, 9)]


def test_custom_topic_events_are_never_merged():
    hub = Hub()
    subscriber = Subscriber(Subscription({"alerts": TopicView("alerts")}), 8, 1 << 20)
    hub.add(subscriber)
    deliver(hub, [change(i, "alerts", None) for i in range(1, 10)])
    assert subscriber.overflowed


def test_the_byte_budget_conflates_too():
    hub = Hub()
    subscriber = Subscriber(Subscription({"t": TopicView("t")}), 1000, 1000)
    hub.add(subscriber)
    deliver(hub, [change(i, "t", 1, i) for i in range(1, 40)])
    assert hub.conflations >= 1 and not subscriber.overflowed
    assert subscriber.pending_bytes == sum(map(len, subscriber.frames)) <= 1000
    assert queued(subscriber)[-1] == (39, "t", 1, 39)


def test_a_long_poll_waiter_has_no_byte_budget_and_is_never_conflated():
    hub = Hub()
    waiter = Subscriber(Subscription({"t": TopicView("t")}), 1)
    hub.add(waiter)
    deliver(hub, [change(1, "t", 1, 1), change(2, "t", 1, 2)])
    assert waiter.overflowed and hub.conflations == 0


@given(st.lists(st.tuples(st.sampled_from(["a", "b"]), st.integers(1, 6)), max_size=80))
def test_conflated_or_not_a_reader_ends_with_every_row_s_latest_version(changes):
    """Whatever it merged, applying what a subscriber reads gives the rows' final state."""
    hub = Hub()
    views = {"a": TopicView("a", priority="low"), "b": TopicView("b")}
    subscriber = Subscriber(Subscription(views), 8, 1 << 20)
    hub.add(subscriber)
    versions: dict[tuple, int] = {}
    for event_id, (topic, pk) in enumerate(changes, start=1):
        versions[topic, pk] = versions.get((topic, pk), 0) + 1
        hub.deliver(change(event_id, topic, pk, versions[topic, pk]))
    if subscriber.overflowed:
        return
    seen: dict[tuple, int] = {}
    ids = [event_id for event_id, *_ in queued(subscriber)]
    assert ids == sorted(ids)
    for _, topic, pk, version in queued(subscriber):
        assert version > seen.get((topic, pk), 0)
        seen[topic, pk] = version
    # Nothing was read: every row that changed is there, at its final version.
    assert seen == versions
