"""Tell open streams that a credential ended, on the feed's internal credentials topic."""

from sqlalchemy.orm import Session

from feed import credentials, runtime, writes


def announce(db_session: Session, reason: str, /, **credential: str | int) -> None:
    """Append `{"reason", "session"|"token": id}` to the credentials topic in the transaction."""
    writes.append_to_topic(
        runtime(), db_session, credentials.TOPIC, {"reason": reason, **credential}
    )
