"""Demo data for the bakery, and the `flask init-db` / `flask seed` commands."""

import random

import click
from flask import Flask

from feed import runtime, writes

from .bakery import BreadType, Notification, ProductionLog, SalesLog, ShiftFeedback
from .base import db

BREADS = [
    ("Sourdough", 6.50),
    ("Baguette", 3.20),
    ("Rye", 5.10),
    ("Brioche", 7.80),
    ("Ciabatta", 4.40),
    ("Whole Wheat", 4.90),
]
STAFF = ["ana", "ben", "chloe", "dev"]
NOTES = [
    ("morning", "Oven 2 ran hot; watched the crusts closely.", 3),
    ("morning", "Queue out the door at 8, baguettes gone by 9.", 4),
    ("afternoon", "Quiet after lunch, good time to prep dough.", 4),
]


def seed(rng: random.Random | None = None) -> bool:
    """Fill an empty database with a day of bakery activity; return False if it had data."""
    rng = rng or random.Random(7)
    if db.session.query(BreadType.id).first() is not None:
        return False
    with writes.transaction(runtime(), mutation="seed") as session:
        breads = [BreadType(name=name, price=price, active=True) for name, price in BREADS]
        session.add_all(breads)
        session.flush()
        for bread in breads:
            for shift in ("morning", "afternoon"):
                baked = rng.randint(30, 60)
                session.add(
                    ProductionLog(
                        bread_type_id=bread.id,
                        quantity=baked,
                        shift=shift,
                        recorded_by=rng.choice(STAFF),
                    )
                )
                for _ in range(rng.randint(2, 5)):
                    session.add(
                        SalesLog(
                            bread_type_id=bread.id,
                            quantity=rng.randint(1, 6),
                            unit_price=bread.price,
                            shift=shift,
                            recorded_by=rng.choice(STAFF),
                        )
                    )
        for shift, note, mood in NOTES:
            session.add(ShiftFeedback(shift=shift, note=note, mood=mood, recorded_by="ana"))
        session.add(Notification(level="success", title="Bakery open", body="Ovens are warm."))
    return True


def register_cli(app: Flask) -> None:
    """Add `flask init-db` and `flask seed`."""

    @app.cli.command("init-db")
    def init_db_command():
        """Create missing tables."""
        db.create_all()
        click.echo("tables ready")

    @app.cli.command("seed")
    def seed_command():
        """Create missing tables and seed the demo when the database is empty."""
        db.create_all()
        click.echo("demo seeded" if seed() else "database already has data; left as it is")
