"""The database handle, the feed, and the bakery demo's live tables."""

from . import activity
from .bakery import AuditLog, BreadType, Notification, ProductionLog, SalesLog, ShiftFeedback
from .base import db, feed

activity.attach(db.session)

__all__ = [
    "AuditLog",
    "BreadType",
    "Notification",
    "ProductionLog",
    "SalesLog",
    "ShiftFeedback",
    "db",
    "feed",
]
