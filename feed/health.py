"""The health score: 0–100 from weighted parts, each reported with its value and share.

Every part scores between 0 (bad) and 1 (good) and contributes `weight × score` points:

| part            | weight | score                                                    |
|-----------------|-------:|----------------------------------------------------------|
| database        |     25 | 1 when `SELECT 1` answers, else 0                        |
| redis           |     25 | 1 when Redis answers and every worker's listener is live |
| delivery        |     15 | commit→deliver p95 ≤ target: 1, else target / p95        |
| errors          |     15 | 1 − 5xx share / 5 % (0 at 5 % of requests failing)       |
| lag             |     10 | 1 − worst listener lag / LAG_LIMIT events                |
| resets          |      5 | 1 − resets per minute / RESETS_LIMIT                     |
| cache           |      5 | cache hit rate / 50 % (capped at 1)                      |

Rates are taken over the last minute (since start on a younger server). A part with nothing
to measure (no deliveries, no requests, no cache traffic) scores 1: an idle feed is healthy.
Status: excellent ≥ 90, good ≥ 75, fair ≥ 50, poor below.
"""

from dataclasses import dataclass

ERROR_RATE_LIMIT = 0.05
LAG_LIMIT = 1000
RESETS_LIMIT = 10.0
CACHE_HIT_TARGET = 0.5


@dataclass(frozen=True)
class Readings:
    """What the score is computed from."""

    database_up: bool
    redis_up: bool
    listeners_up: bool
    redis_down_seconds: float | None
    deliver_p95: float | None
    deliver_target: float
    error_rate: float | None
    lag: int
    resets_per_minute: float
    cache_hit_rate: float | None


def status_for(score: float) -> str:
    """Name a score: excellent, good, fair or poor."""
    if score >= 90:
        return "excellent"
    if score >= 75:
        return "good"
    if score >= 50:
        return "fair"
    return "poor"


def _clamp(value: float) -> float:
    return max(0.0, min(1.0, value))


def _part(name: str, weight: int, score: float, value, detail: str) -> dict:
    score = _clamp(score)
    return {
        "name": name,
        "weight": weight,
        "value": value,
        "score": round(score, 3),
        "contribution": round(weight * score, 1),
        "detail": detail,
    }


def _redis(r: Readings) -> dict:
    if not r.redis_up:
        since = f" for {r.redis_down_seconds:.0f} s" if r.redis_down_seconds else ""
        detail = f"Redis unreachable{since}: events reach subscribers from the log, later."
        return _part("redis", 25, 0, False, detail)
    if not r.listeners_up:
        return _part("redis", 25, 0.5, True, "Redis answers; a worker's listener is reconnecting.")
    return _part("redis", 25, 1, True, "Redis reachable; every listener subscribed.")


def _delivery(r: Readings) -> dict:
    target_ms = r.deliver_target * 1000
    if r.deliver_p95 is None:
        return _part("delivery", 15, 1, None, "No deliveries in the last minute.")
    p95_ms = r.deliver_p95 * 1000
    score = 1 if r.deliver_p95 <= r.deliver_target else r.deliver_target / r.deliver_p95
    verdict = "within" if score == 1 else "over"
    detail = f"commit→deliver p95 {p95_ms:.0f} ms, {verdict} the {target_ms:.0f} ms target."
    return _part("delivery", 15, score, round(p95_ms, 1), detail)


def _errors(r: Readings) -> dict:
    if r.error_rate is None:
        return _part("errors", 15, 1, None, "No API requests in the last minute.")
    detail = f"{r.error_rate:.1%} of API requests failed with 5xx."
    return _part("errors", 15, 1 - r.error_rate / ERROR_RATE_LIMIT, round(r.error_rate, 4), detail)


def _cache(r: Readings) -> dict:
    if r.cache_hit_rate is None:
        return _part("cache", 5, 1, None, "No cached reads in the last minute.")
    detail = f"{r.cache_hit_rate:.0%} of snapshot and poll reads served from the cache."
    return _part(
        "cache", 5, r.cache_hit_rate / CACHE_HIT_TARGET, round(r.cache_hit_rate, 3), detail
    )


def score(r: Readings) -> dict:
    """Return the score, its status and every part."""
    parts = [
        _part(
            "database",
            25,
            1 if r.database_up else 0,
            r.database_up,
            "Database answers." if r.database_up else "Database unreachable: writes fail.",
        ),
        _redis(r),
        _delivery(r),
        _errors(r),
        _part(
            "lag",
            10,
            1 - r.lag / LAG_LIMIT,
            r.lag,
            f"Worst worker is {r.lag} events behind the log.",
        ),
        _part(
            "resets",
            5,
            1 - r.resets_per_minute / RESETS_LIMIT,
            round(r.resets_per_minute, 2),
            f"{r.resets_per_minute:.1f} resets per minute sent to subscribers.",
        ),
        _cache(r),
    ]
    total = round(sum(part["contribution"] for part in parts))
    return {"score": total, "status": status_for(total), "parts": parts}
