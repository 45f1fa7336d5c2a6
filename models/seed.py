"""Demo data for the bakery, and the `flask seed` command (after `flask db upgrade`)."""

import random

import click
import sqlalchemy as sa
from flask import Flask

from feed import runtime, writes
from identity.demo import seed_users

from .bakery import BreadType, Notification, ProductionLog, SalesLog, ShiftFeedback, Store
from .base import db

BREADS = [
    ("Sourdough", 6.50),
    ("Baguette", 3.20),
    ("Rye", 5.10),
    ("Brioche", 7.80),
    ("Ciabatta", 4.40),
    ("Whole Wheat", 4.90),
]
# Each store: its name, city, who works there, and the notes of its shifts.
STORES = [
    (
        "Harbour Street",
        "Portsmouth",
        ["ana", "ben"],
        [
            ("morning", "Oven 2 ran hot; watched the crusts closely.", 3),
            ("morning", "Queue out the door at 8, baguettes gone by 9.", 4),
        ],
    ),
    (
        "Market Square",
        "Winchester",
        ["chloe", "dev"],
        [
            ("morning", "Market day: sourdough sold out before noon.", 5),
            ("afternoon", "Quiet after lunch, good time to prep dough.", 4),
        ],
    ),
]


def seed(rng: random.Random | None = None) -> bool:
    """Fill an empty database with a day of bakery activity; return False if it had data."""
    rng = rng or random.Random(7)
    if db.session.query(BreadType.id).first() is not None:
        return False
    with writes.transaction(runtime(), mutation="seed") as session:
        breads = [BreadType(name=name, price=price, active=True) for name, price in BREADS]
        session.add_all(breads)
        for store, (_, _, staff, notes) in zip(_stores(session), STORES, strict=False):
            _seed_store(session, rng, store.id, breads, staff, notes)
    return True


def _stores(session) -> list[Store]:
    """Return the demo's stores, adding them when there are none; stores made before (by
    hand, or by the tests) are used as they are."""
    stores = list(session.scalars(sa.select(Store).order_by(Store.id).limit(len(STORES))))
    if not stores:
        stores = [Store(name=name, city=city) for name, city, _, _ in STORES]
        session.add_all(stores)
    session.flush()
    return stores


def _seed_store(session, rng: random.Random, store_id: int, breads, staff, notes) -> None:
    """Add a day of one store's baking, selling and shift notes."""
    for bread in breads:
        for shift in ("morning", "afternoon"):
            session.add(
                ProductionLog(
                    store_id=store_id,
                    bread_type_id=bread.id,
                    quantity=rng.randint(30, 60),
                    shift=shift,
                    recorded_by=rng.choice(staff),
                )
            )
            for _ in range(rng.randint(2, 5)):
                session.add(
                    SalesLog(
                        store_id=store_id,
                        bread_type_id=bread.id,
                        quantity=rng.randint(1, 6),
                        unit_price=bread.price,
                        shift=shift,
                        recorded_by=rng.choice(staff),
                    )
                )
    for shift, note, mood in notes:
        session.add(
            ShiftFeedback(
                store_id=store_id, shift=shift, note=note, mood=mood, recorded_by=staff[0]
            )
        )
    session.add(
        Notification(store_id=store_id, level="success", title="Store open", body="Ovens are warm.")
    )


def seed_demo_users(instance_path: str, password: str | None) -> str:
    """Add the demo users when there are none; return how to sign in as them."""
    with writes.transaction(runtime(), mutation="seed") as session:
        return seed_users(
            session, lambda: [store.id for store in _stores(session)], password, instance_path
        )


def register_cli(app: Flask) -> None:
    """Add `flask seed`."""

    @app.cli.command("seed")
    def seed_command():
        """Seed the demo into a migrated database: its activity when there is none, its
        stores and users when missing; run again, it changes nothing."""
        click.echo("demo seeded" if seed() else "database already has data; left as it is")
        click.echo(seed_demo_users(app.instance_path, app.config["DEMO_PASSWORD"]))
