"""Alembic's environment for Flask-Migrate: the app's engine and metadata, its options."""

from alembic import context
from flask import current_app

from models import schema

migrate = current_app.extensions["migrate"]
target_metadata = migrate.db.metadata


def run_migrations_offline() -> None:
    """Write the migrations' SQL for the app's database URL instead of running them."""
    url = migrate.db.engine.url.render_as_string(hide_password=False)
    context.configure(
        url=url, target_metadata=target_metadata, literal_binds=True, **migrate.configure_args
    )
    with context.begin_transaction():
        context.run_migrations()


def _skip_empty_autogenerate(_context, _revision, directives) -> None:
    """Write no revision file when autogenerate finds nothing to change."""
    if (
        getattr(context.config.cmd_opts, "autogenerate", False)
        and directives[0].upgrade_ops.is_empty()
    ):
        directives[:] = []


def run_migrations_online() -> None:
    """Run the migrations on the app's engine, after taking in a database made before them."""
    options = {"process_revision_directives": _skip_empty_autogenerate, **migrate.configure_args}
    with migrate.db.engine.connect() as connection:
        context.configure(connection=connection, target_metadata=target_metadata, **options)
        with context.begin_transaction():
            schema.prepare(context.get_context(), context.script)
            context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
