"""HTTP blueprints: REST API, streams and polls, operations, the dashboard."""
