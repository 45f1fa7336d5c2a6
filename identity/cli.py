"""`flask users create|set-password|list`: manage who may sign in."""

import sys

import click
import sqlalchemy as sa
from flask import Flask
from flask.cli import AppGroup

from feed import runtime
from feed.principal import ROLES
from models import User

from . import accounts


def _password() -> str:
    """Read a password from the terminal (asked twice, hidden) or one line of stdin."""
    if sys.stdin.isatty():
        return click.prompt("Password", hide_input=True, confirmation_prompt=True)
    return sys.stdin.readline().rstrip("\r\n")


def register_cli(app: Flask) -> None:
    """Add the `flask users` commands."""
    users = AppGroup("users", help="Manage the users who may sign in.")

    @users.command("create")
    @click.argument("name")
    @click.option("--role", required=True, type=click.Choice(ROLES))
    @click.option("--store", "store_id", type=int, default=None, help="The user's store id.")
    def create(name: str, role: str, store_id: int | None):
        """Add a user; the password is read from the terminal or stdin."""
        password = _password()
        try:
            with runtime().write() as session:
                user = accounts.create(session, name, password, role, store_id)
                click.echo(f"created user {user.username} ({user.role}) with id {user.id}")
        except accounts.AccountError as error:
            raise click.ClickException(str(error)) from None

    @users.command("set-password")
    @click.argument("name")
    def set_password(name: str):
        """Change a user's password, read from the terminal or stdin."""
        password = _password()
        try:
            with runtime().write() as session:
                if not accounts.set_password(session, name, password):
                    raise click.ClickException(f"there is no user {name!r}")
        except accounts.AccountError as error:
            raise click.ClickException(str(error)) from None
        click.echo(f"password changed for {name}")

    @users.command("list")
    def list_users():
        """Show every user with their role, store and whether they may sign in."""
        with runtime().read() as conn:
            rows = conn.execute(sa.select(User.__table__).order_by(User.id)).all()
        for row in rows:
            store = row.store_id if row.store_id is not None else "-"
            state = "active" if row.active else "inactive"
            click.echo(f"{row.id}\t{row.username}\t{row.role}\tstore {store}\t{state}")

    app.cli.add_command(users)
