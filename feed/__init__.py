"""Tidings' change-feed engine: capture, log, bus, hub and delivery, with no routes."""

from .errors import ApiError
from .extension import Feed, FeedRuntime, runtime
from .live import LiveMixin

__all__ = ["ApiError", "Feed", "FeedRuntime", "LiveMixin", "runtime"]
