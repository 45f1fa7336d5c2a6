"""The live bakery dashboard at `/`, and the presence announcements its pages send."""

import re

from flask import Blueprint, render_template

from feed import ApiError, runtime, writes
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
    )


def _presence(body) -> dict:
    """Validate a presence announcement, or raise a 400 naming the problem."""
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_body", "The body must be a JSON object.")
    client, name, state = body.get("client"), body.get("name"), body.get("state")
    if not isinstance(client, str) or not _CLIENT_ID.fullmatch(client):
        raise ApiError(400, "invalid_client", "client must be 1 to 64 letters, digits, - or _.")
    if not isinstance(name, str) or not 0 < len(name.strip()) <= 40:
        raise ApiError(400, "invalid_name", "name must be 1 to 40 characters.")
    if state not in PRESENCE_STATES:
        raise ApiError(400, "invalid_state", "state must be here, away or gone.", {"state": state})
    return {
        "client": client,
        "name": name.strip(),
        "state": state,
        "hello": body.get("hello") is True,
    }


@bp.post("/presence")
def presence():
    """Publish who is viewing the dashboard to the `presence` topic."""
    status, result = writes.publish(runtime(), "presence", _presence(json_body()))
    return json_response(result, status)
