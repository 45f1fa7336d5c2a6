"""The one delivery invariant: each client got exactly the log's own answer for its
subscription, read after the fact as the same principal: every event once, in order, no gaps."""

from ..delivery_tools import Follower, changes, ids


def log_answer(url: str, query: str, start: int, headers: dict) -> list[dict]:
    """Return what the log answers a poller of this subscription from cursor 0, after `start`."""
    return [event for event in changes(url, query, 0, headers or None) if event["id"] > start]


def check_delivery(url: str, clients: list[Follower], start: int) -> int:
    """Assert every client reached its target and received exactly its subscription's events
    after `start`; return how many events were checked."""
    answers: dict[tuple[str, str], list[dict]] = {}
    checked = 0
    for client in clients:
        name = f"{client.query} as {client.headers.get('Authorization', 'admin')[:16]}"
        assert client.error is None, f"{name}: {client.error!r}"
        assert client.done(), f"{name} stopped at {client.last_id} of {client.target}"
        assert client.resets == [], name
        key = (client.query, client.headers.get("Authorization", ""))
        if key not in answers:
            answers[key] = log_answer(url, client.query, start, client.headers)
        expected = answers[key]
        got = ids(client.events)
        assert len(set(got)) == len(got), f"{name} received an event twice"
        assert got == sorted(got), f"{name} received events out of order"
        missing = sorted(set(ids(expected)) - set(got))
        assert not missing, f"{name} missed {len(missing)} events, the first {missing[:5]}"
        assert got == ids(expected), f"{name} received events it should not have"
        assert client.events == expected, f"{name} received events unlike the log's"
        checked += len(got)
    return checked
