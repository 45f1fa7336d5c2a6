"""Fixtures of the fast layer: a temp-file SQLite engine and the log on it, no services."""

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, settings

from feed.log import EventLog

from .model import Base

# No example database in the tree; no deadline nor generation-speed check, which measure wall
# time on a machine shared by several runs.
settings.register_profile(
    "unit", database=None, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("unit")


@pytest.fixture
def engine(tmp_path):
    """A SQLite file of this test's own, with the test-only model's table."""
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'unit.db'}")
    Base.metadata.create_all(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def log(engine):
    """The events table on its own metadata, created in the test's database."""
    log = EventLog(sa.MetaData())
    log.table.metadata.create_all(engine)
    # Epoch 0, as a log from before epochs: ids count from 1, which these tests read easily.
    with engine.begin() as conn:
        conn.execute(log.meta.update().values(epoch=0))
    return log
