"""Retention: old events and idempotency keys leave the database, on a timer."""

import logging
from collections.abc import Mapping

import gevent
from flask import Flask

from .idempotency import IdempotencyStore
from .log import EventLog
from .transactions import Transactions

logger = logging.getLogger("tidings")


class Retention:
    """Prune the log past RETENTION_HOURS / RETENTION_EVENTS, and keys past IDEMPOTENCY_HOURS."""

    def __init__(
        self,
        app: Flask,
        log: EventLog,
        idempotency: IdempotencyStore,
        transactions: Transactions,
    ):
        self.app = app
        self.config: Mapping = app.config
        self.log = log
        self.idempotency = idempotency
        self.transactions = transactions

    def prune(self) -> tuple[int, int]:
        """Apply retention to the log and the idempotency keys once."""
        config = self.config
        with self.app.app_context(), self.transactions.write() as session:
            conn = session.connection()
            events = self.log.prune(
                conn,
                max_age_seconds=config["RETENTION_HOURS"] * 3600,
                max_events=config["RETENTION_EVENTS"],
            )
            keys = self.idempotency.prune(conn, config["IDEMPOTENCY_HOURS"] * 3600)
        return events, keys

    def run(self) -> None:
        """Prune every PRUNE_SECONDS; a failed pass is logged and the next one tries again."""
        while True:
            gevent.sleep(self.config["PRUNE_SECONDS"])
            try:
                pruned, _ = self.prune()
                if pruned:
                    logger.info("retention pruned %d events", pruned)
            except Exception:
                logger.exception("retention pass failed")
