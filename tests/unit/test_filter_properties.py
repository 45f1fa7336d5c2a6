"""Filters written back by view_query read back as the same condition, for any typed value."""

import datetime as dt
from urllib.parse import parse_qsl

import pytest
from hypothesis import given
from hypothesis import strategies as st

from feed.conditions import Condition, parse_condition
from feed.filters import TopicView, view_query
from feed.values import INT64_MAX, INT64_MIN, iso

from .model import GADGETS

# Filter values in the JSON form parse_condition gives them, by column.
VALUES = {
    # The integers the databases hold (64 bits); wider ones are refused.
    "size": st.integers(min_value=INT64_MIN, max_value=INT64_MAX),
    "weight": st.floats(allow_nan=False, allow_infinity=False),
    "active": st.booleans(),
    "made_on": st.dates().map(dt.date.isoformat),
    "seen_at": st.datetimes().map(iso),
    "name": st.text(),
}
# An in. item cannot be empty (the list drops empty items).
IN_ITEMS = VALUES | {"name": st.text(min_size=1)}
COMPARISONS = st.sampled_from(["eq", "neq", "lt", "lte", "gt", "gte"])


def read_back(condition: Condition) -> Condition:
    """Render a condition as a snapshot link's query and parse that query again."""
    [(column, text)] = parse_qsl(view_query(TopicView("gadgets", (condition,))))
    return parse_condition(GADGETS, column, text)


@st.composite
def conditions(draw) -> Condition:
    column = draw(st.sampled_from(sorted(VALUES)))
    if draw(st.booleans()):
        items = draw(st.frozensets(IN_ITEMS[column], max_size=5))
        return Condition(column, "in", items)
    return Condition(column, draw(COMPARISONS), draw(VALUES[column]))


@given(conditions())
def test_any_typed_condition_reads_back_the_same(condition):
    assert read_back(condition) == condition


@pytest.mark.parametrize(
    "condition",
    [Condition(column, "is", None) for column in GADGETS.columns]
    + [Condition("active", "is", True), Condition("active", "is", False)],
)
def test_is_conditions_read_back_the_same(condition):
    assert read_back(condition) == condition


def test_in_items_holding_line_breaks_read_back():
    condition = parse_condition(GADGETS, "name", 'in.("a\nb","\r")')
    assert read_back(condition) == condition


def test_datetimes_before_year_1000_read_back_and_compare_in_time_order():
    condition = parse_condition(GADGETS, "seen_at", "eq.0999-01-01T00:00:00Z")
    assert read_back(condition) == condition
    assert iso(dt.datetime(999, 1, 1)) == "0999-01-01T00:00:00.000Z"
    later = parse_condition(GADGETS, "seen_at", "lt.2026-01-01T00:00:00Z")
    assert later.test({"seen_at": iso(dt.datetime(999, 1, 1))})
