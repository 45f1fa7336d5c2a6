"""A server holding every stream sheds them gradually to one that comes up, losing nothing."""

import itertools
import threading
import time
import uuid

from .delivery_tools import Writer, create_bread_types, finish, head, wait_for
from .roamer import Roamer

QUERIES = (
    "topics=sales_logs,production_logs,shift_feedback,bread_types",
    "topics=sales_logs&sales_logs.shift=eq.night",
)
STREAMS = 40
STEP = 0.1
# Shedding stops at share × (1 + tolerance) + slack = 20 × 1.2 + 1.
LIMIT = 25


def test_a_crowded_server_sheds_streams_gradually_to_a_new_one(start_server):
    settings = {
        # Their own channel: no other test's workers count in the shares.
        "FEED_CHANNEL": f"tidings:rebalance-{uuid.uuid4().hex}",
        "BALANCE_SECONDS": "0.4",
        "BALANCE_STEP": str(STEP),
        "BALANCE_TOLERANCE": "0.2",
        "BALANCE_SLACK": "1",
        "DRAIN_SECONDS": "0.5",
        "HEARTBEAT_SECONDS": "1",
    }
    node_a = start_server(workers=1, **settings)
    bread_types = create_bread_types(node_a.url)
    start = head(node_a.url)
    deadline = time.monotonic() + 40
    nodes = [node_a.url]

    def on(url: str) -> int:
        return sum(r.url == url for r in roamers)

    def least_loaded() -> str:
        """Pick a node as a least-connections proxy would."""
        return min(nodes, key=on)

    roamers = [Roamer(least_loaded, QUERIES[n % 2], start, deadline) for n in range(STREAMS)]
    for roamer in roamers:
        roamer.start()
    wait_for(lambda: on(node_a.url) == STREAMS, 15, "every stream on A")
    # Alone, A holds its share: it sheds nothing.
    time.sleep(1.2)
    assert on(node_a.url) == STREAMS and not any(r.ends for r in roamers)

    node_b = start_server(workers=1, **settings)
    nodes.append(node_b.url)
    writer = Writer(node_a.url, bread_types, seed=3)
    writing = threading.Thread(target=writer.run, args=(40, 0.02), daemon=True)
    writing.start()
    counts = []
    settle = time.monotonic() + 15
    while time.monotonic() < settle:
        counts.append(on(node_a.url))
        if counts[-1] <= LIMIT and on(node_b.url) == STREAMS - counts[-1]:
            break
        time.sleep(0.05)
    writing.join(timeout=30)

    # Gradually: a few streams a round, over several rounds, down to the limit and no lower.
    drops = [before - after for before, after in itertools.pairwise(counts) if before > after]
    assert counts[0] >= STREAMS - 4, counts
    assert len(drops) >= 3 and max(drops) <= 2 * STREAMS * STEP, counts
    assert 20 <= counts[-1] <= LIMIT, counts
    shed = [end for r in roamers for end in r.ends]
    assert {end.url for end in shed} == {node_a.url}
    assert all(end.clean and 0 <= end.retry <= 500 for end in shed)
    assert len(shed) == STREAMS - counts[-1]
    finish(node_a.url, roamers, start, deadline)
