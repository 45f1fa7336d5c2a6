"""The live bakery dashboard at `/`, and the presence announcements its pages send."""

import re

import sqlalchemy as sa
from flask import Blueprint, g, render_template

from feed import ApiError, runtime, writes
from models import Store
from models.activity import LOW_STOCK, start_of_today

from .http import json_body, json_response

bp = Blueprint("dashboard", __name__)

# Topics the dashboard subscribes to (presence is a custom topic, the rest are tables).
TOPICS = (
    "bread_types",
    "production_logs",
    "sales_logs",
    "shift_feedback",
    "notifications",
    "audit_logs",
    "presence",
)
PRESENCE_STATES = ("here", "away", "gone")
_CLIENT_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


@bp.get("/")
def index():
    """Serve the dashboard shell; the client fills it from snapshots and the stream."""
    return render_template(
        "dashboard.html",
        topics=TOPICS,
        day_start=start_of_today().strftime("%Y-%m-%dT%H:%M:%S.000Z"),
        heartbeat=runtime().config["HEARTBEAT_SECONDS"],
        low_stock=LOW_STOCK,
        store=_store_name(g.principal.store_id),
        user={
            "username": g.principal.username,
            "role": g.principal.role,
            "store_id": g.principal.store_id,
        },
    )


def _store_name(store_id: int | None) -> str | None:
    """Return the name of the signed-in user's store, if they have one."""
    if store_id is None:
        return None
    with runtime().read() as conn:
        return conn.execute(sa.select(Store.name).where(Store.id == store_id)).scalar()


def _presence(body) -> dict:
    """Validate a presence announcement, or raise a 400 naming the problem.

    The name published is the signed-in user's: a body's `name` is ignored.
    """
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_body", "The body must be a JSON object.")
    client, state = body.get("client"), body.get("state")
    if not isinstance(client, str) or not _CLIENT_ID.fullmatch(client):
        raise ApiError(400, "invalid_client", "client must be 1 to 64 letters, digits, - or _.")
    if state not in PRESENCE_STATES:
        raise ApiError(400, "invalid_state", "state must be here, away or gone.", {"state": state})
    return {
        "client": client,
        "name": g.principal.username,
        "state": state,
        "hello": body.get("hello") is True,
    }


@bp.post("/presence")
def presence():
    """Publish whether a signed-in tab is here or away to the `presence` topic.

    The server publishes it (no principal): clients may not publish to `presence` themselves.
    """
    data = _presence(json_body())
    status, result = writes.publish(runtime(), "presence", data)
    return json_response(result, status)
