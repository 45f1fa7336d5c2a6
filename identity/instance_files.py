"""Secrets kept in the instance folder: written once, readable by the owner only."""

import os
import secrets
import tempfile


def write_private(path: str, text: str) -> bool:
    """Create a file of mode 0600 holding `text`, unless it exists; tell whether it was made.

    The text is written aside and linked in whole, so a reader never sees half a file.
    """
    fd, draft = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".draft-")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.link(draft, path)
        return True
    except FileExistsError:
        return False
    finally:
        os.unlink(draft)


def secret_key(instance_path: str) -> str:
    """Return the instance's secret key, generating it on first use."""
    path = os.path.join(instance_path, "secret_key")
    # Several workers may start at once: the first to link the file wins, the rest read it.
    write_private(path, secrets.token_urlsafe(48))
    with open(path) as handle:
        return handle.read().strip()
