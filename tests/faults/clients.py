"""Clients for fault scenarios: transport switchers, timed followers, writers that ride out
outages."""

import datetime as dt
import threading
import time

import requests

from ..delivery_tools import OUTAGES, Follower, Writer


class Switcher(Follower):
    """A Follower that, on each reconnection, long-polls `/api/changes` instead of streaming
    with probability `poll_share` (1: a pure poller), carrying its cursor across."""

    def __init__(self, *args, poll_share: float = 0.5, **kwargs):
        super().__init__(*args, **kwargs)
        self.poll_share = poll_share
        self.polls = 0
        # A long poll answers within `wait`; the read timeout must outlast it.
        self.wait = max(0.0, min(5.0, self.timeout - 2))
        self.http = requests.Session()
        self.http.headers.update(self.headers)

    def follow_once(self) -> None:
        if self.rng.random() < self.poll_share:
            self.poll_once()
        else:
            super().follow_once()

    def poll_once(self) -> None:
        """Long-poll a few times from the cursor, as a client without SSE would."""
        for _ in range(self.rng.randint(1, 6)):
            if self.done():
                return
            self.polls += 1
            response = self.http.get(
                f"{self.url}/api/changes?{self.query}",
                params={
                    "cursor": self.last_id,
                    "wait": self.wait,
                    "limit": self.rng.choice((50, 500)),
                },
                timeout=self.timeout,
            )
            if response.status_code == 410:
                self.resets.append(response.json()["reset"])
                self.last_id = str(response.json()["reset"]["cursor"])
                continue
            if response.status_code == 503:
                raise requests.ConnectionError("503 from the server")
            assert response.status_code == 200, response.text
            body = response.json()
            self.events.extend(body["events"])
            self.last_id = str(body["cursor"])


class Arrivals(list):
    """A list of events that notes when each was appended (time.time())."""

    def __init__(self):
        super().__init__()
        self.times: list[float] = []

    def append(self, event: dict) -> None:
        self.times.append(time.time())
        super().append(event)

    def latencies(self) -> list[float]:
        """Return each event's seconds from its commit (`at`) to its arrival."""
        return [
            arrived - dt.datetime.fromisoformat(event["at"]).timestamp()
            for event, arrived in zip(self, self.times, strict=True)
        ]


def timed(follower: Follower) -> Follower:
    """Make a follower note when each event arrives (`follower.events.latencies()`)."""
    follower.events = Arrivals()
    return follower


class Writing:
    """Writers committing random changes in threads until stopped, riding out outages (a
    write whose answer was lost may or may not have committed: the log says which)."""

    def __init__(
        self, url: str, bread_types: list[int], *, threads: int = 2, pause: float = 0.0, **options
    ):
        self.pause = pause
        self.writers = [Writer(url, bread_types, seed=100 + n, **options) for n in range(threads)]
        self.stopping = threading.Event()
        self.outages = 0
        self.threads = [threading.Thread(target=self._run, args=(w,)) for w in self.writers]
        for thread in self.threads:
            thread.start()

    def _run(self, writer: Writer) -> None:
        while not self.stopping.is_set():
            try:
                writer.step()
                time.sleep(self.pause)
            except OUTAGES:
                self.outages += 1
                time.sleep(0.1)

    def count(self) -> int:
        """Return how many writes were acknowledged so far."""
        return sum(len(w.written) for w in self.writers)

    def stop(self) -> int:
        """Stop writing; return how many writes were acknowledged."""
        self.stopping.set()
        for thread in self.threads:
            thread.join(timeout=60)
            assert not thread.is_alive(), "a writer hung"
        for writer in self.writers:
            writer.close()
        return self.count()
