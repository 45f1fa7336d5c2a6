"""The health score: every part's score and share, the status bands, missing readings."""

import dataclasses

import pytest

from feed import health

HEALTHY = health.Readings(
    database_up=True,
    redis_up=True,
    listeners_up=True,
    redis_down_seconds=None,
    deliver_p95=None,
    deliver_target=0.1,
    error_rate=None,
    lag=0,
    resets_per_minute=0.0,
    cache_hit_rate=None,
)


def scored(**changes) -> dict:
    """Score the healthy readings with some of them changed."""
    return health.score(dataclasses.replace(HEALTHY, **changes))


def part(result: dict, name: str) -> dict:
    return next(p for p in result["parts"] if p["name"] == name)


def test_idle_healthy_feed_scores_100_with_every_part_full():
    result = scored()
    assert result["score"] == 100 and result["status"] == "excellent"
    assert [(p["name"], p["weight"], p["score"], p["contribution"]) for p in result["parts"]] == [
        ("database", 25, 1, 25),
        ("redis", 25, 1, 25),
        ("delivery", 15, 1, 15),
        ("errors", 15, 1, 15),
        ("lag", 10, 1, 10),
        ("resets", 5, 1, 5),
        ("cache", 5, 1, 5),
    ]


def test_missing_readings_score_full_and_say_so():
    result = scored()
    assert part(result, "delivery") == {
        "name": "delivery",
        "weight": 15,
        "value": None,
        "score": 1,
        "contribution": 15,
        "detail": "No deliveries in the last minute.",
    }
    assert part(result, "errors")["value"] is None
    assert part(result, "errors")["detail"] == "No API requests in the last minute."
    assert part(result, "cache")["value"] is None
    assert part(result, "cache")["detail"] == "No cached reads in the last minute."


# (readings changed, part, value, score, contribution)
PARTS = [
    ({"database_up": False}, "database", False, 0, 0),
    ({"redis_up": False}, "redis", False, 0, 0),
    ({"listeners_up": False}, "redis", True, 0.5, 12.5),
    ({"deliver_p95": 0.1}, "delivery", 100.0, 1, 15),
    ({"deliver_p95": 0.2}, "delivery", 200.0, 0.5, 7.5),
    ({"deliver_p95": 0.4}, "delivery", 400.0, 0.25, 3.8),
    ({"error_rate": 0.0}, "errors", 0.0, 1, 15),
    ({"error_rate": 0.025}, "errors", 0.025, 0.5, 7.5),
    ({"error_rate": 0.05}, "errors", 0.05, 0, 0),
    ({"error_rate": 0.5}, "errors", 0.5, 0, 0),
    ({"lag": 250}, "lag", 250, 0.75, 7.5),
    ({"lag": 1000}, "lag", 1000, 0, 0),
    ({"lag": 5000}, "lag", 5000, 0, 0),
    ({"resets_per_minute": 2.5}, "resets", 2.5, 0.75, 3.8),
    ({"resets_per_minute": 12.345}, "resets", 12.35, 0, 0),
    ({"cache_hit_rate": 0.0}, "cache", 0.0, 0, 0),
    ({"cache_hit_rate": 0.25}, "cache", 0.25, 0.5, 2.5),
    ({"cache_hit_rate": 0.5}, "cache", 0.5, 1, 5),
    ({"cache_hit_rate": 0.9}, "cache", 0.9, 1, 5),
]


@pytest.mark.parametrize(("changes", "name", "value", "score", "contribution"), PARTS)
def test_each_part_scores_its_reading(changes, name, value, score, contribution):
    result = scored(**changes)
    got = part(result, name)
    assert (got["value"], got["score"], got["contribution"]) == (value, score, contribution)
    # Every other part stays full, so the total is 100 less what this part lost.
    others = sum(p["contribution"] for p in result["parts"] if p["name"] != name)
    assert others == 100 - got["weight"]
    assert result["score"] == round(others + contribution)


def test_details_name_the_reading():
    assert part(scored(database_up=False), "database")["detail"] == (
        "Database unreachable: writes fail."
    )
    assert part(scored(redis_up=False, redis_down_seconds=12.4), "redis")["detail"] == (
        "Redis unreachable for 12 s: events reach subscribers from the log, later."
    )
    assert part(scored(redis_up=False), "redis")["detail"] == (
        "Redis unreachable: events reach subscribers from the log, later."
    )
    assert part(scored(listeners_up=False), "redis")["detail"] == (
        "Redis answers; a worker's listener is reconnecting."
    )
    assert part(scored(deliver_p95=0.1), "delivery")["detail"] == (
        "commit→deliver p95 100 ms, within the 100 ms target."
    )
    assert part(scored(deliver_p95=0.25), "delivery")["detail"] == (
        "commit→deliver p95 250 ms, over the 100 ms target."
    )
    assert part(scored(error_rate=0.0123), "errors")["detail"] == (
        "1.2% of API requests failed with 5xx."
    )
    assert part(scored(lag=7), "lag")["detail"] == "Worst worker is 7 events behind the log."
    assert part(scored(resets_per_minute=0.24), "resets")["detail"] == (
        "0.2 resets per minute sent to subscribers."
    )
    assert part(scored(cache_hit_rate=0.874), "cache")["detail"] == (
        "87% of snapshot and poll reads served from the cache."
    )


def test_redis_down_overrides_listeners():
    got = part(scored(redis_up=False, listeners_up=False), "redis")
    assert (got["value"], got["score"]) == (False, 0)


@pytest.mark.parametrize(
    ("score", "status"),
    [
        (100, "excellent"),
        (90, "excellent"),
        (89.99, "good"),
        (75, "good"),
        (74.99, "fair"),
        (50, "fair"),
        (49.99, "poor"),
        (0, "poor"),
    ],
)
def test_status_bands_and_their_boundaries(score, status):
    assert health.status_for(score) == status


@pytest.mark.parametrize(
    ("changes", "total", "status"),
    [
        ({"lag": 1000}, 90, "excellent"),
        ({"lag": 1000, "resets_per_minute": 2.0}, 89, "good"),
        ({"database_up": False}, 75, "good"),
        ({"database_up": False, "resets_per_minute": 2.0}, 74, "fair"),
        ({"database_up": False, "redis_up": False}, 50, "fair"),
        ({"database_up": False, "redis_up": False, "resets_per_minute": 2.0}, 49, "poor"),
        (
            {
                "database_up": False,
                "redis_up": False,
                "deliver_p95": 10.0,
                "error_rate": 1.0,
                "lag": 10**6,
                "resets_per_minute": 100.0,
                "cache_hit_rate": 0.0,
            },
            0,
            "poor",
        ),
    ],
)
def test_whole_score_lands_in_its_band(changes, total, status):
    result = scored(**changes)
    assert (result["score"], result["status"]) == (total, status)
