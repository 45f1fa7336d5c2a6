"""Signing in and out, API tokens and stream tokens, under /api/auth."""

import datetime as dt

import sqlalchemy as sa
from flask import Blueprint, current_app, g, request

from feed import ApiError, runtime
from feed.values import iso
from identity import accounts, audit, sessions, stream_tokens, tokens
from identity.notices import announce
from identity.passwords import verify_password
from models import User

from .http import json_body, json_response

bp = Blueprint("auth", __name__, url_prefix="/api/auth")


def _strings(body, *names: str) -> list[str]:
    """Return the named string fields of a JSON object, or raise a 400 naming the first bad one."""
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_body", "The body must be a JSON object.")
    for name in names:
        if not isinstance(body.get(name), str) or not body[name]:
            raise ApiError(400, f"invalid_{name}", f"{name} must be a non-empty string.")
    return [body[name] for name in names]


def _signed_in(user, csrf_token: str | None) -> dict:
    return {"user": accounts.describe(user), "csrf_token": csrf_token}


@bp.post("/login")
def login():
    """Check a username and password and open a session, set as an HttpOnly cookie."""
    username, password = _strings(json_body(), "username", "password")
    rt = runtime()
    with rt.read() as conn:
        user = conn.execute(sa.select(User.__table__).where(User.username == username)).first()
    # An unknown name is checked against a dummy hash: both failures cost the same.
    matches = verify_password(user.password_hash if user else None, password)
    if not (matches and user.active):
        with rt.write() as session:
            audit.record(session, "sign_in_failed", user)
        raise ApiError(401, "invalid_credentials", "The username or password is wrong.")
    with rt.write() as session:
        opened = sessions.start(session, user.id)
        sid, csrf_token = opened.id, opened.csrf_token
        audit.record(session, "sign_in", user)
    response = json_response(_signed_in(user, csrf_token))
    response.set_cookie(
        sessions.COOKIE,
        sessions.cookie_value(current_app.config["SECRET_KEY"], sid),
        httponly=True,
        samesite="Lax",
        secure=request.is_secure,
        path="/",
    )
    return response


@bp.post("/logout")
def logout():
    """End the caller's session everywhere; streams it opened are told on the auth topic."""
    principal = g.principal
    sid = principal.session_id if principal.credential == "session" else None
    if sid is not None:
        with runtime().write() as session:
            if sessions.end(session, sid):
                announce(session, "logged_out", session=sid)
                audit.record(session, "sign_out", session.get(User, principal.user_id))
    response = json_response({"signed_out": sid is not None})
    response.delete_cookie(sessions.COOKIE, path="/", httponly=True, samesite="Lax")
    return response


@bp.get("/me")
def me():
    """Return who is signed in, as login does."""
    principal = g.principal
    return json_response(
        {
            "user": {
                "id": principal.user_id,
                "username": principal.username,
                "role": principal.role,
                "store_id": principal.store_id,
            },
            "csrf_token": g.get("csrf_token"),
        }
    )


def _lifetime(body: dict) -> int:
    """Return a token's lifetime in seconds from `expires_in`, or raise a 400."""
    config = current_app.config
    seconds = body.get("expires_in", config["API_TOKEN_SECONDS"])
    high = config["API_TOKEN_MAX_SECONDS"]
    if not isinstance(seconds, int) or isinstance(seconds, bool) or not 0 < seconds <= high:
        raise ApiError(
            400,
            "invalid_expires_in",
            f"expires_in must be whole seconds between 1 and {high}.",
            {"expires_in": seconds},
        )
    return seconds


@bp.post("/tokens")
def create_token():
    """Issue an API token for the caller; its secret is shown this once."""
    body = json_body()
    (name,) = _strings(body, "name")
    if len(name) > 80:
        raise ApiError(400, "invalid_name", "name must be at most 80 characters.")
    seconds = _lifetime(body)
    with runtime().write() as session:
        token, secret = tokens.issue(session, g.principal.user_id, name, seconds)
        described = tokens.describe(token)
    return json_response(
        {
            "id": described["id"],
            "name": name,
            "token": secret,
            "expires_at": described["expires_at"],
        },
        201,
    )


@bp.get("/tokens")
def list_tokens():
    """List the caller's tokens, without secrets."""
    with runtime().read() as conn:
        return json_response({"tokens": tokens.listed(conn, g.principal.user_id)})


# Bounded as the id column: a wider id names no token (404), and no database fails on it.
@bp.delete("/tokens/<int(max=2147483647):token_id>")
def revoke_token(token_id: int):
    """Revoke one of the caller's tokens; streams resting on it are told on the auth topic."""
    with runtime().write() as session:
        token = tokens.revoke(session, g.principal.user_id, token_id)
        if token is None:
            raise ApiError(
                404, "not_found", f"You have no live token {token_id}.", {"id": token_id}
            )
        announce(session, "revoked", token=token_id)
        described = tokens.describe(token)
    return json_response(described)


@bp.post("/stream-token")
def stream_token():
    """Sign a short-lived token for `?access_token=` on /stream and /api/changes."""
    principal = g.principal
    if principal.credential == "session":
        parent = {"session": principal.session_id}
    else:
        parent = {"token": principal.token_id}
    token, expires = stream_tokens.issue(
        current_app.config["SECRET_KEY"],
        principal.user_id,
        parent,
        current_app.config["STREAM_TOKEN_SECONDS"],
    )
    expires_at = dt.datetime.fromtimestamp(expires, dt.UTC)
    return json_response({"token": token, "expires_at": iso(expires_at)})
