"""Automatic pipelining: Redis scripts called by many greenlets go out together.

Every request's rate limit, and every stream opening's slot, is one Lua script call. Made
one by one, a burst (a reconnect storm, many writers) queued thousands of greenlets on a few
pooled connections, each holder waiting its turn of the loop to read its answer: a request
that came meanwhile (a live publish) waited seconds for a connection. Here a call joins a
queue and waits; one sender greenlet writes everything queued in one pipeline, hands each
caller its own answer or error, and sends what queued meanwhile next: a burst costs a few
round trips on one connection, whatever its size.

A process's parts that send commands (limits, presence, the bus's publishing, the balancer)
share the pipeliner's small pool: with the bus's subscription, a worker holds at most
COMMAND_CONNECTIONS + 1 connections to Redis, however many clients it serves.
"""

from __future__ import annotations

from typing import Any

import gevent
import redis
from gevent.event import AsyncResult
from redis.backoff import NoBackoff
from redis.commands.core import Script
from redis.exceptions import NoScriptError
from redis.retry import Retry

Call = tuple[Script, list, list, AsyncResult]

# The longest one Redis step (connect, answer) may take: limits sit in front of every
# request, so a stalled Redis costs the requests under way this much, once, before each
# part's fallback takes over.
REDIS_WAIT_SECONDS = 0.25
# How long a command may wait for a pooled connection, all busy with others' round trips.
# Waiting in line is not Redis failing: under load (a worker's core saturated, each holder
# slow to read its answer) a line longer than REDIS_WAIT_SECONDS used to switch a healthy
# Redis's limits to per-process counts.
POOL_WAIT_SECONDS = 2.0
# Connections a process's commands may hold: the pipeline in flight, and one for the rest.
COMMAND_CONNECTIONS = 2


class Pipeliner:
    """Send the script calls of a process's greenlets in shared pipelines, one at a time."""

    def __init__(self, client: redis.Redis):
        self.client = client
        self._queued: list[Call] = []
        self._sending = False

    @classmethod
    def connect(cls, url: str) -> Pipeliner:
        """Return a pipeliner whose client holds at most COMMAND_CONNECTIONS to `url`."""
        pool = redis.BlockingConnectionPool.from_url(
            url,
            max_connections=COMMAND_CONNECTIONS,
            timeout=POOL_WAIT_SECONDS,
            socket_timeout=REDIS_WAIT_SECONDS,
            socket_connect_timeout=REDIS_WAIT_SECONDS,
            # One immediate reconnect for a pooled connection Redis closed, no more: a
            # request never waits out a backoff on a Redis that is gone.
            retry=Retry(NoBackoff(), 1),
        )
        return cls(redis.Redis(connection_pool=pool))

    def call(self, script: Script, keys: list, args: list) -> Any:
        """Return what `script` answers for `keys` and `args`, or raise its error."""
        return self._queue(script, keys, args).get()

    def call_many(self, script: Script, calls: list[tuple[list, list]]) -> list:
        """Return what `script` answers for each (keys, args), all in the next pipeline;
        raise the first error."""
        answers = [self._queue(script, keys, args) for keys, args in calls]
        return [answer.get() for answer in answers]

    def _queue(self, script: Script, keys: list, args: list) -> AsyncResult:
        answer = AsyncResult()
        self._queued.append((script, keys, args, answer))
        if not self._sending:
            self._sending = True
            # It runs once this greenlet waits: the calls made meanwhile go in its pipeline.
            gevent.spawn(self._send_queued)
        return answer

    def _send_queued(self) -> None:
        """Send what is queued, pipeline after pipeline, until nothing is."""
        try:
            while self._queued:
                calls, self._queued = self._queued, []
                self._send(calls)
        finally:
            self._sending = False

    def _send(self, calls: list[Call]) -> None:
        """Send calls in one pipeline; a failed round trip is every caller's error."""
        try:
            results = self._execute(calls)
            lost = [i for i, result in enumerate(results) if isinstance(result, NoScriptError)]
            if lost:
                # Redis lost its scripts (a restart, SCRIPT FLUSH): load each once, then
                # send those calls again, still in one pipeline.
                for script in {calls[i][0] for i in lost}:
                    script.sha = self.client.script_load(script.script)
                for i, result in zip(lost, self._execute([calls[i] for i in lost]), strict=True):
                    results[i] = result
        except BaseException as error:
            for *_, answer in calls:
                answer.set_exception(error)
            if not isinstance(error, Exception):
                raise
            return
        for (*_, answer), result in zip(calls, results, strict=True):
            if isinstance(result, Exception):
                answer.set_exception(result)
            else:
                answer.set(result)

    def _execute(self, calls: list[Call]) -> list:
        """Return the answers of one pipeline of calls, errors in place of failed ones."""
        with self.client.pipeline(transaction=False) as pipe:
            for script, keys, args, _ in calls:
                # evalsha itself, not the script: a pipeline of scripts asks Redis whether
                # it knows them first, one more round trip each time.
                pipe.evalsha(script.sha, len(keys), *keys, *args)
            return pipe.execute(raise_on_error=False)
