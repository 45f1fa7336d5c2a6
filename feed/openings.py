"""Stream openings run a few at a time, so live streams keep their turns in a storm.

Thousands of clients reconnecting at once each cost a request's dispatch (access checks,
limits) and a replay to render. Run all together, every turn of the worker's loop waits for
thousands of them, and a live stream's next event with it. Admitted a few at a time, the
loop turns as often as with a few. Only work is admitted: writing to a client holds no turn,
so slow readers cannot keep others out. A turn also covers the opening's round trips to
Redis (limits, presence). Measured with 10,000 clients reconnecting to 2 workers (`python
-m bench storm`, both in one run): 32 turns, the default, kept 100 live streams' p99 at
477 ms instead of 2.8 s, and the storm caught up in 6.7 s instead of 7.3 s; in the next
run, 568 ms instead of 3.4 s, and 6.3 s instead of 5.8 s. (Before the
limits' round trips were pipelined, the bound cost the storm a third of its speed: 21.1 s
instead of 15.3 s on a slower hour, and it was off by default.)
"""

from collections.abc import Callable, Iterator
from typing import TypeVar

from gevent.lock import Semaphore

T = TypeVar("T")


class Openings:
    """At most `most` stream openings of this process at work at once; 0 for no bound."""

    def __init__(self, most: int):
        self.turns = Semaphore(most) if most > 0 else None

    def run(self, work: Callable[[], T]) -> T:
        """Return what `work` returns, run in a turn of its own."""
        if self.turns is None:
            return work()
        with self.turns:
            return work()

    def admitted(self, chunks: Iterator[bytes]) -> Iterator[bytes]:
        """Yield what `chunks` yields, each made in a turn; the caller writes it outside."""
        if self.turns is None:
            yield from chunks
            return
        while True:
            with self.turns:
                chunk = next(chunks, None)
            if chunk is None:
                return
            yield chunk
