"""Settings read from the environment, with development defaults."""

import os


def _int(name: str, default: int) -> int:
    """Read an integer setting."""
    return int(os.environ.get(name, default))


def _float(name: str, default: float) -> float:
    """Read a number setting."""
    return float(os.environ.get(name, default))


def _list(name: str, default: str = "") -> list[str]:
    """Read a comma-separated setting."""
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


def from_environment(instance_path: str) -> dict:
    """Return the Flask config mapping for this process."""
    sqlite_path = os.path.join(instance_path, "tidings.db")
    return {
        # Where the live tables and the change log live.
        "SQLALCHEMY_DATABASE_URI": os.environ.get("DATABASE_URL", f"sqlite:///{sqlite_path}"),
        # Redis for pub/sub; by default the private server started next to the app.
        "REDIS_URL": os.environ.get(
            "REDIS_URL", f"unix://{os.path.join(instance_path, 'redis.sock')}"
        ),
        # Pub/sub channel, so several apps can share one Redis.
        "FEED_CHANNEL": os.environ.get("FEED_CHANNEL", "tidings:events"),
        # Seconds between heartbeat blocks on an idle stream.
        "HEARTBEAT_SECONDS": _float("HEARTBEAT_SECONDS", 15),
        # Seconds a stream's presence outlives its worker: a dead worker's users leave by then.
        "PRESENCE_LEASE_SECONDS": _float("PRESENCE_LEASE_SECONDS", 30),
        # Base EventSource reconnect delay sent as `retry:`; a random jitter is added.
        "RETRY_MS": _int("RETRY_MS", 2000),
        "RETRY_JITTER_MS": _int("RETRY_JITTER_MS", 3000),
        # A stream let go (its worker stops, or sheds streams) gets a `retry:` random within
        # this many seconds, so its clients come back spread out.
        "DRAIN_SECONDS": _float("DRAIN_SECONDS", 5),
        # Seconds between a worker's rebalancing rounds (0: never shed); it sheds once it
        # holds more than share × (1 + BALANCE_TOLERANCE) + BALANCE_SLACK streams, at most
        # BALANCE_STEP of them per round.
        "BALANCE_SECONDS": _float("BALANCE_SECONDS", 5),
        "BALANCE_TOLERANCE": _float("BALANCE_TOLERANCE", 0.2),
        "BALANCE_SLACK": _int("BALANCE_SLACK", 5),
        "BALANCE_STEP": _float("BALANCE_STEP", 0.1),
        # How long and how many events the log keeps.
        "RETENTION_HOURS": _float("RETENTION_HOURS", 24),
        "RETENTION_EVENTS": _int("RETENTION_EVENTS", 1_000_000),
        "RING_EVENTS": _int("RING_EVENTS", 4096),
        "RING_BYTES": _int("RING_BYTES", 8 << 20),
        # Seconds between retention passes.
        "PRUNE_SECONDS": _float("PRUNE_SECONDS", 60),
        # Seconds between checks of the log head for events Redis did not bring.
        "RELAY_SECONDS": _float("RELAY_SECONDS", 1.0),
        # Live frames queued for one stream before it is caught up from the log instead.
        "SUBSCRIBER_MAX_PENDING": _int("SUBSCRIBER_MAX_PENDING", 1024),
        "SUBSCRIBER_MAX_PENDING_BYTES": _int("SUBSCRIBER_MAX_PENDING_BYTES", 1 << 20),
        "STREAM_SEND_BUFFER": _int("STREAM_SEND_BUFFER", 64 << 10),
        # Under gunicorn, live streams are written by the worker's loop, not a greenlet each
        # (feed.parking); 0 keeps each on its connection's greenlet.
        "PARK_STREAMS": bool(_int("PARK_STREAMS", 1)),
        # Stream openings (dispatch and replay) one worker works on at once, the rest
        # waiting their turn (feed.openings); 0 for no bound.
        "STREAM_OPENINGS": _int("STREAM_OPENINGS", 32),
        # Streams one worker holds at most (gunicorn's worker_connections is the same
        # setting); past it a new stream is answered 503 `at_capacity`.
        "WORKER_STREAMS": _int("WORKER_CONNECTIONS", 10000),
        # Events one poll or replay page may return.
        "POLL_LIMIT_MAX": _int("POLL_LIMIT_MAX", 1000),
        # Longest long-poll wait in seconds.
        "POLL_WAIT_MAX": _float("POLL_WAIT_MAX", 30),
        # Custom topics accepted by /api/publish and subscriptions, besides the app's own.
        "TOPICS": _list("TOPICS"),
        # Bearer token required by /api/publish when set.
        "PUBLISH_TOKEN": os.environ.get("PUBLISH_TOKEN") or None,
        # Writes a process applies in one transaction, a savepoint each (1: each alone).
        "GROUP_COMMIT_WRITES": _int("GROUP_COMMIT_WRITES", 64),
        # Hours an Idempotency-Key is remembered.
        "IDEMPOTENCY_HOURS": _float("IDEMPOTENCY_HOURS", 24),
        # Largest request body accepted.
        "MAX_CONTENT_LENGTH": _int("MAX_CONTENT_LENGTH", 1024 * 1024),
        # Rows a snapshot returns when no limit is given, and at most.
        "SNAPSHOT_LIMIT_DEFAULT": _int("SNAPSHOT_LIMIT_DEFAULT", 1000),
        "SNAPSHOT_LIMIT_MAX": _int("SNAPSHOT_LIMIT_MAX", 10000),
        # Bytes of snapshot and poll answers the per-process read cache keeps, and for how long.
        "CACHE_MAX_BYTES": _int("CACHE_MAX_BYTES", 32 * 1024 * 1024),
        "CACHE_TTL_SECONDS": _float("CACHE_TTL_SECONDS", 300),
        # 0 turns the Prometheus instruments off (to measure what they cost).
        "METRICS_ENABLED": _int("METRICS_ENABLED", 1) == 1,
        # Seconds between the monitor's figures on the `monitor` topic; 0 publishes none.
        "MONITOR_SECONDS": _float("MONITOR_SECONDS", 5),
        # The commit→deliver p95 the health score holds delivery to, in milliseconds.
        "DELIVERY_TARGET_MS": _float("DELIVERY_TARGET_MS", 250),
        # Writes per principal (per address for nobody), in the `limits` notation.
        "RATE_LIMIT_WRITES": os.environ.get("RATE_LIMIT_WRITES", "20/second"),
        # Stream opens per principal.
        "RATE_LIMIT_STREAMS": os.environ.get("RATE_LIMIT_STREAMS", "30/minute"),
        # Polls of /api/changes per principal.
        "RATE_LIMIT_POLLS": os.environ.get("RATE_LIMIT_POLLS", "10/second"),
        # Sign-in attempts per address, and per username.
        "RATE_LIMIT_LOGINS": os.environ.get("RATE_LIMIT_LOGINS", "5/minute"),
        # Streams one principal may hold open at once, across every worker and node.
        "MAX_STREAMS": _int("MAX_STREAMS", 20),
        # Signs session cookies and stream tokens; generated once into instance/ when unset.
        "SECRET_KEY": os.environ.get("SECRET_KEY") or None,
        # Hours a sign-in lasts before the user must sign in again.
        "SESSION_HOURS": _float("SESSION_HOURS", 12),
        # Seconds a stream token (`?access_token=`) stays valid.
        "STREAM_TOKEN_SECONDS": _float("STREAM_TOKEN_SECONDS", 300),
        # Seconds an API token lasts when its request names no expires_in, and at most.
        "API_TOKEN_SECONDS": _int("API_TOKEN_SECONDS", 90 * 86400),
        "API_TOKEN_MAX_SECONDS": _int("API_TOKEN_MAX_SECONDS", 366 * 86400),
        # Bearer token /metrics requires when set (open when unset).
        "METRICS_TOKEN": os.environ.get("METRICS_TOKEN") or None,
        # Proxies in front whose X-Forwarded-For / X-Forwarded-Proto are trusted (0: none).
        "PROXY_FIX_X_FOR": _int("PROXY_FIX_X_FOR", 0),
        "PROXY_FIX_X_PROTO": _int("PROXY_FIX_X_PROTO", 0),
        # Origins whose browser pages may call the API (comma-separated); none when empty.
        "CORS_ORIGINS": _list("CORS_ORIGINS"),
        # The demo users' password; when unset `flask seed` generates one into instance/.
        "DEMO_PASSWORD": os.environ.get("DEMO_PASSWORD") or None,
        "SQLALCHEMY_ENGINE_OPTIONS": {"pool_pre_ping": True},
    }
