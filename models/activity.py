"""Demo side effects written in the same transaction as the change that causes them:
an audit row for every bakery change, and a notification when stock runs low."""

import datetime as dt

import sqlalchemy as sa
from sqlalchemy import event as sa_event
from sqlalchemy.orm import Session

from feed.capture import acting
from feed.values import utcnow

from .bakery import AuditLog, BreadType, Notification, ProductionLog, SalesLog, ShiftFeedback

# Stock (produced − sold today) below which a sale raises a warning.
LOW_STOCK = 10
AUDITED = (BreadType, ProductionLog, SalesLog, ShiftFeedback)
_NOTED = "tidings.demo.noted"


def start_of_today() -> dt.datetime:
    """Return today's midnight, UTC (the dashboard's day)."""
    return utcnow().replace(hour=0, minute=0, second=0, microsecond=0)


def stock_today(session: Session, bread_type_id: int, store_id: int | None = None) -> int:
    """Return loaves produced minus loaves sold today for one bread, in one store or all."""
    since = start_of_today()

    def total(model) -> int:
        query = sa.select(sa.func.coalesce(sa.func.sum(model.quantity), 0)).where(
            model.bread_type_id == bread_type_id, model.created_at >= since
        )
        if store_id is not None:
            query = query.where(model.store_id == store_id)
        return int(session.execute(query).scalar_one())

    return total(ProductionLog) - total(SalesLog)


def _summary(session: Session, action: str, obj) -> str:
    """Describe a change in a few words for the audit log."""
    if isinstance(obj, SalesLog | ProductionLog):
        verb = "sold" if isinstance(obj, SalesLog) else "baked"
        bread = session.get(BreadType, obj.bread_type_id)
        name = bread.name if bread else f"bread #{obj.bread_type_id}"
        return f"{action} {obj.__tablename__}: {verb} {obj.quantity} × {name} ({obj.shift})"
    if isinstance(obj, BreadType):
        return f"{action} bread type {obj.name} at {float(obj.price):.2f}"
    return f"{action} feedback for the {obj.shift} shift (mood {obj.mood})"


def _note_changes(session: Session, _flush_context) -> None:
    """Remember what this flush changed, with ids now assigned."""
    noted = session.info.setdefault(_NOTED, [])
    for action, objects in (
        ("insert", session.new),
        ("update", session.dirty),
        ("delete", session.deleted),
    ):
        for obj in objects:
            if isinstance(obj, AUDITED):
                if action == "update" and not session.is_modified(obj):
                    continue
                noted.append((action, obj))


def _low_stock(session: Session, sale: SalesLog) -> Notification | None:
    """Return a notification when this sale takes a bread's stock across the threshold."""
    after = stock_today(session, sale.bread_type_id, sale.store_id)
    before = after + sale.quantity
    crossed_low = before >= LOW_STOCK > after
    sold_out = after <= 0 < before
    if not (crossed_low or sold_out):
        return None
    bread = session.get(BreadType, sale.bread_type_id)
    name = bread.name if bread else f"Bread #{sale.bread_type_id}"
    if after <= 0:
        return Notification(
            level="error",
            title=f"{name} sold out",
            body=f"Stock is {after}.",
            store_id=sale.store_id,
        )
    return Notification(
        level="warning",
        title=f"Low stock: {name}",
        body=f"Only {after} left today.",
        store_id=sale.store_id,
    )


def _actor(session: Session, obj) -> str:
    """Name who made a change: the principal the write acts for, else (scripts, the seed)
    the row's own recorded_by."""
    principal = acting(session)
    if principal is not None and principal.authenticated:
        return principal.username
    return getattr(obj, "recorded_by", None) or "staff"


def _write_side_effects(session: Session) -> None:
    """Add audit rows and notifications; the commit flushes them with the change."""
    noted = session.info.pop(_NOTED, None)
    if not noted:
        return
    for action, obj in noted:
        session.add(
            AuditLog(
                actor=_actor(session, obj),
                action=action,
                target_table=obj.__tablename__,
                target_id=obj.id,
                store_id=getattr(obj, "store_id", None),
                summary=_summary(session, action, obj)[:500],
            )
        )
        if action == "insert" and isinstance(obj, SalesLog):
            notification = _low_stock(session, obj)
            if notification is not None:
                session.add(notification)


def attach(session_target) -> None:
    """Listen on the app's session for bakery changes."""
    sa_event.listen(session_target, "after_flush", _note_changes)
    sa_event.listen(session_target, "after_flush_postexec", lambda s, _ctx: _write_side_effects(s))
    sa_event.listen(session_target, "after_rollback", lambda s: s.info.pop(_NOTED, None))
