"""Stream tokens: short-lived, signed, and bound to the credential they were made from,
so logging out that session or revoking that token ends them too."""

import time

from itsdangerous import BadSignature, URLSafeSerializer

_SALT = "tidings.stream-token"


def issue(secret_key: str, user_id: int, parent: dict, seconds: float) -> tuple[str, float]:
    """Sign a token for a user derived from `parent` ({"session": id} or {"token": id});
    return it and when it expires (Unix seconds)."""
    expires = time.time() + seconds
    payload = {"user": user_id, "exp": round(expires, 3), **parent}
    return URLSafeSerializer(secret_key, salt=_SALT).dumps(payload), expires


def load(secret_key: str, token: str) -> dict | None:
    """Return a stream token's payload, or None when it is forged, malformed or expired."""
    try:
        payload = URLSafeSerializer(secret_key, salt=_SALT).loads(token)
    except BadSignature:
        return None
    if not isinstance(payload, dict) or not isinstance(payload.get("exp"), int | float):
        return None
    return payload if payload["exp"] > time.time() else None
