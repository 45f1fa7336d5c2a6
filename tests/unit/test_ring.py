"""The ring of newest events: gapless after its floor, bounded, and only ever a full answer."""

import orjson

from feed.hub import Hub
from feed.log import Event
from feed.ring import Ring


def event(event_id: int, topic: str = "a", size: int = 10) -> Event:
    return Event.from_raw(orjson.dumps({"id": event_id, "topic": topic, "pad": "x" * size}))


def test_it_holds_every_event_after_its_floor_and_nothing_before():
    hub = Hub(Ring(3, 1 << 20, 3600))
    assert not hub.ring.holds(0)
    hub.start_at(100)
    for n in range(101, 106):
        hub.deliver(event(n))
    # Three held (103, 104, 105): everything after 102 is there, after 101 it is not.
    assert not hub.ring.holds(101) and hub.ring.holds(102)
    found, position, at_head = hub.ring.after(102, {"a"}, 10)
    assert [e.id for e in found] == [103, 104, 105] and (position, at_head) == (105, True)
    # At the head it holds nothing newer (the log may); past it is another log's cursor.
    assert hub.ring.holds(105) and not hub.ring.ahead_of(105) and hub.ring.ahead_of(104)
    assert hub.ring.after(105, {"a"}, 10) == ([], 105, True)
    assert not hub.ring.holds(106)


def test_topics_and_limit_shape_a_page_as_a_log_read_would():
    ring = Ring(100, 1 << 20, 3600)
    ring.start_at(0)
    for n, topic in enumerate("abab" * 3, start=1):
        ring.add(event(n, topic))
    found, position, at_head = ring.after(0, {"b"}, 2)
    assert [e.id for e in found] == [2, 4] and (position, at_head) == (4, False)
    found, position, at_head = ring.after(position, {"b"}, 10)
    assert [e.id for e in found] == [6, 8, 10, 12] and (position, at_head) == (12, True)


def test_bytes_and_age_bound_it_and_a_rewind_empties_it():
    ring = Ring(100, 500, 3600)
    ring.start_at(0)
    for n in range(1, 11):
        ring.add(event(n, size=100))
    assert ring.bytes <= 500 and ring.floor == 10 - len(ring.events)
    old = Ring(100, 1 << 20, 0)
    old.start_at(0)
    old.add(event(1))
    assert not old.holds(0)
    hub = Hub(Ring(100, 1 << 20, 3600))
    hub.start_at(0)
    hub.deliver(event(1))
    hub.rewind(7)
    assert not hub.ring.holds(0) and hub.ring.holds(7)
    hub.deliver(event(8))
    assert [e.id for e in hub.ring.after(7, {"a"}, 10)[0]] == [8]
