"""What row policies cost the fan-out: the real Hub and Stream loop feeding real sockets.

`python -m bench.policy_cost [STREAMS] [EVENTS] [ROUNDS]` delivers sales of two stores to
STREAMS live streams of `sales_logs`, twice over, interleaved ROUNDS times: once with every
stream signed in as an admin (the policy adds no condition: the run without policies), once
spread over the 8 policy groups of 2 stores × 4 roles (staff see only their store's sales).
Deliveries per CPU-second of the two are compared; the target is a ratio of at least 0.9.
Prints the figures, then one JSON line of them (`make bench` writes it to
bench/results/policy_cost.json).
"""

import gevent.monkey

gevent.monkey.patch_all()

import gc  # noqa: E402
import itertools  # noqa: E402
import json  # noqa: E402
import socket  # noqa: E402
import statistics  # noqa: E402
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
from feed.policy import visible_subscription  # noqa: E402
from feed.principal import ROLES, Principal  # noqa: E402
from models import db  # noqa: E402

TARGET_RATIO = 0.9
GROUPS = [Principal(user_id=1, role=role, store_id=store) for role in ROLES for store in (1, 2)]
ADMIN = Principal(user_id=1, role="admin")


def _drain(stream: Stream, sock: socket.socket) -> None:
    for chunk in stream:
        sock.sendall(chunk)


def _sales(head: int, events: int) -> list[bytes]:
    """Return INSERT events of sales after the log's head, alternating between two stores."""
    raw = []
    for i in range(head + 1, head + events + 1):
        row = {
            "id": i,
            "bread_type_id": 1,
            "quantity": 2,
            "unit_price": 6.5,
            "shift": "morning",
            "recorded_by": "ana",
            "created_at": "2026-12-01T08:00:00.000Z",
            "store_id": 1 + i % 2,
            "version": 1,
            "updated_at": "2026-12-01T08:00:00.000Z",
        }
        raw.append(orjson.dumps(
            {"id": i, "topic": "sales_logs", "op": "INSERT", "pk": i, "version": 1, "row": row,
             "old": None, "at": "2026-12-01T08:00:00.000Z", "mutation": None}
        ))  # fmt: skip
    return raw


def _run(principals: list[Principal], events: int) -> dict:
    """Deliver the events to one stream per principal; return deliveries and CPU seconds."""
    directory = tempfile.mkdtemp(prefix="tidings-policy-")
    app = create_app(
        {
            "SQLALCHEMY_DATABASE_URI": f"sqlite:///{directory}/policy.db",
            "REDIS_URL": "redis://127.0.0.1:1/0",
            "HEARTBEAT_SECONDS": 600,
        }
    )
    with app.app_context():
        db.create_all()
    runtime = app.extensions["tidings"]
    with app.app_context(), runtime.read() as conn:
        raw = _sales(runtime.log.head(conn), events)
    subscription = parse_subscription(
        MultiDict({"topics": "sales_logs"}), runtime.tables, runtime.custom_topics
    )
    pairs = [socket.socketpair() for _ in principals]
    for _, receiver in pairs:
        receiver.setblocking(False)
    with app.app_context():
        streams = [
            Stream(
                runtime,
                visible_subscription(subscription, runtime.registry.policy, principal),
                None,
                principal,
            )
            for principal in principals
        ]
        greenlets = [
            gevent.spawn(_drain, stream, sender)
            for stream, (sender, _) in zip(streams, pairs, strict=True)
        ]
        gevent.idle()
    gc.collect()
    cpu = 0.0
    for payload in raw:
        started = time.process_time()
        runtime.hub.deliver(Event.from_raw(payload))
        gevent.idle()
        cpu += time.process_time() - started
        # Outside the timed part; staff streams get only their store's half of the sales.
        for _, receiver in pairs:
            try:
                receiver.recv(1 << 20)
            except BlockingIOError:
                pass
    gevent.killall(greenlets)
    for sender, receiver in pairs:
        sender.close()
        receiver.close()
    deliveries = runtime.hub.delivered
    runtime.close()
    return {"deliveries": deliveries, "cpu_seconds": cpu, "per_second": deliveries / cpu}


def main(streams: int = 1000, events: int = 200, rounds: int = 5) -> dict:
    """Run both modes `rounds` times, interleaved; print and write the figures."""
    print(
        f"policy_cost: {streams} SSE streams of sales_logs, {events} sales alternating between "
        f"2 stores, in-process (real Hub, Stream loop and sockets), {rounds} interleaved rounds"
    )
    spread = list(itertools.islice(itertools.cycle(GROUPS), streams))
    runs: dict[str, list[dict]] = {"without_policies": [], "policy_groups": []}
    for _ in range(rounds):
        runs["without_policies"].append(_run([ADMIN] * streams, events))
        runs["policy_groups"].append(_run(spread, events))
    rates = {name: [r["per_second"] for r in found] for name, found in runs.items()}
    medians = {name: statistics.median(values) for name, values in rates.items()}
    ratio = medians["policy_groups"] / medians["without_policies"]
    for name, found in runs.items():
        print(
            f"  {name:>16}: {round(medians[name]):>9,} deliveries per CPU-second "
            f"(median of {rounds}; {found[0]['deliveries']:,} deliveries a round)"
        )
    print(f"  ratio policy groups / without policies: {ratio:.3f} (target >= {TARGET_RATIO})")
    figures = {
        "config": {"streams": streams, "events": events, "rounds": rounds, "groups": len(GROUPS)},
        "deliveries_per_cpu_second": {name: [round(v) for v in vs] for name, vs in rates.items()},
        "median": {name: round(v) for name, v in medians.items()},
        "ratio": round(ratio, 3),
        "target": {"ratio": TARGET_RATIO},
        "met": ratio >= TARGET_RATIO,
    }
    return figures


if __name__ == "__main__":
    print(json.dumps(main(*(int(arg) for arg in sys.argv[1:4]))))
