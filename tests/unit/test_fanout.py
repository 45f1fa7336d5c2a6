"""Shared fan-out: caught-up subscribers of one subscription are written to as one group,
each event once and in order, and leave it without losing or repeating a frame."""

import time

import gevent

from feed import sse
from feed.fanout import Group
from feed.filters import TopicView
from feed.hub import Hub, Subscriber

from .test_hub import change, joined, subscriber


class Connection:
    """A member's connection: records what the group writes to it, and where it stands."""

    def __init__(self, hub: Hub, subscriber: Subscriber, takes: int | None = None):
        self.hub = hub
        self.subscriber = subscriber
        self.written: list[bytes] = []
        self.cursor = 0
        # How many bytes a send takes before the socket is full; None for all of them.
        self.takes = takes

    def write_shared(self, body: bytes, chunk: bytes, count: int, last_id: int) -> None:
        assert chunk == b"%x\r\n%s\r\n" % (len(body), body)
        assert body.count(b"event: change") == count
        self.written.append(body)
        self.cursor = last_id
        if self.takes is not None and self.takes < len(chunk):
            # A short send: it goes on alone, its rest pending.
            self.hub.detach(self.subscriber)


def frames(*event_ids: int) -> bytes:
    return b"".join(sse.change_frame(i, change(i).raw) for i in event_ids)


def grouped(hub: Hub, count: int) -> list[tuple[Subscriber, Connection]]:
    """Subscribers of one subscription, registered and caught up: each joins the group."""
    members = []
    for s in joined(hub, *(subscriber(TopicView("a")) for _ in range(count))):
        connection = Connection(hub, s)
        hub.attach(s, connection)
        members.append((s, connection))
    return members


def test_caught_up_subscribers_are_routed_to_once_and_written_together_in_order():
    hub = Hub()
    members = grouped(hub, 3)
    [group] = hub.by_topic["a"]
    assert isinstance(group, Group) and len(group.members) == 3
    for event_id in (1, 2, 3):
        hub.deliver(change(event_id))
    # Nothing is queued per subscriber, and nothing is written before the loop runs.
    assert all(not s.ids and not s.woken and not c.written for s, c in members)
    gevent.sleep(0)
    assert all(c.written == [frames(1, 2, 3)] and c.cursor == 3 for _, c in members)
    assert hub.delivered == 9
    hub.deliver(change(4))
    gevent.sleep(0)
    assert all(c.written == [frames(1, 2, 3), frames(4)] for _, c in members)


def test_a_member_leaving_before_the_write_takes_its_frames_into_its_queue():
    hub = Hub()
    (leaving, left_connection), (_, staying) = grouped(hub, 2)
    hub.deliver(change(1))
    hub.detach(leaving)
    assert leaving.ids == [1] and leaving.frames == [frames(1)] and leaving.woken
    hub.deliver(change(2))
    assert leaving.ids == [1, 2]
    gevent.sleep(0)
    assert left_connection.written == [] and staying.written == [frames(1, 2)]


def test_a_member_joining_while_frames_wait_is_written_only_those_after():
    hub = Hub()
    [(_, first)] = grouped(hub, 1)
    [late] = joined(hub, subscriber(TopicView("a")))
    hub.deliver(change(1))
    # Event 1 is in the late subscriber's own queue: it writes it, then joins.
    assert late.take(hub.head) == ([1], [frames(1)])
    late_connection = Connection(hub, late)
    late_connection.cursor = 1
    hub.attach(late, late_connection)
    hub.deliver(change(2))
    gevent.sleep(0)
    assert first.written == [frames(1, 2)]
    assert late_connection.written == [frames(2)]


def test_a_short_send_leaves_the_group_and_later_events_queue_for_that_member():
    hub = Hub()
    (slow, slow_connection), (_, fast) = grouped(hub, 2)
    slow_connection.takes = 10
    hub.deliver(change(1))
    gevent.sleep(0)
    assert slow_connection.written == fast.written == [frames(1)]
    assert slow.group is None and not slow.ids
    hub.deliver(change(2))
    gevent.sleep(0)
    assert slow.ids == [2] and slow_connection.written == [frames(1)]
    assert fast.written == [frames(1), frames(2)]


def test_a_woken_member_is_skipped_and_ends_or_resyncs_from_its_cursor():
    hub = Hub()
    (ended, ended_connection), (resynced, resynced_connection), (_, other) = grouped(hub, 3)
    hub.deliver(change(1))
    gevent.sleep(0)
    ended.end("revoked")
    resynced.resync()
    hub.deliver(change(2))
    gevent.sleep(0)
    # Nothing after the credential ended reaches it; both resume from event 1.
    assert ended_connection.written == resynced_connection.written == [frames(1)]
    assert ended_connection.cursor == resynced_connection.cursor == 1
    assert other.written == [frames(1), frames(2)]


def test_grouped_subscribers_are_waiting_rewound_and_removed_like_any_other():
    hub = Hub()
    (first, _), (second, _) = grouped(hub, 2)
    [alone] = joined(hub, subscriber(TopicView("a")))
    assert hub.waiting() == {first, second, alone}
    hub.rewind(10)
    assert first.overflowed and second.overflowed and alone.overflowed
    hub.remove(first)
    [group] = [s for s in hub.by_topic["a"] if isinstance(s, Group)]
    assert set(group.members) == {second}
    hub.remove(second)
    assert hub.by_topic["a"] == {alone} and not hub.groups
    hub.remove(alone)
    assert not hub.by_topic and not hub.views and not hub.subscriptions


def test_a_member_whose_credential_expired_is_written_nothing_more():
    hub = Hub()
    [(_, staying)] = grouped(hub, 1)
    [expiring] = joined(hub, subscriber(TopicView("a")))
    expired = Connection(hub, expiring)
    hub.attach(expiring, expired, expires_at=time.time() + 0.05)
    hub.deliver(change(1))
    gevent.sleep(0)
    time.sleep(0.06)
    hub.deliver(change(2))
    gevent.sleep(0)
    assert expired.written == [frames(1)] and expired.cursor == 1
    assert staying.written == [frames(1), frames(2)]


def test_a_member_that_replayed_past_the_hub_is_written_only_what_comes_after():
    hub = Hub()
    [(_, first)] = grouped(hub, 1)
    # Its replay read the log up to event 2, before the hub was handed events 1 and 2.
    [replayed] = joined(hub, subscriber(TopicView("a")))
    connection = Connection(hub, replayed)
    connection.cursor = 2
    hub.attach(replayed, connection)
    for event_id in (1, 2, 3):
        hub.deliver(change(event_id))
    gevent.sleep(0)
    assert first.written == [frames(1, 2, 3)]
    assert connection.written == [frames(3)]
    hub.deliver(change(4))
    hub.detach(replayed)
    assert replayed.ids == [4]


def test_a_member_that_must_read_the_log_leaves_with_nothing_queued():
    hub = Hub()
    [(resynced, _)] = grouped(hub, 1)
    hub.deliver(change(1))
    resynced.resync()
    hub.detach(resynced)
    # It reads the log from its cursor, which holds event 1: a queued copy would be stale.
    assert resynced.ids == [] and resynced.frames == [] and resynced.overflowed
