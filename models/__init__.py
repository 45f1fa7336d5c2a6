"""The database handle, the feed, and the bakery demo's live tables."""

from identity import notices  # noqa: E402  (it needs the models above)

from . import activity
from .bakery import (
    AuditLog,
    BreadType,
    Notification,
    ProductionLog,
    SalesLog,
    ShiftFeedback,
    Store,
)
from .base import db, feed
from .users import ApiToken, User, UserSession

activity.attach(db.session)
notices.attach(db.session)

__all__ = [
    "ApiToken",
    "AuditLog",
    "BreadType",
    "Notification",
    "ProductionLog",
    "SalesLog",
    "ShiftFeedback",
    "Store",
    "User",
    "UserSession",
    "db",
    "feed",
]
