"""Turn a request's credential into its principal: a session cookie, an API token, or a
stream token; a credential that is present but not good is refused, never taken as nobody."""

import datetime as dt

from flask import current_app, g, request

from feed import ApiError, runtime
from feed.principal import NOBODY, Principal

from . import sessions, stream_tokens, tokens
from .secret import digest, same

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# Where `?access_token=` is a credential: the transports that cannot send headers.
STREAM_TOKEN_ENDPOINTS = frozenset({"stream.stream", "stream.changes"})
# Signing in needs no CSRF token: there is no session yet to forge a request for.
CSRF_EXEMPT = frozenset({"auth.login"})


def refused(message: str) -> ApiError:
    """Return the 401 for a missing or bad credential."""
    return ApiError(401, "unauthenticated", message, headers={"WWW-Authenticate": "Bearer"})


def _seconds(value: dt.datetime) -> float:
    """Return a naive UTC datetime as Unix seconds."""
    return value.replace(tzinfo=dt.UTC).timestamp()


def _user(row, credential: str, **more) -> Principal:
    return Principal(
        user_id=row.id,
        username=row.username,
        role=row.role,
        store_id=row.store_id,
        credential=credential,
        **more,
    )


def _session_hours() -> float:
    return current_app.config["SESSION_HOURS"]


def _opened_until(row) -> float:
    return _seconds(row.opened_at) + _session_hours() * 3600


def _bearer(header: str) -> Principal:
    scheme, _, secret = header.partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        raise refused("Send the API token as Authorization: Bearer <token>.")
    credentials, key = runtime().credentials, digest(secret.strip())
    found = credentials.recall(key)
    if found is not None:
        return found
    with runtime().read() as conn:
        row = tokens.active_by_digest(conn, key)
    if row is None:
        raise refused("The API token is unknown, expired or revoked.")
    found = _user(row, "token", token_id=row.token_id, expires_at=_seconds(row.expires_at))
    credentials.remember(key, found)
    return found


def _stream_token(token: str) -> Principal:
    payload = stream_tokens.load(current_app.config["SECRET_KEY"], token)
    row = None
    if payload is not None:
        with runtime().read() as conn:
            if isinstance(payload.get("session"), str):
                row = sessions.find_active(conn, payload["session"], _session_hours())
            elif isinstance(payload.get("token"), int):
                row = tokens.active_by_id(conn, payload["token"])
    if row is None or row.id != payload.get("user"):
        raise refused("The access token is forged, expired, or its sign-in ended.")
    if "session" in payload:
        parent = {"session_id": row.session_id, "expires_at": _opened_until(row)}
    else:
        parent = {"token_id": row.token_id, "expires_at": _seconds(row.expires_at)}
    parent["expires_at"] = min(parent["expires_at"], payload["exp"])
    return _user(row, "stream_token", **parent)


def _session(cookie: str) -> Principal:
    sid = sessions.session_id(current_app.config["SECRET_KEY"], cookie)
    if sid is None:
        return NOBODY
    with runtime().read() as conn:
        row = sessions.find_active(conn, sid, _session_hours())
    # A stale cookie is normal (signed out elsewhere, expired): the caller signs in again.
    if row is None:
        return NOBODY
    if request.method in WRITE_METHODS and request.endpoint not in CSRF_EXEMPT:
        given = request.headers.get("X-CSRF-Token", "")
        if not same(given, row.csrf_token):
            raise ApiError(
                403,
                "csrf_failed",
                "A signed-in browser's change must carry the session's X-CSRF-Token header.",
            )
    g.csrf_token = row.csrf_token
    return _user(row, "session", session_id=row.session_id, expires_at=_opened_until(row))


def principal() -> Principal:
    """Return who makes the current request, or raise a 401 for a bad credential."""
    header = request.headers.get("Authorization")
    if header is not None:
        return _bearer(header)
    if request.endpoint in STREAM_TOKEN_ENDPOINTS and "access_token" in request.args:
        return _stream_token(request.args["access_token"])
    cookie = request.cookies.get(sessions.COOKIE)
    return _session(cookie) if cookie else NOBODY
