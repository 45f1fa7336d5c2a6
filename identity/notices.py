"""Tell open streams that a credential ended, on the internal `auth` topic."""

from sqlalchemy.orm import Session

from feed import runtime

TOPIC = "auth"


def announce(db_session: Session, reason: str, /, **credential: str | int) -> None:
    """Append `{"reason", "session"|"token": id}` to the auth topic in the transaction."""
    runtime().append_to_topic(db_session, TOPIC, {"reason": reason, **credential})
