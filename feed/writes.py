"""Writes as engine calls: one row change, a batch of them, and publishing to a topic.

Each runs as its own unit (a write transaction, or a savepoint in a group commit shared
with the worker's other waiting writes) and answers (status, body) once committed. The
rules of one write live here: its Idempotency-Key, its If-Match version, the row lock it
takes, finding the event it appended, and the table's policy (feed.policy): the lookup sees
only rows the principal may read, the change is checked with `check_write`, and the fields
naming who acted are set from the principal. No principal means the app itself (the seed,
scripts): trusted, unchecked.
"""

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from .capture import event_body
from .errors import ApiError
from .live import LiveTable
from .log import Event
from .policy import check_write, forbidden, read_clauses, row_not_found, stamp
from .principal import Principal
from .registry import INTERNAL_TOPICS
from .values import INT64_MAX

if TYPE_CHECKING:
    from .extension import FeedRuntime

WRITE_METHODS = ("POST", "PATCH", "DELETE")
BATCH_MAX_OPS = 1000


def parse_version(value: Any) -> int | None:
    """Parse an If-Match version: `"3"`, `W/"3"` or a bare 3; `*` (or nothing) matches any."""
    if value is None or value == "" or value == "*":
        return None
    # A batch op's if_match may be any JSON: only a number or a string can be a version
    # (and str() of a deeply nested list would recurse past Python's limit).
    text = str(value).strip() if isinstance(value, int | str) else ""
    text = text.removeprefix("W/").strip('"')
    if text.isascii() and text.isdigit() and 1 <= int(text) <= INT64_MAX:
        return int(text)
    raise ApiError(
        400,
        "invalid_if_match",
        "If-Match must be an integer of at least 1.",
        {"If-Match": text},
    )


@contextmanager
def transaction(
    rt: "FeedRuntime", *, mutation: str | None = None, principal: Principal | None = None
) -> Iterator[Session]:
    """Open a write transaction for changes made with the ORM (the seed, scripts)."""
    with rt.transactions.write(mutation=mutation, principal=principal) as session:
        yield session


def write(
    rt: "FeedRuntime",
    method: str,
    name: str,
    row_id: int | None = None,
    body: Any = None,
    *,
    if_match: int | None = None,
    key: str | None = None,
    principal: Principal | None = None,
) -> tuple[int, dict]:
    """Apply one POST, PATCH or DELETE to a live table; return (status, body) once committed."""
    table = rt.registry.table(name)
    if row_id is not None:
        row_id = table.key(row_id)
    try:
        return _idempotent(
            rt,
            key,
            f"{method} {name}",
            lambda session: _change(rt, session, table, principal, method, row_id, body, if_match),
            principal=principal,
        )
    except sa.exc.IntegrityError as exc:
        raise ApiError(
            409,
            "constraint_violation",
            "The change breaks a database constraint.",
            {"table": name, "reason": str(exc.orig)},
        ) from None


def batch(rt: "FeedRuntime", ops: list, *, principal: Principal | None = None) -> list[dict]:
    """Apply ops in order, each in its own transaction; an op's error becomes its result."""
    if len(ops) > BATCH_MAX_OPS:
        raise ApiError(
            400,
            "batch_too_large",
            f"A batch holds at most {BATCH_MAX_OPS} ops.",
            {"ops": len(ops)},
        )
    results = []
    for op in ops:
        try:
            status, body = _batch_op(rt, op, principal)
        except ApiError as error:
            status, body = error.status, error.body()
        results.append({"status": status, "body": body})
    return results


def _batch_op(rt: "FeedRuntime", op: Any, principal: Principal | None) -> tuple[int, dict]:
    """Validate one batch op and apply it."""
    if not isinstance(op, dict):
        raise ApiError(400, "invalid_op", "Each op must be a JSON object.")
    method = op.get("method")
    if method not in WRITE_METHODS:
        raise ApiError(
            400,
            "invalid_method",
            "method must be POST, PATCH or DELETE.",
            # Any JSON may come here; orjson cannot encode it past 254 levels deep.
            {"method": method if isinstance(method, str) else None},
        )
    name = op.get("table")
    if not isinstance(name, str):
        raise ApiError(400, "invalid_op", "table must be a table name.")
    # A POST names no row: whatever its op says under "id" is not one.
    row_id = op.get("id") if method != "POST" else None
    if method != "POST" and (not isinstance(row_id, int) or isinstance(row_id, bool)):
        raise ApiError(400, "invalid_op", f"{method} needs the row's integer id.")
    key = op.get("key")
    if key is not None and not isinstance(key, str):
        raise ApiError(400, "invalid_idempotency_key", "key must be a string.")
    body = op.get("row") if method != "DELETE" else None
    if_match = parse_version(op.get("if_match"))
    return write(rt, method, name, row_id, body, if_match=if_match, key=key, principal=principal)


def publish(
    rt: "FeedRuntime",
    topic: str,
    data: Any,
    *,
    key: str | None = None,
    principal: Principal | None = None,
) -> tuple[int, dict]:
    """Append a PUBLISH event to a declared custom topic; return (201, {"event": id})."""
    rt.registry.topic(topic)
    if principal is not None and rt.registry.policy(topic).scope("publish", principal) is None:
        raise forbidden(f"You may not publish to {topic}.", topic=topic)

    def append(session: Session) -> tuple[int, dict]:
        return 201, {"event": append_to_topic(rt, session, topic, data, mutation=key).id}

    return _idempotent(rt, key, f"POST publish:{topic}", append, principal=principal)


def append_to_topic(
    rt: "FeedRuntime", session: Session, topic: str, data: Any, *, mutation: str | None = None
) -> Event:
    """Append a PUBLISH event to a custom topic in the session's transaction."""
    if topic not in rt.registry.custom_topics + INTERNAL_TOPICS:
        raise ValueError(f"{topic!r} is not a declared custom topic")
    body = event_body(topic, "PUBLISH", row=data, mutation=mutation)
    return rt.feed.capture.append(session, [body])[0]


def _key_max_age(rt: "FeedRuntime") -> float:
    """Return how long, in seconds, an Idempotency-Key is remembered."""
    return rt.config["IDEMPOTENCY_HOURS"] * 3600


def _idempotent(
    rt: "FeedRuntime",
    key: str | None,
    scope: str,
    make: Callable[[Session], tuple[int, dict]],
    *,
    principal: Principal | None,
) -> tuple[int, dict]:
    """Run `make(session)` in a write transaction unless this key already has a response;
    remember the response in the same transaction as the write; answer once committed."""
    if key is not None and not 0 < len(key) <= 200:
        raise ApiError(
            400, "invalid_idempotency_key", "Idempotency-Key must be 1 to 200 characters."
        )
    store, max_age = rt.idempotency, _key_max_age(rt)

    def once(session: Session) -> tuple[int, dict]:
        if key is None:
            return make(session)
        conn = session.connection()
        remembered = store.recall(conn, key, scope, max_age)
        if remembered is not None:
            return remembered
        status, result = make(session)
        store.remember(conn, key, scope, status, result, max_age)
        return status, result

    try:
        return rt.transactions.run(once, mutation=key, principal=principal)
    except sa.exc.IntegrityError:
        if key is not None:
            # Another request with the same key won the race: answer as it did.
            with rt.transactions.read() as conn:
                remembered = store.recall(conn, key, scope, max_age)
            if remembered is not None:
                return remembered
        raise


def _locked_row(
    session: Session, table: LiveTable, row_id: int | None, principal: Principal | None
):
    """Return the row to change, locked until commit, or raise a 404 when it does not exist
    or the principal may not read it."""
    query = (
        sa.select(table.model)
        .where(table.columns["id"] == row_id, *read_clauses(table, principal))
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    obj = session.execute(query).scalar_one_or_none()
    if obj is None:
        raise row_not_found(table.name, row_id)
    return obj


def _change(
    rt: "FeedRuntime",
    session: Session,
    table: LiveTable,
    principal: Principal | None,
    method: str,
    row_id: int | None,
    body: Any,
    if_match: int | None,
) -> tuple[int, dict]:
    """Make the change inside the open transaction, check it against the table's policy,
    and describe the result."""
    policy = rt.registry.policy(table.name)
    action = {"POST": "insert", "PATCH": "update", "DELETE": "delete"}[method]
    if principal is not None:
        if action == "insert" and policy.scope(action, principal) is None:
            # A role without the right learns nothing about the body it sent.
            raise forbidden(f"You may not insert into {table.name}.", table=table.name)
        if isinstance(body, dict):
            body = stamp(policy, principal, body, action=action)
    old = None
    if method == "POST":
        obj = table.model(**table.values_from_body(body, partial=False))
        session.add(obj)
        status = 201
    else:
        obj = _locked_row(session, table, row_id, principal)
        if if_match is not None and obj.version != if_match:
            raise ApiError(
                412,
                "version_conflict",
                f"The row is at version {obj.version}, not {if_match}.",
                {"table": table.name, "id": row_id, "expected": if_match},
                extra={"current": table.row(obj)},
            )
        old = table.row(obj)
        if method == "PATCH":
            for column, value in table.values_from_body(body, partial=True).items():
                setattr(obj, column, value)
        else:
            if principal is not None:
                # Before the flush, so a delete the principal may not make never reaches
                # the database (and its constraints).
                check_write(policy, principal, action, old, None, table=table.name)
            session.delete(obj)
        status = 200
    events = rt.transactions.appended(session)
    row = None if method == "DELETE" else table.row(obj)
    if principal is not None and row is not None:
        # Checked once the change is flushed: the row as stored; an error rolls it back.
        check_write(policy, principal, action, old, row, table=table.name)
    own = [e.id for e in events if e.topic == table.name and e.data["pk"] == obj.id]
    # The row's latest event is this change's: earlier ones in the same transaction are
    # other writes' of its group, or earlier changes of a batch.
    event_id = own[-1] if own else None
    if method == "DELETE":
        return status, {"event": event_id}
    return status, {"row": row, "event": event_id}
