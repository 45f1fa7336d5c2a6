"""Subscriptions: the topics, filters, projections and priorities of a stream or a poll."""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from .conditions import Condition, parse_condition, render
from .errors import ApiError
from .live import LiveTable

# Query parameters that are not filters.
STREAM_RESERVED = frozenset({"topics", "cursor", "limit", "wait", "access_token"})
SNAPSHOT_RESERVED = frozenset({"select", "order", "limit", "offset"})

# What a subscriber that falls behind keeps exact longest, most first.
PRIORITIES = ("high", "normal", "low")


def parse_select(table: LiveTable | None, text: str) -> tuple[str, ...]:
    """Parse a `select=` list, checking columns against the table when there is one."""
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    if not names:
        raise ApiError(400, "invalid_select", "select= needs at least one column.")
    if table is not None:
        for name in names:
            table.column(name)
    return names


def _project(row: dict | None, select: tuple[str, ...] | None) -> dict | None:
    if row is None or select is None:
        return row
    return {name: row[name] for name in select if name in row}


@dataclass(frozen=True)
class TopicView:
    """What one subscriber wants of one topic: row conditions, a projection, and how much
    it cares to stay exact when it falls behind (its priority)."""

    topic: str
    conditions: tuple[Condition, ...] = ()
    select: tuple[str, ...] | None = None
    priority: str = "normal"

    def matches(self, row: Mapping | None) -> bool:
        """Tell whether a row is inside this view."""
        return row is not None and all(c.test(row) for c in self.conditions)

    def effective_op(self, data: Mapping) -> str | None:
        """Return the op this view sees for an event, or None when it sees nothing."""
        op = data["op"]
        if not self.conditions:
            return op
        if op == "UPDATE":
            was, now = self.matches(data["old"]), self.matches(data["row"])
            if was and now:
                return "UPDATE"
            if now:
                return "INSERT"
            return "DELETE" if was else None
        row = data["old"] if op == "DELETE" else data["row"]
        return op if self.matches(row) else None

    def shape(self, data: dict, op: str) -> dict:
        """Return the event as this view delivers it."""
        if op == data["op"] and self.select is None:
            return data
        shaped = dict(data, op=op)
        if op == "DELETE" and data["op"] == "UPDATE":
            shaped["row"] = None
        shaped["row"] = _project(shaped["row"], self.select)
        shaped["old"] = _project(shaped["old"], self.select)
        return shaped


@dataclass(frozen=True)
class Subscription:
    """A set of topic views: what a stream, a poll or a long-poll waiter receives."""

    views: Mapping[str, TopicView]

    @property
    def topics(self) -> Iterable[str]:
        """Return the subscribed topic names."""
        return self.views.keys()


def parse_subscription(
    args: Any, tables: Mapping[str, LiveTable], custom_topics: Iterable[str]
) -> Subscription:
    """Build a subscription from stream or poll query parameters."""
    known = set(tables) | set(custom_topics)
    topics = [t.strip() for t in args.get("topics", "").split(",") if t.strip()]
    if not topics:
        raise ApiError(400, "missing_topics", "Say what to receive with topics=a,b.")
    unknown = [t for t in topics if t not in known]
    if unknown:
        raise ApiError(
            400,
            "unknown_topic",
            f"Unknown topic {unknown[0]!r}: use a live table or a declared custom topic.",
            {"topics": unknown, "known": sorted(known)},
        )
    conditions: dict[str, list[Condition]] = {t: [] for t in topics}
    selects: dict[str, tuple[str, ...]] = {}
    priorities: dict[str, str] = {}
    for key, value in args.items(multi=True):
        if key in STREAM_RESERVED or key.startswith("_"):
            continue
        topic, dot, column = key.partition(".")
        if not dot or not column:
            raise ApiError(
                400,
                "unknown_parameter",
                f"Unknown parameter {key!r}; filters look like <topic>.<column>=op.value.",
                {"parameter": key},
            )
        if topic not in conditions:
            raise ApiError(
                400,
                "unknown_topic",
                f"Filter {key!r} names topic {topic!r}, which is not in topics=.",
                {"parameter": key, "topic": topic},
            )
        table = tables.get(topic)
        if column == "select":
            selects[topic] = parse_select(table, value)
        elif column == "priority":
            priorities[topic] = _priority(key, value)
        else:
            conditions[topic].append(parse_condition(table, column, value))
    return Subscription(
        {
            t: TopicView(t, tuple(conditions[t]), selects.get(t), priorities.get(t, "normal"))
            for t in topics
        }
    )


def _priority(key: str, value: str) -> str:
    """Check a `<topic>.priority=` value."""
    if value not in PRIORITIES:
        raise ApiError(
            400,
            "invalid_priority",
            f"{key} must be high, normal or low.",
            {"parameter": key, "value": value},
        )
    return value


def parse_snapshot_filters(args: Any, table: LiveTable) -> list[Condition]:
    """Return the row conditions of a snapshot query."""
    conditions = []
    for key, value in args.items(multi=True):
        if key in SNAPSHOT_RESERVED or key.startswith("_"):
            continue
        conditions.append(parse_condition(table, key, value))
    return conditions


def view_query(view: TopicView) -> str:
    """Render a view as snapshot query parameters, for a reset's snapshot link."""
    params = [(c.column, render(c)) for c in view.conditions]
    if view.select:
        params.append(("select", ",".join(view.select)))
    return urlencode(params)
