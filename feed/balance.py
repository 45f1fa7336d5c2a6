"""Rebalancing: every worker records its open streams in Redis and sheds, a few per tick,
what it holds beyond its share, so streams spread again over a node that came back.

Shed streams reconnect through the proxy, which picks a node for them: the counts converge
over several ticks instead of moving every client at once. Without Redis nothing is shed.
"""

import logging
import math
import os
import random
import socket
from collections.abc import Callable
from dataclasses import dataclass

import gevent
import orjson
import redis

from .drain import Drain

logger = logging.getLogger("tidings.balance")


@dataclass(frozen=True)
class Rule:
    """When a worker holds too many streams, and how fast it lets them go."""

    # A worker sheds once it holds more than share × (1 + tolerance) + slack streams.
    tolerance: float = 0.2
    slack: int = 5
    # At most this fraction of its streams per tick (and at least one, when over).
    step: float = 0.1

    def limit(self, counts: list[int]) -> float:
        """Return the most streams a worker may hold before it sheds: its fair share of the
        total over the live workers, plus the tolerance and the slack."""
        share = sum(counts) / len(counts) if counts else 0.0
        return share * (1 + self.tolerance) + self.slack

    def to_shed(self, mine: int, counts: list[int]) -> int:
        """Return how many of its `mine` streams a worker sheds this tick, given every live
        worker's count (its own included)."""
        over = math.ceil(mine - self.limit(counts))
        if over <= 0:
            return 0
        return min(over, max(1, math.ceil(mine * self.step)))


@dataclass(frozen=True)
class View:
    """What one tick saw: every live worker's open streams, and what this one shed."""

    by_worker: dict[str, int]
    mine: int
    limit: float
    shed: int

    def describe(self) -> dict:
        """Return the figures the monitor shows."""
        counts = self.by_worker.values()
        return {
            "workers": len(counts),
            "streams": sum(counts),
            "share": round(sum(counts) / len(counts), 1) if counts else 0.0,
            "limit": round(self.limit, 1),
            "by_worker": dict(sorted(self.by_worker.items())),
        }


def worker_id() -> str:
    """Name this worker among every node's: host and process id."""
    return f"{socket.gethostname()}:{os.getpid()}"


class Balancer:
    """Publish this worker's stream count each tick, read the others', shed the excess."""

    def __init__(
        self,
        client: redis.Redis,
        key: str,
        drain: Drain,
        rule: Rule,
        seconds: float,
        on_view: Callable[[View | None], None],
    ):
        self.redis = client
        self.key = key
        self.drain = drain
        self.rule = rule
        self.seconds = seconds
        # A worker silent for this long is gone (it crashed, or its node did).
        self.ttl = max(1, math.ceil(seconds * 3))
        self.on_view = on_view
        self.id = worker_id()
        self.view: View | None = None

    def counts(self, mine: int) -> dict[str, int]:
        """Record this worker's count and return every live worker's, forgetting the silent."""
        now = self.redis.time()[0]
        entry = orjson.dumps({"streams": mine, "at": now})
        pipe = self.redis.pipeline(transaction=False)
        pipe.hset(self.key, self.id, entry)
        pipe.expire(self.key, self.ttl)
        pipe.hgetall(self.key)
        _, _, entries = pipe.execute()
        live, silent = {}, []
        for name, raw in entries.items():
            record = orjson.loads(raw)
            if record["at"] > now - self.ttl:
                live[name.decode()] = record["streams"]
            else:
                silent.append(name)
        if silent:
            self.redis.hdel(self.key, *silent)
        return live

    def tick(self) -> View | None:
        """Run one round; return what it saw, or None when Redis did not answer."""
        try:
            if self.drain.draining:
                # Its streams are all going: it takes no part in anyone's share any more.
                self.redis.hdel(self.key, self.id)
                return None
            mine = len(self.drain.streams)
            by_worker = self.counts(mine)
        except (redis.RedisError, OSError) as exc:
            logger.debug("balance skipped: %s", exc)
            return None
        counts = list(by_worker.values())
        shed = self.drain.shed(self.rule.to_shed(mine, counts))
        return View(by_worker, mine, self.rule.limit(counts), shed)

    def run(self) -> None:
        """Tick forever, at jittered intervals so workers do not act in the same instant."""
        while True:
            gevent.sleep(self.seconds * random.uniform(0.75, 1.25))
            self.view = self.tick()
            self.on_view(self.view)
