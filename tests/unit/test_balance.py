"""Rebalancing arithmetic, shedding oldest first, and a round without Redis doing nothing."""

import math

import gevent
import pytest
import redis
from hypothesis import given
from hypothesis import strategies as st

from feed.balance import Balancer, Rule
from feed.drain import DRAINING, REBALANCE, Drain, let_go
from feed.filters import Subscription, TopicView
from feed.hub import Hub, Subscriber

from ..servers import free_port


def subscriber() -> Subscriber:
    return Subscriber(Subscription({"a": TopicView("a")}), 10)


def drain_holding(count: int, shed: list | None = None) -> Drain:
    noted = shed if shed is not None else []
    drain = Drain(Hub(), 2.0, lambda reason, n: noted.append((reason, n)))
    for _ in range(count):
        drain.opened(subscriber())
    return drain


RULE = Rule(tolerance=0.2, slack=5, step=0.1)


def test_the_limit_is_the_fair_share_plus_tolerance_and_slack():
    assert RULE.limit([100, 0]) == pytest.approx(50 * 1.2 + 5)
    assert RULE.limit([30, 30, 30]) == pytest.approx(41)
    assert RULE.limit([]) == 5


def test_a_worker_within_its_limit_sheds_nothing():
    assert RULE.to_shed(65, [65, 35]) == 0
    assert RULE.to_shed(100, [100]) == 0
    assert RULE.to_shed(5, [5, 0, 0]) == 0


def test_a_worker_over_its_limit_sheds_a_bounded_step_per_round():
    # 100 against a fresh worker: the limit is 65, the step 10 % of what it holds.
    assert RULE.to_shed(100, [100, 0]) == 10
    # Just over: only the excess.
    assert RULE.to_shed(67, [67, 33]) == 2
    # Few streams: at least one per round.
    assert Rule(0.0, 0, 0.1).to_shed(3, [3, 0]) == 1


def test_rounds_converge_gradually_to_the_limit():
    rule, mine, counts = Rule(0.2, 1, 0.1), 40, []
    while True:
        shed = rule.to_shed(mine, [mine, 40 - mine])
        if not shed:
            break
        counts.append(shed)
        mine -= shed
    assert mine <= rule.limit([40, 0]) and mine >= 20
    assert len(counts) >= 3 and max(counts) <= 4


@given(
    mine=st.integers(0, 10_000),
    others=st.lists(st.integers(0, 10_000), max_size=8),
    tolerance=st.floats(0, 2),
    slack=st.integers(0, 100),
    step=st.floats(0.01, 1),
)
def test_a_round_never_sheds_below_the_limit_nor_more_than_its_step(
    mine, others, tolerance, slack, step
):
    rule = Rule(tolerance, slack, step)
    counts = [mine, *others]
    shed = rule.to_shed(mine, counts)
    assert 0 <= shed <= max(1, math.ceil(mine * step))
    if shed:
        assert mine - shed >= rule.limit(counts) - 1


def test_shedding_ends_the_oldest_running_streams_with_a_reason_to_reconnect():
    shed: list = []
    drain = drain_holding(5, shed)
    oldest = list(drain.streams)
    oldest[0].end("revoked")
    assert drain.shed(2) == 2
    assert [s.ended for s in oldest] == ["revoked", REBALANCE, REBALANCE, None, None]
    assert shed == [(REBALANCE, 2)]
    assert let_go(REBALANCE) and let_go(DRAINING) and not let_go("revoked") and not let_go(None)
    drain.closed(oldest[1])
    assert len(drain.streams) == 4


def test_the_farewell_carries_the_cursor_and_a_retry_within_the_window():
    drain = drain_holding(0)
    retries = set()
    for _ in range(200):
        block = drain.farewell(42)
        assert block.startswith(b"retry: ") and block.endswith(b"id: 42\n\n")
        retries.add(int(block.split(b"\n")[0].split(b" ")[1]))
    assert min(retries) >= 0 and max(retries) <= 2000 and len(retries) > 50


def test_draining_lets_go_of_every_subscriber_and_of_those_that_arrive_later():
    hub, shed = Hub(), []
    drain = Drain(hub, 1.0, lambda reason, n: shed.append((reason, n)))
    early = subscriber()
    hub.add(early)
    drain.begin()
    gevent.sleep(0.01)
    late = subscriber()
    hub.add(late)
    gevent.sleep(0.25)
    assert drain.draining and early.ended == DRAINING and late.ended == DRAINING
    assert shed == [(DRAINING, 1), (DRAINING, 1)]
    drain._sweeper.kill()


def test_a_round_without_redis_sheds_nothing():
    drain = drain_holding(50)
    client = redis.Redis(port=free_port(), socket_connect_timeout=0.5)
    balancer = Balancer(client, "test:streams", drain, Rule(0, 0, 1.0), 1.0, lambda view: None)
    assert balancer.tick() is None
    assert all(s.ended is None for s in drain.streams)
