"""Sign-ins, sign-outs and failed sign-ins, written to the demo's audit log."""

from sqlalchemy.orm import Session

from models import AuditLog

SUMMARIES = {
    "sign_in": "{name} signed in",
    "sign_out": "{name} signed out",
    "sign_in_failed": "a sign-in as {name} failed",
}


def record(session: Session, action: str, user) -> None:
    """Add an audit row for a user's sign-in event in the session's transaction; a failed
    sign-in of an unknown name records no name (it may be a mistyped password)."""
    name = user.username if user is not None else "an unknown user"
    session.add(
        AuditLog(
            actor=user.username if user is not None else "unknown",
            action=action,
            target_table="users",
            target_id=user.id if user is not None else None,
            summary=SUMMARIES[action].format(name=name),
            store_id=user.store_id if user is not None else None,
        )
    )
