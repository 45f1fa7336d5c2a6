"""Policies: who reads and writes which rows; the SQL and event forms agree; writes are checked."""

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from werkzeug.datastructures import MultiDict

from feed.capture import event_body
from feed.errors import ApiError
from feed.filters import TopicView, parse_subscription
from feed.live import LiveMixin, live_table
from feed.policy import (
    DEFAULT_TABLE_POLICY,
    EVERY_ROW,
    SAME_STORE,
    TOPIC_POLICIES,
    Policy,
    TopicPolicies,
    check_write,
    column_is,
    row_not_found,
    scope_clauses,
    stamp,
    table_policy,
    visible_subscription,
    visible_view,
)
from feed.principal import NOBODY, ROLES, Principal

WRITERS = {"admin": EVERY_ROW, "manager": EVERY_ROW, "staff": SAME_STORE}


class Base(DeclarativeBase):
    pass


class Ledger(LiveMixin, Base):
    """A store-scoped table, declared the way an app declares its own."""

    __tablename__ = "ledger"
    __policy__ = Policy(
        read={"admin": EVERY_ROW, "manager": EVERY_ROW, "viewer": EVERY_ROW, "staff": SAME_STORE},
        insert=WRITERS,
        update=WRITERS,
        delete=WRITERS,
        actor_columns=("recorded_by",),
        store_column="store_id",
    )
    store_id: Mapped[int | None] = mapped_column(sa.Integer, nullable=True)
    amount: Mapped[int] = mapped_column(sa.Integer)
    recorded_by: Mapped[str | None] = mapped_column(sa.String(80), nullable=True)


class Note(LiveMixin, Base):
    """A live table without a policy of its own."""

    __tablename__ = "notes"
    text: Mapped[str] = mapped_column(sa.String(80))


POLICY = Ledger.__policy__
TABLE = live_table(Ledger)
ACTIONS = ("read", "insert", "update", "delete")


def user(role: str | None, store: int | None, user_id: int = 1) -> Principal:
    """Return a signed-in principal."""
    return Principal(user_id=user_id, username=f"{role}{store or ''}", role=role, store_id=store)


PRINCIPALS = [user(role, store) for role in ROLES for store in (1, 2)] + [
    user("admin", None),
    user("staff", None),
    NOBODY,
]
# store_id, amount: two stores and a row of no store.
ROWS = [(1, 1), (1, 7), (2, 3), (2, 9), (None, 5)]


def may(principal: Principal, action: str, store: int | None) -> bool:
    """The rule in words: managers everything, viewers read, staff their own store."""
    if principal.role in ("admin", "manager"):
        return True
    if principal.role == "viewer":
        return action == "read"
    if principal.role == "staff":
        return principal.store_id is not None and store == principal.store_id
    return False


def row(row_id: int, store: int | None, amount: int = 1) -> dict:
    """Return a ledger row in its JSON form."""
    return {"id": row_id, "store_id": store, "amount": amount, "recorded_by": "x", "version": 1}


@pytest.fixture
def ledger(tmp_path):
    """A SQLite file holding ROWS; yield the engine and the rows in their JSON form."""
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'policy.db'}")
    Base.metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(
            sa.insert(Ledger.__table__),
            [{"store_id": store, "amount": amount} for store, amount in ROWS],
        )
        rows = [
            TABLE.row_from_mapping(r) for r in conn.execute(sa.select(Ledger.__table__)).mappings()
        ]
    yield engine, rows
    engine.dispose()


def selected(engine, clauses) -> list[int]:
    """Return the ids SQL selects with these where-clauses."""
    query = sa.select(Ledger.__table__.c.id).where(*clauses).order_by(Ledger.__table__.c.id)
    with engine.connect() as conn:
        return list(conn.execute(query).scalars())


@pytest.mark.parametrize("principal", PRINCIPALS, ids=lambda p: f"{p.role}-{p.store_id}")
@pytest.mark.parametrize("action", ACTIONS)
def test_role_action_row_matrix(principal, action):
    for store in (1, 2, None):
        assert POLICY.allows(action, principal, row(1, store)) is may(principal, action, store)


@pytest.mark.parametrize("principal", PRINCIPALS, ids=lambda p: f"{p.role}-{p.store_id}")
@pytest.mark.parametrize("action", ACTIONS)
def test_sql_and_events_select_the_same_rows(ledger, principal, action):
    engine, rows = ledger
    scope = POLICY.scope(action, principal)
    by_events = [r["id"] for r in rows if POLICY.allows(action, principal, r)]
    assert selected(engine, scope_clauses(scope, TABLE)) == by_events
    assert by_events == [r["id"] for r in rows if may(principal, action, r["store_id"])]


@pytest.mark.parametrize("principal", PRINCIPALS, ids=lambda p: f"{p.role}-{p.store_id}")
def test_scope_and_filter_select_the_same_rows(ledger, principal):
    engine, rows = ledger
    subscription = parse_subscription(
        MultiDict({"topics": "ledger", "ledger.amount": "gte.5"}), {"ledger": TABLE}, ()
    )
    scope = POLICY.scope("read", principal)
    if scope is None:
        assert selected(engine, scope_clauses(scope, TABLE)) == []
        return
    view = visible_view(subscription.views["ledger"], scope)
    by_events = [r["id"] for r in rows if view.matches(r)]
    assert selected(engine, scope_clauses(view.conditions, TABLE)) == by_events
    expected = [r["id"] for r in rows if r["amount"] >= 5 and may(principal, "read", r["store_id"])]
    assert by_events == expected


def test_a_principal_without_the_attribute_is_denied():
    assert SAME_STORE(user("staff", None)) is None
    assert SAME_STORE(user("staff", 2)) == column_is("store_id", "store_id")(user("staff", 2))


def test_scopes_compare_only_with_the_policy_group():
    with pytest.raises(ValueError, match="policy group"):
        column_is("owner_id", "user_id")


def test_policies_name_known_roles_and_actions():
    with pytest.raises(ValueError, match="unknown roles"):
        Policy(read={"admni": EVERY_ROW})
    with pytest.raises(ValueError, match="unknown action"):
        POLICY.scope("truncate", user("admin", None))


def test_scope_is_computed_once_per_group():
    first, second = user("staff", 1, user_id=10), user("staff", 1, user_id=11)
    assert POLICY.scope("read", first) is POLICY.scope("read", second)
    assert POLICY.scope("read", first) != POLICY.scope("read", user("staff", 2))


def test_a_table_without_a_policy_gets_the_default():
    policy = table_policy(Note)
    assert policy is DEFAULT_TABLE_POLICY and table_policy(Ledger) is POLICY
    for principal in PRINCIPALS:
        managing = principal.role in ("admin", "manager")
        assert policy.scope("read", principal) == (() if principal.authenticated else None)
        for action in ("insert", "update", "delete"):
            assert policy.allows(action, principal, {"id": 1}) is managing


def test_custom_topics_have_policies():
    monitor, presence = TOPIC_POLICIES.policy("monitor"), TOPIC_POLICIES.policy("presence")
    alerts = TOPIC_POLICIES.policy("alerts")
    for principal in PRINCIPALS:
        signed_in, managing = principal.authenticated, principal.role in ("admin", "manager")
        assert monitor.allows("read", principal, {}) is managing
        assert monitor.allows("publish", principal, {}) is False
        assert presence.allows("read", principal, {}) is signed_in
        assert presence.allows("publish", principal, {}) is False
        assert alerts.allows("read", principal, {}) is signed_in
        assert alerts.allows("publish", principal, {}) is managing


def test_an_app_declares_its_own_topic_policies():
    store_alerts = Policy(read={"staff": SAME_STORE}, publish={"admin": EVERY_ROW})
    policies = TopicPolicies({**TOPIC_POLICIES.named, "alerts": store_alerts})
    assert policies.policy("alerts") is store_alerts
    assert policies.policy("monitor") is TOPIC_POLICIES.policy("monitor")
    assert policies.policy("news") is TOPIC_POLICIES.default
    assert store_alerts.allows("read", user("staff", 1), {"store_id": 1})
    assert not store_alerts.allows("read", user("staff", 1), {"store_id": 2})


def sees(principal: Principal, event: dict, view: TopicView | None = None) -> str | None:
    """Return the op a principal's view of the ledger sees for an event."""
    scoped = visible_view(view or TopicView("ledger"), POLICY.scope("read", principal))
    return scoped.effective_op(event)


def test_an_update_moving_a_row_between_stores():
    event = event_body("ledger", "UPDATE", pk=1, version=2, row=row(1, 2), old=row(1, 1))
    assert sees(user("staff", 1), event) == "DELETE"
    assert sees(user("staff", 2), event) == "INSERT"
    for role in ("admin", "manager", "viewer"):
        assert sees(user(role, None), event) == "UPDATE"
    leaving = visible_view(TopicView("ledger"), POLICY.scope("read", user("staff", 1)))
    assert leaving.shape(event, "DELETE")["row"] is None


def test_inserts_and_deletes_reach_their_store_only():
    insert = event_body("ledger", "INSERT", pk=1, version=1, row=row(1, 2))
    delete = event_body("ledger", "DELETE", pk=1, version=1, old=row(1, 1))
    assert [sees(user("staff", s), insert) for s in (1, 2)] == [None, "INSERT"]
    assert [sees(user("staff", s), delete) for s in (1, 2)] == ["DELETE", None]


def test_visibility_combines_with_the_subscription_filter():
    big = TopicView(
        "ledger",
        parse_subscription(
            MultiDict({"topics": "ledger", "ledger.amount": "gte.5"}), {"ledger": TABLE}, ()
        )
        .views["ledger"]
        .conditions,
    )
    grows = event_body("ledger", "UPDATE", pk=1, version=2, row=row(1, 1, 7), old=row(1, 1, 1))
    moves = event_body("ledger", "UPDATE", pk=1, version=3, row=row(1, 2, 7), old=row(1, 1, 7))
    staff1, staff2, admin = user("staff", 1), user("staff", 2), user("admin", None)
    assert [sees(p, grows, big) for p in (staff1, staff2, admin)] == ["INSERT", None, "INSERT"]
    assert [sees(p, moves, big) for p in (staff1, staff2, admin)] == ["DELETE", "INSERT", "UPDATE"]


def test_one_group_and_one_filter_give_equal_views():
    """Equal views are what the hub shares between subscribers (tests/unit/test_hub_views)."""
    args = MultiDict({"topics": "ledger,presence", "ledger.amount": "gte.5"})

    def subscribe(principal):
        subscription = parse_subscription(args, {"ledger": TABLE}, ("presence",))
        return visible_subscription(subscription, policy_of, principal)

    first, second = subscribe(user("staff", 1, 10)), subscribe(user("staff", 1, 11))
    other = subscribe(user("staff", 2))
    assert first.views["ledger"] == second.views["ledger"]
    assert first.views["presence"] == second.views["presence"]
    assert first.views["ledger"] != other.views["ledger"]
    assert hash(first.views["ledger"]) == hash(second.views["ledger"])
    assert (
        subscribe(user("admin", None, 1)).views["ledger"]
        == subscribe(user("admin", None, 2)).views["ledger"]
    )


def policy_of(topic: str) -> Policy:
    """Return the policy of a ledger-app topic."""
    return POLICY if topic == "ledger" else TOPIC_POLICIES.policy(topic)


def test_a_topic_the_principal_may_not_read_is_forbidden():
    subscription = parse_subscription(
        MultiDict({"topics": "ledger,monitor"}), {"ledger": TABLE}, ("monitor",)
    )
    with pytest.raises(ApiError) as caught:
        visible_subscription(subscription, policy_of, user("staff", 1))
    assert (caught.value.status, caught.value.code) == (403, "forbidden")
    assert caught.value.details == {"topics": ["monitor"]}
    assert visible_subscription(subscription, policy_of, user("manager", None)).topics


STAFF1, STAFF2 = user("staff", 1), user("staff", 2)
VIEWER, ADMIN = user("viewer", None), user("admin", None)
WRITES = [
    # principal, action, old row, new row, expected status (None: allowed)
    (STAFF1, "insert", None, row(1, 1), None),
    (STAFF1, "insert", None, row(1, 2), 403),
    (STAFF1, "insert", None, row(1, None), 403),
    (VIEWER, "insert", None, row(1, 1), 403),
    (NOBODY, "insert", None, row(1, 1), 403),
    (ADMIN, "insert", None, row(1, 2), None),
    (STAFF1, "update", row(3, 1), row(3, 1, 5), None),
    (STAFF1, "update", row(3, 2), row(3, 2, 5), 404),
    (STAFF1, "update", row(3, 1), row(3, 2), 403),
    (STAFF2, "update", row(3, 1), row(3, 2), 404),
    (VIEWER, "update", row(3, 1), row(3, 1, 5), 403),
    (NOBODY, "update", row(3, 1), row(3, 1, 5), 404),
    (ADMIN, "update", row(3, 1), row(3, 2), None),
    (STAFF1, "delete", row(3, 1), None, None),
    (STAFF1, "delete", row(3, 2), None, 404),
    (VIEWER, "delete", row(3, 2), None, 403),
    (ADMIN, "delete", row(3, None), None, None),
]


@pytest.mark.parametrize(("principal", "action", "old", "new", "status"), WRITES)
def test_check_write(principal, action, old, new, status):
    if status is None:
        assert check_write(POLICY, principal, action, old, new, table="ledger") is None
        return
    with pytest.raises(ApiError) as caught:
        check_write(POLICY, principal, action, old, new, table="ledger")
    code = {403: "forbidden", 404: "not_found"}[status]
    assert (caught.value.status, caught.value.code) == (status, code)


def test_a_hidden_row_is_answered_like_a_missing_one():
    with pytest.raises(ApiError) as caught:
        check_write(POLICY, STAFF1, "delete", row(3, 2), None, table="ledger")
    missing = row_not_found("ledger", 3)
    assert caught.value.body() == missing.body()
    assert "store" not in caught.value.message


def test_stamp_sets_the_actor_and_the_store():
    values = {"amount": 3, "recorded_by": "someone else"}
    assert stamp(POLICY, STAFF1, values, action="insert") == {
        "amount": 3,
        "recorded_by": "staff1",
        "store_id": 1,
    }
    assert values == {"amount": 3, "recorded_by": "someone else"}
    assert stamp(POLICY, STAFF1, {"amount": 3, "store_id": 2}, action="insert")["store_id"] == 2
    assert "store_id" not in stamp(POLICY, ADMIN, {"amount": 3}, action="insert")
    # An update keeps who recorded the row: the request cannot change it.
    assert stamp(POLICY, STAFF2, {"amount": 4, "recorded_by": "x"}, action="update") == {
        "amount": 4
    }
    assert stamp(DEFAULT_TABLE_POLICY, STAFF1, {"text": "hi"}, action="insert") == {"text": "hi"}


def test_a_stamped_insert_lands_in_the_principal_store():
    stamped = stamp(POLICY, STAFF2, {"amount": 2}, action="insert")
    check_write(POLICY, STAFF2, "insert", None, dict(row(1, None), **stamped), table="ledger")
    assert stamped["store_id"] == 2
