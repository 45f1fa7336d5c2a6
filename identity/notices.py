"""Tell open streams that a credential ended, on the feed's internal credentials topic."""

import sqlalchemy as sa
from sqlalchemy import event as sa_event
from sqlalchemy.orm import Session

from feed import credentials, runtime, writes
from models.users import User

# A change to any of these ends what the user's sign-ins allowed: their open streams end,
# and their next request is resolved afresh.
ACCESS_COLUMNS = ("active", "role", "store_id", "password_hash")


def announce(db_session: Session, reason: str, /, **credential: str | int) -> None:
    """Append `{"reason", "session"|"token": id}` to the credentials topic in the transaction.

    This process forgets the principals it resolved at once; every other one (and this one
    again) when the event reaches it.
    """
    runtime().credentials.forget()
    writes.append_to_topic(
        runtime(), db_session, credentials.TOPIC, {"reason": reason, **credential}
    )


def _user_changes(session: Session, _context, _instances) -> None:
    for obj in (*session.dirty, *session.deleted):
        if not isinstance(obj, User):
            continue
        state = sa.inspect(obj)
        if obj in session.deleted or any(
            state.attrs[column].history.has_changes() for column in ACCESS_COLUMNS
        ):
            announce(session, "revoked", user=obj.id)


def attach(session_target) -> None:
    """Announce, in its own transaction, every change to a user's access."""
    sa_event.listen(session_target, "before_flush", _user_changes)
