"""The monitor's figures: one function feeds /monitor, /monitor.json and the `monitor` topic.

Everything is derived from the metrics aggregated over this node's workers and from the
history points the leading worker keeps (feed.monitor).
"""

import time

from . import health
from .values import iso, utcnow

# Windows for rates shown as "now" and for shares and percentiles.
RATE_WINDOW = 10
SHARE_WINDOW = 60


# Reading prometheus samples


def _total(samples: dict, name: str, **labels: str) -> float:
    """Sum the samples of a name whose labels include the given ones."""
    return sum(
        s.value
        for s in samples.get(name, ())
        if all(s.labels.get(k) == v for k, v in labels.items())
    )


def _by_label(samples: dict, name: str, label: str) -> dict[str, float]:
    found: dict[str, float] = {}
    for s in samples.get(name, ()):
        found[s.labels[label]] = found.get(s.labels[label], 0) + s.value
    return found


def _buckets(samples: dict, name: str) -> list[list]:
    """Return a histogram's cumulative buckets summed over every label set: [[le, n], ...].

    Bounds stay the label text ("+Inf" included), so the history file can hold them as JSON.
    """
    summed: dict[str, float] = {}
    for s in samples.get(name + "_bucket", ()):
        summed[s.labels["le"]] = summed.get(s.labels["le"], 0) + s.value
    return [[le, summed[le]] for le in sorted(summed, key=float)]


def read_counters(samples: dict) -> dict:
    """Return the cumulative figures the monitor derives everything from."""
    return {
        "events_appended": _total(samples, "tidings_events_appended_total"),
        "events_delivered": _total(samples, "tidings_events_delivered_total"),
        "http_requests": _total(samples, "tidings_http_requests_total"),
        "http_errors": sum(
            s.value
            for s in samples.get("tidings_http_requests_total", ())
            if s.labels["status"].startswith("5")
        ),
        "api_seconds": _total(samples, "tidings_http_request_duration_seconds_sum"),
        "api_count": _total(samples, "tidings_http_request_duration_seconds_count"),
        "cache_hits": _total(samples, "tidings_cache_hits_total"),
        "cache_misses": _total(samples, "tidings_cache_misses_total"),
        "cache_invalidations": _total(samples, "tidings_cache_invalidations_total"),
        "reconnects": _total(samples, "tidings_reconnects_total"),
        "resets": _total(samples, "tidings_resets_total"),
        "slow_consumer_catch_ups": _total(
            samples, "tidings_slow_consumer_actions_total", action="catch_up"
        ),
        "slow_consumer_conflations": _total(
            samples, "tidings_slow_consumer_actions_total", action="conflate"
        ),
        "streams_shed": _total(samples, "tidings_streams_shed_total"),
    }


def percentile(buckets: list[list], q: float) -> float | None:
    """Estimate a quantile from cumulative buckets, interpolating inside the bucket."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    lower_bound, lower_count = 0.0, 0.0
    for label, count in buckets:
        bound = float(label)
        if count >= rank:
            if bound == float("inf"):
                return lower_bound
            inside = count - lower_count
            share = (rank - lower_count) / inside if inside else 1.0
            return lower_bound + (bound - lower_bound) * share
        lower_bound, lower_count = bound, count
    return lower_bound


def _minus(now: list[list], then: list[list] | None) -> list[list]:
    if not then:
        return now
    before = {le: n for le, n in then}
    return [[le, n - before.get(le, 0)] for le, n in now]


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 2)


def _latency(buckets: list[list]) -> dict:
    return {f"p{q}": _ms(percentile(buckets, q / 100)) for q in (50, 95, 99)}


def _base(points: list[dict], now: float, seconds: float) -> dict | None:
    """Return the newest point at least `seconds` old; None counts from the start."""
    older = [p for p in points if p["t"] <= now - seconds]
    return older[-1] if older else None


def _delta(current: dict, base: dict | None, name: str) -> float:
    return current[name] - (base["counters"][name] if base else 0)


def _rate(current: dict, base: dict | None, now: float, name: str) -> float:
    if base is None or now <= base["t"]:
        return 0.0
    return round(_delta(current, base, name) / (now - base["t"]), 2)


# The figures


def figures(runtime, *, with_history: bool = True) -> dict:
    """Return every figure the monitor shows, aggregated over this node's workers."""
    metrics, config = runtime.metrics, runtime.config
    samples = metrics.samples()
    counters = read_counters(samples)
    api_buckets = _buckets(samples, "tidings_http_request_duration_seconds")
    c2d_buckets = _buckets(samples, "tidings_commit_to_deliver_seconds")
    p2d_buckets = _buckets(samples, "tidings_publish_to_deliver_seconds")
    now = time.time()
    points = runtime.monitor.history.points()
    minute = _base(points, now, SHARE_WINDOW)
    # Rates need two moments: a young server measures from its first point.
    recent = _base(points, now, RATE_WINDOW) or (points[0] if points else None)

    def windowed(buckets, key):
        return _minus(buckets, minute["buckets"][key] if minute else None)

    api_window = windowed(api_buckets, "api")
    c2d_window = windowed(c2d_buckets, "c2d")
    hits = _delta(counters, minute, "cache_hits")
    misses = _delta(counters, minute, "cache_misses")
    requests = _delta(counters, minute, "http_requests")
    api_count = _delta(counters, minute, "api_count")
    minutes = (now - minute["t"]) / 60 if minute else 1.0
    resets_per_minute = _delta(counters, minute, "resets") / minutes

    database_up = runtime.transactions.answers()
    redis_up = runtime.bus.ping()
    # Without background work (a CLI or test process) there are no listeners to ask.
    listeners = _total(samples, "tidings_redis_up") >= 1 if runtime.started else True
    listeners_up = listeners and redis_up
    down_since = runtime.bus.down_since
    lag = int(_total(samples, "tidings_listener_lag_events"))
    bounds = None
    if database_up:
        with runtime.read() as conn:
            bounds = runtime.log.bounds(conn)
    readings = health.Readings(
        database_up=database_up,
        redis_up=redis_up,
        listeners_up=listeners_up,
        redis_down_seconds=now - down_since if down_since and not redis_up else None,
        deliver_p95=percentile(c2d_window, 0.95),
        deliver_target=config["DELIVERY_TARGET_MS"] / 1000,
        error_rate=_delta(counters, minute, "http_errors") / requests if requests else None,
        lag=lag,
        resets_per_minute=resets_per_minute,
        cache_hit_rate=hits / (hits + misses) if hits + misses else None,
    )
    connections = {
        k: int(v) for k, v in _by_label(samples, "tidings_connections", "transport").items()
    }
    refused = _by_label(samples, "tidings_rate_limited_total", "kind")
    result = {
        "at": iso(utcnow()),
        "health": health.score(readings),
        "cache": {
            "hit_rate": round(readings.cache_hit_rate, 4)
            if readings.cache_hit_rate is not None
            else None,
            "hits": _by_label(samples, "tidings_cache_hits_total", "kind"),
            "misses": _by_label(samples, "tidings_cache_misses_total", "kind"),
            "entries": _by_label(samples, "tidings_cache_entries", "kind"),
            "bytes": _by_label(samples, "tidings_cache_bytes", "kind"),
            "max_bytes": config["CACHE_MAX_BYTES"],
            "ttl_seconds": config["CACHE_TTL_SECONDS"],
        },
        "connections": connections | {"total": sum(connections.values())},
        "fanout": {
            "groups": int(_total(samples, "tidings_fanout_groups")),
            "members": int(_total(samples, "tidings_fanout_members")),
        },
        "balance": _balance(runtime, samples),
        "rates": {
            "events_per_second": _rate(counters, recent, now, "events_appended"),
            "deliveries_per_second": _rate(counters, recent, now, "events_delivered"),
        },
        "api_latency_ms": {
            "avg": _ms(_delta(counters, minute, "api_seconds") / api_count) if api_count else None,
            **_latency(api_window),
            "requests": int(api_count),
        },
        "commit_to_deliver_ms": _latency(c2d_window),
        "publish_to_deliver_ms": _latency(windowed(p2d_buckets, "p2d")),
        "redis": {
            "up": redis_up,
            "listeners_up": listeners_up,
            "down_seconds": round(readings.redis_down_seconds or 0, 1),
        },
        "database": {"up": database_up, "dialect": runtime.engine.dialect.name},
        "rate_limits": {
            "shared": _total(samples, "tidings_rate_limits_shared") >= 1,
            "refused": {kind: int(count) for kind, count in refused.items()},
        },
        "log": {
            "head": bounds.head if bounds else None,
            "tail": bounds.tail if bounds else None,
            "retained": bounds.head - bounds.tail + 1 if bounds and bounds.head else 0,
            "retention_hours": config["RETENTION_HOURS"],
            "retention_events": config["RETENTION_EVENTS"],
            "lag": lag,
        },
        "counters": {name: int(value) for name, value in counters.items() if name != "api_seconds"},
        "window_seconds": round(now - minute["t"]) if minute else None,
        "interval_seconds": config["MONITOR_SECONDS"],
    }
    result["point"] = _point(result, now)
    result["raw"] = {
        "t": now,
        "counters": counters,
        "buckets": {"api": api_buckets, "c2d": c2d_buckets, "p2d": p2d_buckets},
    }
    if with_history:
        result["history"] = [p["point"] for p in points] + [result["point"]]
    return result


def _balance(runtime, samples: dict) -> dict | None:
    """Return the streams of every worker sharing Redis as this worker last saw them, with
    what this node let go; None before its first round (or while Redis is down)."""
    view = runtime.balancer.view
    if view is None:
        return None
    shed = _by_label(samples, "tidings_streams_shed_total", "reason")
    return view.describe() | {"shed": {reason: int(n) for reason, n in shed.items()}}


def _point(result: dict, now: float) -> dict:
    """Return the sparkline values of one moment."""
    return {
        "t": round(now, 3),
        "events_per_second": result["rates"]["events_per_second"],
        "deliveries_per_second": result["rates"]["deliveries_per_second"],
        "api_p95_ms": result["api_latency_ms"]["p95"],
        "commit_to_deliver_p95_ms": result["commit_to_deliver_ms"]["p95"],
        "health": result["health"]["score"],
        "cache_hit_rate": result["cache"]["hit_rate"],
        "connections": result["connections"]["total"],
    }


def public(result: dict) -> dict:
    """Drop the internal raw counters from a figures result."""
    return {k: v for k, v in result.items() if k != "raw"}
