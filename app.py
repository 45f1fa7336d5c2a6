"""The application factory."""

import logging
import os

from flask import Flask
from flask_migrate import Migrate

import config as settings
from blueprints import (
    api,
    auth,
    cors,
    dashboard,
    errors,
    headers,
    monitor,
    observe,
    openapi,
    ops,
    ratelimit,
    stream,
)
from identity import access, sessions
from identity.cli import register_cli as register_users_cli
from models import db, feed
from models.seed import register_cli


def create_app(config: dict | None = None) -> Flask:
    """Create the Tidings app; `config` overrides settings read from the environment."""
    app = Flask(__name__, instance_relative_config=True)
    os.makedirs(app.instance_path, exist_ok=True)
    app.config.from_mapping(settings.from_environment(app.instance_path))
    if config:
        app.config.update(config)
    logging.basicConfig(level=os.environ.get("LOG_LEVEL", "INFO"))
    app.session_interface = sessions.NoFlaskSession()
    db.init_app(app)
    feed.init_app(app)
    # `flask db upgrade` migrates the app's tables; the feed creates its own at start.
    Migrate(
        app,
        db,
        directory=os.path.join(app.root_path, "migrations"),
        render_as_batch=True,
        include_object=feed.include_object,
    )
    errors.init_app(app)
    observe.init_app(app)
    headers.init_app(app)
    # Before the access gate: a preflight carries no credentials.
    cors.init_app(app)
    access.init_app(app)
    # After `access.admit`: limits count per principal, and what it refuses counts nowhere.
    ratelimit.init_app(app)
    app.register_blueprint(stream.bp)
    app.register_blueprint(auth.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(ops.bp)
    app.register_blueprint(monitor.bp)
    app.register_blueprint(dashboard.bp)
    app.register_blueprint(openapi.bp)
    register_cli(app)
    register_users_cli(app)
    return app
