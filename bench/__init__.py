"""Tidings benchmarks: real gunicorn, real valkey, real SQLite, load from a separate process."""
