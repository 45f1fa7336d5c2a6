"""A stream client that moves between servers the way a client behind a proxy does."""

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import requests

from .delivery_tools import Follower
from .sse import SseStream


@dataclass
class End:
    """How one connection ended: cleanly or cut, and the `retry:` its last block carried."""

    url: str
    clean: bool
    retry: int | None
    at: float


class Roamer(Follower):
    """Follow a subscription from a cursor, reconnecting with Last-Event-ID to whatever
    server `pick()` names (None: wait), after the `retry:` a clean end asked for.

    It records every change, every end, and the server it is on (`url`, None between
    connections), until its cursor reaches `target`.
    """

    def __init__(self, pick: Callable[[], str | None], query: str, cursor: int, deadline: float):
        super().__init__(None, query, cursor, seed=0, deadline=deadline, drops=False)
        self.pick = pick
        self.ready = threading.Event()
        self.ends: list[End] = []

    def run(self) -> None:
        try:
            while not self.done() and time.monotonic() < self.deadline:
                url = self.pick()
                if url is None:
                    time.sleep(0.02)
                    continue
                retry = self.follow(url)
                if retry is not None:
                    time.sleep(retry / 1000)
        except BaseException as exc:  # reported by the test thread
            self.error = exc

    def follow(self, url: str) -> int | None:
        """Read one connection to its end; return the ms to wait before the next: the
        `retry:` of a clean end's last block, or a refusal's Retry-After."""
        retry = None
        try:
            stream = SseStream(url, self.query, last_event_id=self.last_id, timeout=10)
        except requests.ConnectionError:
            time.sleep(0.05)
            return None
        except requests.HTTPError as refused:
            # A draining or full server asks to wait; anything else is the test's failure.
            if refused.response.status_code != 503:
                raise
            return int(refused.response.headers["Retry-After"]) * 1000
        self.url = url
        clean = False
        try:
            with stream:
                for block in stream.blocks:
                    retry = block.retry
                    if block.id is not None:
                        self.last_id = block.id
                    if block.event == "change":
                        self.events.append(block.json())
                    elif block.event == "ready":
                        self.ready.set()
                    if self.done():
                        return None
                clean = True
        except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError):
            pass
        finally:
            self.url = None
        self.ends.append(End(url, clean, retry, time.monotonic()))
        return retry if clean else None
