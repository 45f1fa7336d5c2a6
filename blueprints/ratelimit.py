"""Rate limits per principal (per address for nobody): writes, stream opens, polls, open
streams and login attempts, refused with the protocol's 429 `rate_limited`.

Each request counts once against its kind, by endpoint; a batch counts one write per op,
so batching cannot get past the write limit. Login attempts count per address and per
username, and both must pass. An open stream holds a slot until the server closes it.
"""

from functools import partial

import orjson
from flask import Flask, Response, current_app, g, request

from feed import ApiError, runtime

from .limiter import Limiter, Refusal, Slot

# Each kind's setting, in the `limits` notation.
SETTINGS = {
    "writes": "RATE_LIMIT_WRITES",
    "streams": "RATE_LIMIT_STREAMS",
    "polls": "RATE_LIMIT_POLLS",
    "logins": "RATE_LIMIT_LOGINS",
}
# Refusals are counted by these kinds: the rate limits, and the open-stream cap.
KINDS = (*SETTINGS, "open_streams")
# The endpoints each rate limit counts.
ENDPOINTS = {
    "api.create": "writes",
    "api.update": "writes",
    "api.delete": "writes",
    "api.batch": "writes",
    "api.publish": "writes",
    "dashboard.presence": "writes",
    "stream.stream": "streams",
    "stream.changes": "polls",
    "auth.login": "logins",
}
WHAT = {
    "writes": "writes",
    "streams": "stream opens",
    "polls": "polls",
    "logins": "sign-in attempts",
    "open_streams": "open streams",
}


def init_app(app: Flask) -> None:
    """Count the app's requests against its limits; call after `access.init_app`."""
    rt = app.extensions["tidings"]
    metrics = rt.metrics
    for kind in KINDS:
        metrics.rate_limited.labels(kind)
    app.extensions["tidings_limits"] = Limiter(
        app.config["REDIS_URL"],
        {kind: app.config[setting] for kind, setting in SETTINGS.items()},
        int(app.config["MAX_STREAMS"]),
        namespace=f"{app.config['FEED_CHANNEL']}:limits",
        on_storage=metrics.limits_shared,
        pipeliner=rt.pipeliner,
    )
    app.before_request(_check)
    app.after_request(_hold_slot)
    app.teardown_request(_release_unheld)


def limiter() -> Limiter:
    """Return the current app's limiter."""
    return current_app.extensions["tidings_limits"]


def principal_key() -> str:
    """Return who a request counts against: its user, or its address for nobody."""
    principal = g.get("principal")
    if principal is not None and principal.authenticated:
        return f"user:{principal.user_id}"
    return f"addr:{request.remote_addr}"


def _refuse(refusal: Refusal) -> ApiError:
    runtime().metrics.refused(refusal.kind)
    seconds = refusal.retry_after
    return ApiError(
        429,
        "rate_limited",
        f"Too many {WHAT[refusal.kind]}; try again in {seconds} s.",
        {"limit": refusal.limit, "retry_after": seconds},
        headers={"Retry-After": str(seconds)},
    )


def _enforce(kind: str, key: str, cost: int = 1) -> None:
    refusal = limiter().hit(kind, key, cost)
    if refusal is not None:
        raise _refuse(refusal)


def _json_field(name: str):
    """Return a field of the JSON object body, or None; the view reports bad bodies."""
    if request.mimetype != "application/json":
        return None
    try:
        body = orjson.loads(request.get_data(cache=True))
    except orjson.JSONDecodeError:
        return None
    return body.get(name) if isinstance(body, dict) else None


def _batch_cost() -> int:
    """Return the writes a batch counts for: one per op, and at least one."""
    ops = _json_field("ops")
    cost = len(ops) if isinstance(ops, list) and ops else 1
    limit = limiter().rates["writes"]
    if cost > limit.amount:
        # No window would ever hold it: say so instead of asking to retry.
        raise ApiError(
            400,
            "batch_too_large",
            f"A batch holds at most {limit.amount} ops under the write limit.",
            {"ops": cost, "max_ops": limit.amount, "limit": str(limit)},
        )
    return cost


def _check() -> None:
    """Count the request against its kind's limit, or refuse it with a 429."""
    kind = ENDPOINTS.get(request.endpoint)
    if kind is None or request.method in ("OPTIONS", "HEAD"):
        return
    if kind == "logins":
        _enforce(kind, f"addr:{request.remote_addr}")
        username = _json_field("username")
        if isinstance(username, str) and username.strip():
            _enforce(kind, f"name:{username.strip().casefold()}")
        return
    key = principal_key()
    _enforce(kind, key, _batch_cost() if request.endpoint == "api.batch" else 1)
    if kind == "streams":
        taken = limiter().open_stream(key)
        if isinstance(taken, Refusal):
            raise _refuse(taken)
        g.stream_slot = taken


class HeldStream:
    """A stream body that gives its slot back when the server closes it.

    Iterating hands out the body's own iterator (nothing per chunk); the server closes
    the response whether or not it was ever iterated, and that frees the slot.
    """

    __slots__ = ("body", "release")

    def __init__(self, body, release):
        self.body = body
        self.release = release

    def __iter__(self):
        return iter(self.body)

    def close(self) -> None:
        """Close the body, then free the slot."""
        try:
            self.body.close()
        finally:
            self.release()


def _hold_slot(response: Response) -> Response:
    """Tie a stream's slot to its response: the slot frees when the stream closes."""
    slot: Slot | None = g.pop("stream_slot", None)
    if slot is not None:
        if response.is_streamed:
            held = limiter()
            response.response = HeldStream(response.response, partial(held.close_stream, slot))
        else:
            limiter().close_stream(slot)
    return response


def _release_unheld(_error: BaseException | None) -> None:
    """Free a slot that no response took (the request failed on the way)."""
    slot = g.pop("stream_slot", None)
    if slot is not None:
        limiter().close_stream(slot)
