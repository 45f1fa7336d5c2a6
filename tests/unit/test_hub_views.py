"""The hub shares equal views between subscribers and evaluates each once per event."""

import orjson

from feed.conditions import Condition
from feed.filters import Subscription, TopicView
from feed.hub import Hub, Subscriber
from feed.log import Event


def _event(event_id: int, store: int) -> Event:
    data = {
        "id": event_id,
        "topic": "sales",
        "op": "INSERT",
        "pk": event_id,
        "version": 1,
        "row": {"id": event_id, "store_id": store},
        "old": None,
        "at": "2026-12-01T00:00:00.000Z",
        "mutation": None,
    }
    return Event(data, orjson.dumps(data))


def _subscriber(store: int | None) -> Subscriber:
    conditions = () if store is None else (Condition("store_id", "eq", store),)
    return Subscriber(Subscription({"sales": TopicView("sales", conditions)}), max_pending=10)


class CountingView(TopicView):
    """A view that counts how often the hub asks it about an event."""

    calls = 0

    def effective_op(self, data):
        CountingView.calls += 1
        return super().effective_op(data)


def test_equal_views_are_one_object_while_held():
    hub = Hub()
    first, second, other = _subscriber(1), _subscriber(1), _subscriber(2)
    for subscriber in (first, second, other):
        hub.add(subscriber)
    assert first.subscription.views["sales"] is second.subscription.views["sales"]
    assert first.subscription.views["sales"] is not other.subscription.views["sales"]
    assert len(hub.views) == 2
    hub.remove(first)
    hub.remove(other)
    assert list(hub.views) == [TopicView("sales", (Condition("store_id", "eq", 1),))]
    hub.remove(second)
    assert hub.views == {} and dict(hub.by_topic) == {}


def test_a_view_is_evaluated_once_per_event_and_delivers_to_all_who_hold_it():
    hub = Hub()
    view = CountingView("sales", (Condition("store_id", "eq", 1),))
    subscribers = [Subscriber(Subscription({"sales": view}), max_pending=10) for _ in range(5)]
    outsider = _subscriber(2)
    for subscriber in [*subscribers, outsider]:
        hub.add(subscriber)
    CountingView.calls = 0
    hub.deliver(_event(1, store=1))
    hub.deliver(_event(2, store=2))
    assert CountingView.calls == 2
    taken = [subscriber.take(hub.head) for subscriber in subscribers]
    assert all(ids == [1] for ids, _ in taken)
    # Formatted once: every holder of the view queues the very same bytes.
    assert len({id(frames[0]) for _, frames in taken}) == 1
    assert outsider.take(hub.head)[0] == [2]


def test_removing_a_subscriber_twice_or_never_added_changes_nothing():
    hub = Hub()
    held, stranger = _subscriber(1), _subscriber(1)
    hub.add(held)
    hub.remove(stranger)
    hub.remove(held)
    hub.remove(held)
    assert hub.views == {} and dict(hub.by_topic) == {}
