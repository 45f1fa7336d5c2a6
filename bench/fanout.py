"""In-process fan-out cost: the real Hub and Stream live loop feeding real sockets, no HTTP.

`python -m bench.fanout STREAMS EVENTS BATCH` prints one JSON line: CPU microseconds per
delivery and the garbage collections it caused. It isolates the hot path from the scheduler
noise of a shared machine, so before/after ratios of hub and stream changes are measurable.
"""

import gevent.monkey

gevent.monkey.patch_all()

import gc  # noqa: E402
import json  # noqa: E402
import socket  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import gevent  # noqa: E402
import orjson  # noqa: E402
from werkzeug.datastructures import MultiDict  # noqa: E402

from app import create_app  # noqa: E402
from feed.delivery import Stream  # noqa: E402
from feed.filters import parse_subscription  # noqa: E402
from feed.log import Event  # noqa: E402
from models import db  # noqa: E402

from .publisher import bench_event  # noqa: E402


def _drain(stream: Stream, sock: socket.socket) -> None:
    for chunk in stream:
        sock.sendall(chunk)


def run(streams: int, events: int, batch: int) -> dict:
    """Deliver `events` to `streams` live streams, `batch` events per wake-up."""
    directory = tempfile.mkdtemp(prefix="tidings-fanout-")
    app = create_app(
        {
            "SQLALCHEMY_DATABASE_URI": f"sqlite:///{directory}/fanout.db",
            "REDIS_URL": "redis://127.0.0.1:1/0",
            "TOPICS": ["bench"],
            "HEARTBEAT_SECONDS": 600,
        }
    )
    with app.app_context():
        db.create_all()
    runtime = app.extensions["tidings"]
    subscription = parse_subscription(
        MultiDict({"topics": "bench"}), runtime.tables, runtime.custom_topics
    )
    pairs = [socket.socketpair() for _ in range(streams)]
    with app.app_context():
        greenlets = [
            gevent.spawn(_drain, Stream(runtime, subscription, None), sender) for sender, _ in pairs
        ]
        gevent.idle()
    data = bench_event(f"{time.time():.6f}")["data"]
    # Ids follow the log's head (its epoch's range): a stream takes older ones as replayed.
    with app.app_context(), runtime.read() as conn:
        head = runtime.log.head(conn)
    raw = [
        orjson.dumps(
            {"id": i, "topic": "bench", "op": "PUBLISH", "pk": None, "version": None,
             "row": data, "old": None, "at": "2026-11-25T11:00:00.000Z", "mutation": None}
        )
        for i in range(head + 1, head + events + 1)
    ]  # fmt: skip
    gc.collect()
    collections = [g["collections"] for g in gc.get_stats()]
    cpu = 0.0
    received = 0
    for first in range(0, events, batch):
        started = time.process_time()
        for payload in raw[first : first + batch]:
            runtime.hub.deliver(Event.from_raw(payload))
        gevent.idle()
        cpu += time.process_time() - started
        # Read outside the timed part, so no socket buffer fills up.
        received += sum(len(receiver.recv(1 << 20)) for _, receiver in pairs)
    after = [g["collections"] for g in gc.get_stats()]
    gevent.killall(greenlets)
    return {
        "streams": streams,
        "events": events,
        "batch": batch,
        "deliveries": runtime.hub.delivered,
        "bytes_received": received,
        "cpu_us_per_delivery": round(cpu / max(runtime.hub.delivered, 1) * 1e6, 2),
        "gc_collections": [b - a for a, b in zip(collections, after, strict=True)],
    }


if __name__ == "__main__":
    print(json.dumps(run(*(int(arg) for arg in sys.argv[1:4]))))
