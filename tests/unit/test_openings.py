"""Stream openings admitted a few at a time: never more at work than the bound, every one
finishes, and writing between chunks holds no turn."""

import gevent
import pytest

from feed.openings import Openings


class Gauge:
    """How many openings are at work now, and the most there ever were."""

    def __init__(self):
        self.now = self.most = 0

    def work(self, seconds: float = 0.005) -> None:
        self.now += 1
        self.most = max(self.most, self.now)
        # Work that switches away (a database read, a Redis round trip) keeps its turn.
        gevent.sleep(seconds)
        self.now -= 1


def replay(gauge: Gauge, chunks: int):
    for n in range(chunks):
        gauge.work()
        yield b"chunk %d" % n


@pytest.mark.parametrize("most", [1, 3])
def test_no_more_openings_than_the_bound_work_at_once_and_all_finish(most):
    openings, gauge = Openings(most), Gauge()

    def open_one() -> list[bytes]:
        openings.run(gauge.work)
        return list(openings.admitted(replay(gauge, 3)))

    opened = [gevent.spawn(open_one) for _ in range(12)]
    gevent.joinall(opened, raise_error=True)
    assert gauge.most == most
    assert all(g.value == [b"chunk 0", b"chunk 1", b"chunk 2"] for g in opened)


def test_an_opening_writing_to_a_slow_client_holds_no_turn():
    openings, gauge = Openings(1), Gauge()
    finished = []

    def slow_client() -> None:
        for _ in openings.admitted(replay(gauge, 2)):
            # The client reads slowly: this write waits, outside any turn.
            gevent.sleep(0.5)
        finished.append("slow")

    def quick_client() -> None:
        list(openings.admitted(replay(gauge, 2)))
        finished.append("quick")

    slow = gevent.spawn(slow_client)
    gevent.sleep(0.001)
    quick = gevent.spawn(quick_client)
    gevent.joinall([slow, quick], raise_error=True)
    assert finished == ["quick", "slow"]


def test_no_bound_lets_every_opening_work_at_once():
    openings, gauge = Openings(0), Gauge()
    gevent.joinall([gevent.spawn(openings.run, gauge.work) for _ in range(8)], raise_error=True)
    assert gauge.most == 8
