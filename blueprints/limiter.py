"""Rate limits and open-stream slots counted in Redis, with per-process memory as the fallback.

Counts live in Redis so every worker and node shares them. When Redis fails, this process
counts in its own memory instead and stops asking Redis; a background probe pings it now
and then and moves the counts back to Redis once it answers. So a request never waits on
a Redis that is known to be down: at most the one that finds out pays a short timeout.

Plain Python on the `limits` library: no Flask, no feed engine.
"""

import logging
import math
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import gevent
from limits import RateLimitItem, parse
from limits.storage import MemoryStorage, RedisStorage
from limits.strategies import MovingWindowRateLimiter

from feed.bus import REDIS_DOWN
from feed.pipeliner import Pipeliner

logger = logging.getLogger("tidings.limits")

# Seconds between pings of a Redis that failed.
PROBE_SECONDS = 2.0
# Seconds an open stream's slot outlives its last refresh: a dead worker's slots lapse.
LEASE_SECONDS = 60.0
# What a refused stream is told to wait: a slot frees when some stream closes, which no
# window predicts.
FULL_RETRY_SECONDS = 5

# Take a slot in a principal's sorted set of open streams (scored by lease expiry),
# after dropping lapsed ones, unless it already holds `most`.
ACQUIRE_SLOT = """
redis.call('zremrangebyscore', KEYS[1], '-inf', ARGV[1])
if redis.call('zcard', KEYS[1]) >= tonumber(ARGV[3]) then
  return 0
end
redis.call('zadd', KEYS[1], ARGV[2], ARGV[4])
redis.call('expire', KEYS[1], ARGV[5])
return 1
"""


def storage_uri(redis_url: str) -> str:
    """Return the `limits` storage URI for a redis-py URL (`unix://` becomes `redis+unix://`)."""
    return "redis+" + redis_url if redis_url.startswith("unix://") else redis_url


class PipelinedRedisStorage(RedisStorage):
    """`limits`' Redis storage, its moving-window hits sent in the process's shared pipelines."""

    def __init__(self, uri: str, pipeliner: Pipeliner, **options):
        super().__init__(uri, connection_pool=pipeliner.client.connection_pool, **options)
        self.pipeliner = pipeliner

    def acquire_entry(self, key: str, limit: int, expiry: int, amount: int = 1) -> bool:
        """Take `amount` entries of a key's moving window, as `limits` does, in the next
        pipeline."""
        args = [time.time(), limit, expiry, amount]
        script = self.lua_acquire_moving_window
        return bool(self.pipeliner.call(script, [self.prefixed_key(key)], args))


@dataclass(frozen=True)
class Refusal:
    """A request over a limit: which limit, in its notation, and when to try again."""

    kind: str
    limit: str
    retry_after: int


@dataclass(frozen=True)
class Slot:
    """One open stream's place among its principal's open streams."""

    key: str
    id: str


class Limiter:
    """Moving-window rate limits by kind, and open-stream slots, for one app."""

    def __init__(
        self,
        redis_url: str,
        rates: dict[str, str],
        max_streams: int,
        *,
        namespace: str,
        on_storage: Callable[[bool], None],
        probe_seconds: float = PROBE_SECONDS,
        lease_seconds: float = LEASE_SECONDS,
        pipeliner: Pipeliner | None = None,
    ):
        """Count in the Redis at `redis_url`, through the process's `pipeliner` (and its
        pool) when given, else through one of the limiter's own."""
        self.rates: dict[str, RateLimitItem] = {kind: parse(text) for kind, text in rates.items()}
        self.max_streams = max_streams
        self.namespace = namespace
        self.on_storage = on_storage
        self.probe_seconds = probe_seconds
        self.lease_seconds = lease_seconds
        self.pipeliner = pipeliner or Pipeliner.connect(redis_url)
        self._storage = PipelinedRedisStorage(
            storage_uri(redis_url), self.pipeliner, key_prefix=f"{namespace}:rate"
        )
        self._redis = self._storage.get_connection()
        self._acquire_slot = self._redis.register_script(ACQUIRE_SLOT)
        self._shared = MovingWindowRateLimiter(self._storage)
        self.shared = True
        # This process's open streams, by principal key: counted here while Redis is
        # down, and refreshed (or put back) in Redis while it is up.
        self._open: dict[str, set[str]] = {}
        self._refresher: gevent.Greenlet | None = None
        on_storage(True)

    @cached_property
    def _local(self) -> MovingWindowRateLimiter:
        """The per-process counts, made when first needed: a memory storage starts a timer
        thread, and one started in gunicorn's master (which builds the app once) ran on in
        a worker forked meanwhile and failed there."""
        return MovingWindowRateLimiter(MemoryStorage())

    # Storage state

    def _lost(self, error: Exception) -> None:
        """Count in this process's memory until the probe finds Redis again."""
        if not self.shared:
            return
        self.shared = False
        logger.warning("rate limits counted per process: redis unreachable (%s)", error)
        self.on_storage(False)
        gevent.spawn(self._probe)

    def _probe(self) -> None:
        while not self._answered():
            gevent.sleep(self.probe_seconds)

    def _answered(self) -> bool:
        """Ping Redis once; when it answers, count in Redis again."""
        if self.shared:
            return True
        if not self._storage.check():
            return False
        self.shared = True
        logger.info("rate limits shared again: redis reachable")
        self.on_storage(True)
        return True

    # Rate limits

    def hit(self, kind: str, key: str, cost: int = 1) -> Refusal | None:
        """Count `cost` hits of a kind for a key; return a Refusal when over the limit."""
        item = self.rates[kind]
        if self.shared:
            try:
                return self._count(self._shared, item, kind, key, cost)
            except REDIS_DOWN as error:
                self._lost(error)
        return self._count(self._local, item, kind, key, cost)

    def _count(self, strategy, item: RateLimitItem, kind: str, key: str, cost: int):
        if strategy.hit(item, kind, key, cost=cost):
            return None
        reset = strategy.get_window_stats(item, kind, key).reset_time
        return Refusal(kind, str(item), max(1, math.ceil(reset - time.time())))

    # Open streams

    def _slot_key(self, key: str) -> str:
        return f"{self.namespace}:streams:{key}"

    def open_stream(self, key: str) -> Slot | Refusal:
        """Take one of a principal's MAX_STREAMS open-stream slots, or refuse."""
        slot = Slot(key, uuid.uuid4().hex)
        taken = None
        if self.shared:
            now = time.time()
            args = [now, now + self.lease_seconds, self.max_streams, slot.id, self._ttl()]
            try:
                keys = [self._slot_key(key)]
                taken = bool(self.pipeliner.call(self._acquire_slot, keys, args))
            except REDIS_DOWN as error:
                self._lost(error)
        if taken is None:
            taken = len(self._open.get(key, ())) < self.max_streams
        if not taken:
            return Refusal("open_streams", f"{self.max_streams} open streams", FULL_RETRY_SECONDS)
        self._open.setdefault(key, set()).add(slot.id)
        if self._refresher is None:
            self._refresher = gevent.spawn(self._refresh_forever)
        return slot

    def close_stream(self, slot: Slot) -> None:
        """Give a closed stream's slot back."""
        held = self._open.get(slot.key)
        if held is None or slot.id not in held:
            return
        held.discard(slot.id)
        if not held:
            del self._open[slot.key]
        if self.shared:
            try:
                self._redis.zrem(self._slot_key(slot.key), slot.id)
            except REDIS_DOWN as error:
                # Its lease lapses on its own.
                self._lost(error)

    def _ttl(self) -> int:
        return math.ceil(self.lease_seconds)

    def refresh(self) -> None:
        """Extend the lease of every stream open here, putting back any Redis lost."""
        if not self.shared or not self._open:
            return
        expiry = time.time() + self.lease_seconds
        try:
            with self._redis.pipeline(transaction=False) as pipe:
                for key, ids in self._open.items():
                    pipe.zadd(self._slot_key(key), dict.fromkeys(ids, expiry))
                    pipe.expire(self._slot_key(key), self._ttl())
                pipe.execute()
        except REDIS_DOWN as error:
            self._lost(error)

    def _refresh_forever(self) -> None:
        while True:
            gevent.sleep(self.lease_seconds / 3)
            try:
                self.refresh()
            except Exception:
                logger.exception("refreshing open-stream slots failed")

    def close(self) -> None:
        """Stop the refresher and release the Redis connections."""
        if self._refresher is not None:
            self._refresher.kill(block=False)
            self._refresher = None
        self.pipeliner.client.connection_pool.disconnect()
