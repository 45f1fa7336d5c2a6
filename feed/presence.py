"""Presence: who has a stream open, counted in Redis across workers and nodes.

Each open stream of a signed-in user holds an entry in that user's sorted set, scored by a
lease expiry that this process renews; a dead worker's entries lapse and a sweep, run by
every worker, takes the users left with none. A user's first entry appends a `join` event
to the `presence` topic and the removal of their last a `leave` event; each Lua script
decides atomically, so exactly one process appends each event.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from time import monotonic
from typing import TYPE_CHECKING

from gevent.queue import Empty, Queue

from .bus import REDIS_DOWN
from .errors import ApiError
from .pipeliner import Pipeliner
from .policy import forbidden
from .principal import Principal

if TYPE_CHECKING:
    from .extension import FeedRuntime

logger = logging.getLogger("tidings.presence")

# Seconds an open stream's entry outlives its last renewal (renewed every third of it).
LEASE_SECONDS = 30.0

# Lua shared by the scripts: drop a user's lapsed entries (and their topics).
_DROP_LAPSED = """
local function drop_lapsed(streams, info, now)
  for _, id in ipairs(redis.call('zrangebyscore', streams, '-inf', now)) do
    redis.call('hdel', info, 't:' .. id)
  end
  redis.call('zremrangebyscore', streams, '-inf', now)
end
"""

# Hold (or renew) one stream's entry, on Redis's clock; return {1 if the user just joined,
# since}. A renewal that reaches Redis after its stream's release is refused: it would
# bring a closed one back. KEYS: user's streams, user's info, online users, released
# streams. ARGV: stream id, user id, username, role, topics, ttl, lease seconds.
HOLD = (
    _DROP_LAPSED
    + """
redis.replicate_commands()
local t = redis.call('time')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local expiry = now + tonumber(ARGV[7])
if redis.call('zscore', KEYS[4], ARGV[1]) then return {0, false} end
drop_lapsed(KEYS[1], KEYS[2], now)
local joined = redis.call('zcard', KEYS[1]) == 0
if joined then
  redis.call('del', KEYS[2])
  redis.call('hset', KEYS[2], 'id', ARGV[2], 'username', ARGV[3], 'role', ARGV[4],
             'since', t[1] .. '.' .. string.format('%06d', tonumber(t[2])))
end
redis.call('zadd', KEYS[1], expiry, ARGV[1])
redis.call('hset', KEYS[2], 't:' .. ARGV[1], ARGV[5])
redis.call('expire', KEYS[1], ARGV[6])
redis.call('expire', KEYS[2], ARGV[6])
if tonumber(redis.call('zscore', KEYS[3], ARGV[2]) or 0) < expiry then
  redis.call('zadd', KEYS[3], expiry, ARGV[2])
end
return {joined and 1 or 0, redis.call('hget', KEYS[2], 'since')}
"""
)

# Give back one stream's entry; return the user's info if that was their last, else false.
# KEYS: user's streams, user's info, online users, released streams. ARGV: now, stream id,
# user id, expiry.
RELEASE = (
    _DROP_LAPSED
    + """
redis.call('zremrangebyscore', KEYS[4], '-inf', ARGV[1])
redis.call('zadd', KEYS[4], ARGV[4], ARGV[2])
redis.call('zrem', KEYS[1], ARGV[2])
redis.call('hdel', KEYS[2], 't:' .. ARGV[2])
drop_lapsed(KEYS[1], KEYS[2], ARGV[1])
if redis.call('zcard', KEYS[1]) > 0 then return false end
local info = redis.call('hmget', KEYS[2], 'id', 'username', 'role', 'since')
redis.call('del', KEYS[2])
redis.call('zrem', KEYS[3], ARGV[3])
if not info[1] then return false end
return info
"""
)

# Take the users whose every entry lapsed; return their info, four fields each.
# KEYS: online users. ARGV: now, key prefix.
SWEEP = (
    _DROP_LAPSED
    + """
local gone = {}
for _, uid in ipairs(redis.call('zrangebyscore', KEYS[1], '-inf', ARGV[1])) do
  local streams, info = ARGV[2] .. 'streams:' .. uid, ARGV[2] .. 'user:' .. uid
  drop_lapsed(streams, info, ARGV[1])
  local last = redis.call('zrange', streams, -1, -1, 'withscores')
  if last[2] then
    redis.call('zadd', KEYS[1], last[2], uid)
  else
    for _, field in ipairs(redis.call('hmget', info, 'id', 'username', 'role', 'since')) do
      table.insert(gone, field or '')
    end
    redis.call('del', info)
    redis.call('zrem', KEYS[1], uid)
  end
end
return gone
"""
)

# Return who is connected: per user id, username, role, since, then their topic lists.
# KEYS: online users. ARGV: now, key prefix.
ROSTER = """
local users = {}
for _, uid in ipairs(redis.call('zrangebyscore', KEYS[1], ARGV[1], '+inf')) do
  local info = ARGV[2] .. 'user:' .. uid
  local ids = redis.call('zrangebyscore', ARGV[2] .. 'streams:' .. uid, ARGV[1], '+inf')
  local user = redis.call('hmget', info, 'username', 'role', 'since')
  if #ids > 0 and user[1] then
    for _, id in ipairs(ids) do
      table.insert(user, redis.call('hget', info, 't:' .. id) or '')
    end
    table.insert(users, user)
  end
end
return users
"""


def iso(since: str) -> str:
    """Return a Redis `seconds.micros` time as ISO 8601 UTC with microseconds."""
    moment = datetime.fromtimestamp(float(since), UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class Entry:
    """One open stream of a signed-in user, as presence holds it."""

    id: str
    principal: Principal
    topics: tuple[str, ...]


class Presence:
    """Join and leave events, and the roster, from this process's open streams.

    A stream's open holds its entry (and appends its user's join) in the stream's own request,
    so the roster shows it once the stream is ready; streams opening together share one
    round trip. A stream's close may run anywhere — even
    inside another greenlet's write transaction, when a dropped stream is finalized by the
    garbage collector — so it only queues its release for this process's presence greenlet:
    it never waits on Redis or on the database's write lock.
    """

    def __init__(
        self,
        redis_url: str,
        namespace: str,
        publish: Callable[[dict], None],
        app_context: Callable[[], AbstractContextManager],
        *,
        lease_seconds: float = LEASE_SECONDS,
        pipeliner: Pipeliner | None = None,
    ):
        """Hold presence in the Redis at `redis_url`, through the process's `pipeliner`
        (and its pool) when given, else through one of its own."""
        self.pipeliner = pipeliner or Pipeliner.connect(redis_url)
        self.client = self.pipeliner.client
        self.prefix = f"{namespace}:presence:"
        self.publish = publish
        self.app_context = app_context
        self.lease_seconds = lease_seconds
        self._hold = self.client.register_script(HOLD)
        self._release = self.client.register_script(RELEASE)
        self._sweep = self.client.register_script(SWEEP)
        self._roster = self.client.register_script(ROSTER)
        self._open: dict[str, Entry] = {}
        # Releases queued by closing streams, for the presence greenlet.
        self._work: Queue = Queue()

    def _keys(self, user_id) -> list[str]:
        return [
            f"{self.prefix}streams:{user_id}",
            f"{self.prefix}user:{user_id}",
            self._online,
            f"{self.prefix}released",
        ]

    @property
    def _online(self) -> str:
        return f"{self.prefix}online"

    def _now(self) -> float:
        seconds, micros = self.client.time()
        return seconds + micros / 1e6

    def opened(self, principal: Principal | None, topics: tuple[str, ...]) -> Entry | None:
        """Count a stream that opened; a signed-in user's first appends `join`."""
        if principal is None or not principal.authenticated:
            return None
        entry = Entry(uuid.uuid4().hex, principal, topics)
        self._open[entry.id] = entry
        try:
            self._held(entry)
        except REDIS_DOWN as error:
            # The renewal joins it once Redis answers again.
            logger.warning("presence not held: redis unreachable (%s)", error)
        return entry

    def closed(self, entry: Entry | None) -> None:
        """Queue the release of a stream that closed; its user's last appends `leave`."""
        if entry is not None and self._open.pop(entry.id, None) is not None:
            self._work.put_nowait(partial(self._released, entry))

    def _released(self, entry: Entry) -> None:
        """Give back a closed stream's entry; announce a leave when it was its user's last."""
        user = entry.principal.user_id
        now = self._now()
        info = self._release(self._keys(user), [now, entry.id, user, now + self.lease_seconds])
        if info:
            self._announce("leave", *info)

    def _held(self, entry: Entry) -> None:
        """Hold an entry, in one pipeline with the other streams opening meanwhile (a
        reconnect storm opens thousands at once); announce a join when it is its user's
        first."""
        self._joined(entry, self.pipeliner.call(self._hold, *self._hold_call(entry)))

    def _hold_call(self, entry: Entry) -> tuple[list, list]:
        """Return the keys and arguments that hold or renew an entry."""
        p = entry.principal
        args = [entry.id, p.user_id, p.username, p.role, ",".join(entry.topics)]
        args += [int(self.lease_seconds) + 1, self.lease_seconds]
        return self._keys(p.user_id), args

    def _joined(self, entry: Entry, held: list) -> None:
        """Announce a join when holding the entry made it its user's first."""
        joined, since = held
        if joined:
            p = entry.principal
            self._announce("join", p.user_id, p.username, p.role, since, entry.topics)

    def _announce(self, state, user_id, username, role, since, topics=None) -> None:
        def text(value):
            return value.decode() if isinstance(value, bytes) else value

        data = {
            "state": state,
            "user": {"id": int(text(user_id)), "username": text(username), "role": text(role)},
            "since": iso(text(since)),
        }
        if topics is not None:
            data["topics"] = list(topics)
        with self.app_context():
            self.publish(data)

    def renew(self) -> None:
        """Renew every entry held here (re-joining any lost) and sweep lapsed users.

        One round trip for all of this process's streams, however many.
        """
        entries = list(self._open.values())
        held = self.pipeliner.call_many(self._hold, [self._hold_call(e) for e in entries])
        for entry, result in zip(entries, held, strict=True):
            self._joined(entry, result)
        gone = self._sweep([self._online], [self._now(), self.prefix])
        for at in range(0, len(gone), 4):
            if gone[at]:
                self._announce("leave", *gone[at : at + 4])

    def run(self) -> None:
        """Do queued releases as they come, and renew and sweep every third of a lease."""
        renew_at = monotonic() + self.lease_seconds / 3
        while True:
            renew_at = self.work(renew_at)

    def work(self, renew_at: float) -> float:
        """Renew and sweep if `renew_at` (monotonic) has come, else do the next queued release
        that comes before it; return when to renew next."""
        if monotonic() >= renew_at:
            step, renew_at = self.renew, monotonic() + self.lease_seconds / 3
        else:
            try:
                step = self._work.get(timeout=renew_at - monotonic())
            except Empty:
                return renew_at
        try:
            step()
        except REDIS_DOWN as error:
            # A release lost here lapses with its lease, and a sweep announces the leave.
            logger.warning("presence not updated: redis unreachable (%s)", error)
        except Exception:
            logger.exception("updating presence failed")
        return renew_at

    def roster(self, topics: set[str] | None) -> list[dict]:
        """Return who is connected now (to any of `topics`, when given), by username."""
        users = []
        found = self._roster([self._online], [self._now(), self.prefix])
        for username, role, since, *lists in found:
            held = {t for text in lists for t in text.decode().split(",") if t}
            if topics is not None:
                held &= topics
                if not held:
                    continue
            users.append(
                {
                    "username": username.decode(),
                    "role": role.decode(),
                    "since": iso(since.decode()),
                    "topics": sorted(held),
                }
            )
        return sorted(users, key=lambda user: user["username"])

    def close(self) -> None:
        """Release the Redis connections."""
        self.client.close()


def read_roster(rt: FeedRuntime, principal: Principal, topics: set[str] | None) -> dict:
    """Return who is connected now, as the principal may see it, and the cursor to follow.

    The cursor is the log's head read before the roster: every join or leave that changes
    the roster afterwards comes after it. Topics the principal may not read are left out.
    """
    if rt.registry.policy("presence").scope("read", principal) is None:
        raise forbidden("You may not read presence.", topic="presence")
    with rt.read() as conn:
        cursor = rt.log.head(conn)
    readable = {
        topic
        for topic in (*rt.tables, *rt.custom_topics)
        if rt.registry.policy(topic).scope("read", principal) is not None
    }
    try:
        users = rt.presence.roster(readable if topics is None else topics & readable)
    except REDIS_DOWN as error:
        raise ApiError(
            503, "presence_unavailable", "Presence is unavailable while Redis is down.", {}
        ) from error
    return {"users": users, "cursor": cursor}
