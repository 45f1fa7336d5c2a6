"""Quantiles from cumulative histogram buckets, and the helpers that gather the buckets."""

import pytest
from prometheus_client import CollectorRegistry, Histogram

from feed.figures import _buckets, _minus, percentile

# 10 below 0.1 s, 20 more below 0.5 s, 10 beyond every bound.
SPREAD = [["0.1", 10], ["0.5", 30], ["+Inf", 40]]


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        (0.0, 0.0),
        (0.125, 0.05),
        (0.25, 0.1),
        (0.5, 0.3),
        (0.625, 0.4),
        (0.75, 0.5),
    ],
)
def test_interpolates_inside_the_bucket_holding_the_rank(q, expected):
    assert percentile(SPREAD, q) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("q", [0.76, 0.95, 0.99, 1.0])
def test_rank_in_the_inf_bucket_answers_its_lower_bound(q):
    assert percentile(SPREAD, q) == 0.5


def test_everything_beyond_every_bound_answers_the_highest_bound():
    assert percentile([["0.1", 0], ["0.5", 0], ["+Inf", 7]], 0.5) == 0.5


@pytest.mark.parametrize("buckets", [[], [["0.1", 0], ["+Inf", 0]], [["+Inf", 0]]])
def test_no_observations_has_no_quantile(buckets):
    assert percentile(buckets, 0.95) is None


@pytest.mark.parametrize(("q", "expected"), [(0.5, 0.5), (0.95, 0.95), (1.0, 1.0)])
def test_one_finite_bucket_spreads_evenly_from_zero(q, expected):
    assert percentile([["1.0", 4]], q) == pytest.approx(expected)


def test_one_inf_bucket_answers_zero():
    assert percentile([["+Inf", 3]], 0.5) == 0.0


def test_empty_buckets_between_are_stepped_over():
    buckets = [["0.1", 10], ["0.2", 10], ["0.4", 20], ["+Inf", 20]]
    assert percentile(buckets, 0.5) == pytest.approx(0.1)
    assert percentile(buckets, 0.75) == pytest.approx(0.3)
    assert percentile(buckets, 1.0) == pytest.approx(0.4)


def samples_of(registry: CollectorRegistry) -> dict:
    """Index a registry's samples by sample name, as FeedMetrics.samples does."""
    found: dict = {}
    for family in registry.collect():
        for sample in family.samples:
            found.setdefault(sample.name, []).append(sample)
    return found


def test_buckets_sum_every_label_set_in_bound_order():
    registry = CollectorRegistry()
    histogram = Histogram("t_seconds", "test", ["path"], registry=registry, buckets=(0.05, 0.5, 1))
    for path, value in [("/a", 0.01), ("/a", 0.3), ("/b", 0.04), ("/b", 0.7), ("/b", 9)]:
        histogram.labels(path).observe(value)
    samples = samples_of(registry)
    # Bounds are ordered by value, not by the order samples come in nor as text.
    samples["t_seconds_bucket"].reverse()
    buckets = _buckets(samples, "t_seconds")
    assert buckets == [["0.05", 2.0], ["0.5", 3.0], ["1.0", 4.0], ["+Inf", 5.0]]
    assert percentile(buckets, 0.5) == pytest.approx(0.05 + 0.45 * 0.5)


def test_buckets_of_an_unknown_histogram_are_empty():
    assert _buckets({}, "t_seconds") == []


def test_minus_leaves_the_buckets_of_a_window():
    now = [["0.1", 12], ["0.5", 20], ["+Inf", 25]]
    then = [["0.1", 10], ["0.5", 15], ["+Inf", 15]]
    assert _minus(now, then) == [["0.1", 2], ["0.5", 5], ["+Inf", 10]]
    assert percentile(_minus(now, then), 0.5) == pytest.approx(0.5)


@pytest.mark.parametrize("then", [None, []])
def test_minus_without_a_base_is_everything(then):
    now = [["0.1", 1], ["+Inf", 2]]
    assert _minus(now, then) is now


def test_minus_counts_a_bound_missing_from_the_base_from_zero():
    assert _minus([["0.1", 3], ["+Inf", 4]], [["+Inf", 1]]) == [["0.1", 3], ["+Inf", 3]]
