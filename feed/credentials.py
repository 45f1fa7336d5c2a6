"""Open streams by the credential they rest on, so the end of a session or token ends them.

Identity appends an event to the internal `auth` topic when a session logs out or a token
is revoked, in the same transaction. Like every event it reaches every worker of every node
once, in order (through Redis, or the log when Redis is down), and the relay hands it here.
"""

import time
from weakref import WeakValueDictionary

from cachetools import TTLCache

from .hub import Subscriber
from .principal import Principal

# The internal topic of ended credentials: {"reason": ..., "session" | "token" | "user": id}.
TOPIC = "auth"
KINDS = ("session", "token", "user")
# Ended for good, so remembered: a user whose access changed signs in again as themselves.
FINAL_KINDS = ("session", "token")
# How long an ended credential is remembered, for streams that resolved their principal just
# before it ended and begin watching just after.
REMEMBER_SECONDS = 600
# How long an API token's principal is reused without asking the database again. Any ended
# credential (an `auth` event, from any node) forgets them all at once; this bounds what
# nothing announces, such as a user deactivated in the database.
RESOLVED_SECONDS = 5


class Credentials:
    """The subscribers resting on each session and token of this process."""

    def __init__(self) -> None:
        self.watchers: dict[tuple[str, object], set[Subscriber]] = {}
        self.ended: TTLCache = TTLCache(maxsize=10_000, ttl=REMEMBER_SECONDS)
        # One principal object per distinct principal with open streams: a user's many
        # streams (and a token's) share it instead of each keeping its own copy.
        self.principals: WeakValueDictionary = WeakValueDictionary()
        # Principals of API tokens by the token's digest, asked of the database lately.
        self.resolved: TTLCache = TTLCache(maxsize=10_000, ttl=RESOLVED_SECONDS)

    def recall(self, key: str) -> Principal | None:
        """Return the principal resolved lately for a credential, while it is unexpired."""
        principal = self.resolved.get(key)
        if principal is None or (principal.expires_at or 0) <= time.time():
            return None
        return principal

    def remember(self, key: str, principal: Principal) -> None:
        """Keep a principal the database resolved, for RESOLVED_SECONDS at most."""
        self.resolved[key] = principal

    def forget(self) -> None:
        """Forget every remembered principal: some credential ended."""
        self.resolved.clear()

    def intern(self, principal: Principal) -> Principal:
        """Return the equal principal already held, or hold this one."""
        return self.principals.setdefault(principal, principal)

    def watch(self, subscriber: Subscriber, principal: Principal) -> None:
        """End the subscriber when a credential its principal rests on ends."""
        for key in principal.rests_on:
            reason = self.ended.get(key)
            if reason is not None:
                subscriber.end(reason)
            self.watchers.setdefault(key, set()).add(subscriber)

    def unwatch(self, subscriber: Subscriber, principal: Principal) -> None:
        """Stop watching for a subscriber that is gone."""
        for key in principal.rests_on:
            watchers = self.watchers.get(key)
            if watchers is not None:
                watchers.discard(subscriber)
                if not watchers:
                    del self.watchers[key]

    def end(self, data: dict) -> None:
        """End every subscriber resting on the credential an `auth` event names."""
        self.forget()
        reason = data.get("reason") or "revoked"
        for kind in KINDS:
            if data.get(kind) is not None:
                key = (kind, data[kind])
                if kind in FINAL_KINDS:
                    self.ended[key] = reason
                for subscriber in self.watchers.pop(key, ()):
                    subscriber.end(reason)


class Credential:
    """What an open stream or long poll watches of its principal's credential: its expiry,
    and the end (logout, revocation) of the session or token it rests on."""

    __slots__ = ("credentials", "principal", "expires_at")

    def __init__(self, credentials: "Credentials", principal: Principal | None):
        self.credentials = credentials
        self.principal = principal if principal is None else credentials.intern(principal)
        self.expires_at = principal.expires_at if principal is not None else None

    def watch(self, subscriber: Subscriber) -> None:
        """Start watching on behalf of a subscriber."""
        if self.principal is not None:
            self.credentials.watch(subscriber, self.principal)

    def unwatch(self, subscriber: Subscriber) -> None:
        """Stop watching."""
        if self.principal is not None:
            self.credentials.unwatch(subscriber, self.principal)

    def wait_at_most(self, seconds: float) -> float:
        """Return how long to wait, so an expiry is noticed on time."""
        if self.expires_at is None:
            return seconds
        return max(0.0, min(seconds, self.expires_at - time.time()))

    def ended(self, subscriber: Subscriber) -> str | None:
        """Return why the credential ended (expired, revoked, logged_out), or None."""
        if subscriber.ended is not None:
            return subscriber.ended
        if self.expires_at is not None and time.time() >= self.expires_at:
            return "expired"
        return None
