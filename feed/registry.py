"""The table registry: which live tables and custom topics an app has, and their names."""

from collections.abc import Iterable, Mapping

from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import event as sa_event
from sqlalchemy.orm import Mapper

from .credentials import TOPIC as CREDENTIALS_TOPIC
from .errors import ApiError
from .live import LiveTable, is_live, live_table
from .policy import Policy, TopicPolicies, table_policy

# Custom topics every Tidings app has.
BUILTIN_TOPICS = ("presence", "monitor")
# Topics only the server appends to and reads: no subscription or publish names them.
INTERNAL_TOPICS = (CREDENTIALS_TOPIC,)
# Names under /api/ that are routes, so no live table may take them.
RESERVED_NAMES = frozenset({"tables", "changes", "batch", "publish"})


class _Mappers:
    """How many mappers SQLAlchemy has made in this process: the registry looks again for
    live models only when it moved (counting a registry's mappers builds a set each time,
    and every request asks for the tables several times)."""

    made = 0


@sa_event.listens_for(Mapper, "after_mapper_constructed")
def _mapper_made(_mapper, _class) -> None:
    _Mappers.made += 1


def check_names(tables: Iterable[str], custom_topics: Iterable[str]) -> None:
    """Refuse live table names that a fixed /api/ route or a custom topic already takes."""
    clashes = set(tables) & (RESERVED_NAMES | set(custom_topics))
    if clashes:
        raise RuntimeError(
            f"live table names {sorted(clashes)} clash with fixed /api/ routes or custom "
            "topics; rename them"
        )


class Registry:
    """The live models of one database and the declared custom topics."""

    def __init__(
        self,
        db: SQLAlchemy,
        topics: tuple[str, ...],
        topic_policies: TopicPolicies,
        config: Mapping,
    ):
        self.db = db
        self.topics = topics
        self.topic_policies = topic_policies
        self.config = config
        self._tables: dict[str, LiveTable] = {}
        self._tables_seen = 0
        # A name clash is a configuration error: refuse to start rather than misroute.
        self._load()

    @property
    def custom_topics(self) -> tuple[str, ...]:
        """Return the declared custom topics: the feed's own and those of TOPICS."""
        return self.topics + tuple(self.config["TOPICS"])

    @property
    def tables(self) -> dict[str, LiveTable]:
        """Return the live tables by name, noticing models defined since the last call."""
        if _Mappers.made != self._tables_seen:
            self._load()
        return self._tables

    def _load(self) -> None:
        """Describe the live models and check their names."""
        mappers = self.db.Model.registry.mappers
        models = (m.class_ for m in mappers if is_live(m.class_))
        tables = {table.name: table for table in map(live_table, models)}
        check_names(tables, self.custom_topics + INTERNAL_TOPICS)
        self._tables, self._tables_seen = tables, _Mappers.made

    def table(self, name: str) -> LiveTable:
        """Return a live table by name, or raise a 404 naming it."""
        table = self.tables.get(name)
        if table is None:
            message = f"There is no live table {name!r}."
            raise _unknown(404, "table", name, sorted(self.tables), message)
        return table

    def policy(self, name: str) -> Policy:
        """Return the policy of a live table or a custom topic."""
        table = self.tables.get(name)
        if table is not None:
            return table_policy(table.model)
        return self.topic_policies.policy(name)

    def topic(self, name: str) -> str:
        """Return a declared custom topic, or raise a 400 naming the declared ones."""
        # Table names never equal custom topics (checked at startup), so tables are refused.
        if name not in self.custom_topics:
            message = (
                f"{name!r} is not a declared custom topic (tables change through their own API)."
            )
            raise _unknown(400, "topic", name, list(self.custom_topics), message)
        return name


def _unknown(status: int, kind: str, name: str, known: list[str], message: str) -> ApiError:
    """Return the error for a name that is not one of the known tables or topics."""
    return ApiError(status, f"unknown_{kind}", message, {kind: name, f"{kind}s": known})
