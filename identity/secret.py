"""Random secrets and their digests: high-entropy values need no slow hash."""

import hashlib
import hmac
import secrets


def new_secret() -> str:
    """Return a fresh URL-safe secret of 256 random bits."""
    return secrets.token_urlsafe(32)


def digest(secret: str) -> str:
    """Return the SHA-256 of a secret, in hex, as it is stored."""
    return hashlib.sha256(secret.encode()).hexdigest()


def same(given: str, expected: str) -> bool:
    """Compare two secrets in constant time."""
    return hmac.compare_digest(given.encode(), expected.encode())
