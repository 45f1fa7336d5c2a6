"""Who may read and write which rows: one rule per table or topic, to SQL and to events.

A policy maps each role to a **scope** per action. A scope turns a principal into the row
conditions it may touch — the same `Condition` objects filters are made of — or None when the
principal may not take the action at all. So one rule has two forms: `Condition.clause` for
snapshots, get one and write lookups, `Condition.test` for streams, polls and replays. A role
a policy does not name is denied; nobody (role None) is denied everywhere.

A scope may depend only on the principal's policy group (role, store_id): that is what lets
`Policy.scope` be computed once per group, and subscribers of one group share one view.

The write path applies `check_write` to every change, inside its transaction:

- insert: the new row must be inside the insert scope, else 403 `forbidden`;
- update: the current row must be readable, else 404 `not_found` (the same answer as for a
  row that does not exist); it must be inside the update scope, else 403; and the new row
  must stay inside it, else 403 (e.g. staff moving a row to another store);
- delete: the current row must be readable, else 404, and inside the delete scope, else 403.

Before the check, `stamp` fills the fields the server sets from the principal.
"""

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import sqlalchemy as sa

from .conditions import Condition
from .errors import ApiError
from .filters import Subscription, TopicView
from .live import LiveTable
from .principal import ROLES, Principal

Scope = Callable[[Principal], tuple[Condition, ...] | None]
"""A principal → the conditions every row it may touch satisfies, or None for denied."""

ACTIONS = ("read", "insert", "update", "delete", "publish")
# Principal attributes a scope may compare rows with: those of the policy group.
GROUP_ATTRIBUTES = ("role", "store_id")


def EVERY_ROW(principal: Principal) -> tuple[Condition, ...]:
    """Allow every row."""
    return ()


def column_is(column: str, attribute: str | None = None) -> Scope:
    """Return a scope of the rows whose column equals the principal's attribute.

    The attribute defaults to the column's name; a principal without it is denied.
    """
    attribute = attribute or column
    if attribute not in GROUP_ATTRIBUTES:
        raise ValueError(f"a scope may only use the policy group's {GROUP_ATTRIBUTES}")

    def scope(principal: Principal) -> tuple[Condition, ...] | None:
        value = getattr(principal, attribute)
        return None if value is None else (Condition(column, "eq", value),)

    scope.__qualname__ = f"column_is({column!r}, {attribute!r})"
    return scope


SAME_STORE = column_is("store_id")
"""The rows of the principal's own store; denied to a principal without a store."""

Rules = Mapping[str, Scope]


def _rules(rules: Rules) -> Mapping[str, Scope]:
    unknown = set(rules) - set(ROLES)
    if unknown:
        raise ValueError(f"unknown roles {sorted(unknown)}; roles are {ROLES}")
    return MappingProxyType(dict(rules))


@dataclass(frozen=True, eq=False)
class Policy:
    """Who may read, insert, update, delete (tables) or publish (custom topics) which rows.

    Each action maps role → scope; an action or a role not named is denied. `actor_columns`
    name the fields the server sets to the acting user; `store_column` is filled with the
    principal's store on an insert that leaves it out.
    """

    read: Rules = field(default_factory=dict)
    insert: Rules = field(default_factory=dict)
    update: Rules = field(default_factory=dict)
    delete: Rules = field(default_factory=dict)
    publish: Rules = field(default_factory=dict)
    actor_columns: tuple[str, ...] = ()
    store_column: str | None = None
    _scopes: dict = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self):
        for action in ACTIONS:
            object.__setattr__(self, action, _rules(getattr(self, action)))

    def scope(self, action: str, principal: Principal) -> tuple[Condition, ...] | None:
        """Return the conditions of the rows the principal may act on, None when denied.

        Computed once per action and policy group: equal groups get the identical tuple.
        """
        key = (action, principal.group)
        try:
            return self._scopes[key]
        except KeyError:
            pass
        if action not in ACTIONS:
            raise ValueError(f"unknown action {action!r}; actions are {ACTIONS}")
        rule = getattr(self, action).get(principal.role)
        conditions = None if rule is None else rule(principal)
        scope = None if conditions is None else tuple(conditions)
        return self._scopes.setdefault(key, scope)

    def allows(self, action: str, principal: Principal, row: Mapping | None) -> bool:
        """Tell whether the principal may take the action on a JSON row (the event form)."""
        scope = self.scope(action, principal)
        return scope is not None and all(c.test(row) for c in scope)


_SIGNED_IN = dict.fromkeys(ROLES, EVERY_ROW)
_MANAGERS = {"admin": EVERY_ROW, "manager": EVERY_ROW}

DEFAULT_TABLE_POLICY = Policy(read=_SIGNED_IN, insert=_MANAGERS, update=_MANAGERS, delete=_MANAGERS)
"""A live model without `__policy__`: every role reads every row; admin and manager write."""

DEFAULT_TOPIC_POLICY = Policy(read=_SIGNED_IN, publish=_MANAGERS)
"""A custom topic not named otherwise: every role reads; admin and manager publish."""


def table_policy(model: type) -> Policy:
    """Return a live model's policy: its `__policy__`, or the default."""
    return getattr(model, "__policy__", DEFAULT_TABLE_POLICY)


@dataclass(frozen=True)
class TopicPolicies:
    """The policies of custom topics: those named, and a default for the others."""

    named: Mapping[str, Policy]
    default: Policy = DEFAULT_TOPIC_POLICY

    def policy(self, topic: str) -> Policy:
        """Return a custom topic's policy."""
        return self.named.get(topic, self.default)


TOPIC_POLICIES = TopicPolicies(
    MappingProxyType(
        {
            # Every signed-in role sees who is there; only the server publishes it, from
            # the streams it holds open, so nobody announces someone else.
            "presence": Policy(read=_SIGNED_IN),
            # Only the server publishes the monitor's figures; it needs no rule for that.
            "monitor": Policy(read=_MANAGERS),
        }
    )
)
"""The built-in topics' policies; an app extends them with `TopicPolicies({**named, ...})`."""


def scope_clauses(scope: tuple[Condition, ...] | None, table: LiveTable) -> list[sa.ColumnElement]:
    """Return a scope as SQL where-clauses on a live table; a denied scope selects nothing."""
    if scope is None:
        return [sa.false()]
    return [c.clause(table.columns[c.column]) for c in scope]


def read_clauses(table: LiveTable, principal: Principal | None) -> list[sa.ColumnElement]:
    """Return the SQL conditions of the rows a principal may read in a table.

    No principal means the app itself (the seed, scripts, the monitor): every row.
    """
    if principal is None:
        return []
    return scope_clauses(table_policy(table.model).scope("read", principal), table)


def visible_view(view: TopicView, scope: tuple[Condition, ...]) -> TopicView:
    """Return the view narrowed to a scope: its own conditions, then the scope's.

    Equal views and scopes give equal views, which the hub shares between subscribers.
    """
    return dataclasses.replace(view, conditions=view.conditions + scope)


def visible_subscription(
    subscription: Subscription, policy_of: Callable[[str], Policy], principal: Principal
) -> Subscription:
    """Narrow every view of a subscription to what the principal may read.

    A topic the principal may not read at all is 403 `forbidden`, naming the topics.
    """
    views, denied = {}, []
    for topic, view in subscription.views.items():
        scope = policy_of(topic).scope("read", principal)
        if scope is None:
            denied.append(topic)
        else:
            views[topic] = visible_view(view, scope)
    if denied:
        raise forbidden(f"You may not read {', '.join(denied)}.", topics=denied)
    return Subscription(views)


def forbidden(message: str, **details: Any) -> ApiError:
    """Return the 403 for an action the principal may not take."""
    return ApiError(403, "forbidden", message, details)


def row_not_found(table: str, row_id: Any) -> ApiError:
    """Return the 404 for a missing row, also used for a row the principal may not read."""
    return ApiError(
        404, "not_found", f"{table} has no row {row_id}.", {"table": table, "id": row_id}
    )


def check_write(
    policy: Policy,
    principal: Principal,
    action: str,
    old_row: Mapping | None,
    new_row: Mapping | None,
    *,
    table: str,
) -> None:
    """Raise the protocol's error unless the principal may make this write.

    `action` is insert, update or delete; `old_row` is the current row (update, delete) and
    `new_row` the row as it will be stored (insert, update), both in their JSON form.
    """
    if action != "insert" and not policy.allows("read", principal, old_row):
        raise row_not_found(table, old_row["id"])
    checked = {"insert": (new_row,), "update": (old_row, new_row), "delete": (old_row,)}[action]
    if not all(policy.allows(action, principal, row) for row in checked):
        raise forbidden(f"You may not {action} this row of {table}.", table=table, action=action)


def stamp(policy: Policy, principal: Principal, values: dict, *, action: str) -> dict:
    """Return write values with the fields the server sets from the principal.

    The actor columns name the user who inserted the row, whatever the request said, and no
    update changes them; on an insert the store column defaults to the principal's store.
    """
    stamped = {k: v for k, v in values.items() if k not in policy.actor_columns}
    if action == "insert":
        stamped.update(dict.fromkeys(policy.actor_columns, principal.username))
        column = policy.store_column
        if column and column not in stamped and principal.store_id is not None:
            stamped[column] = principal.store_id
    return stamped
