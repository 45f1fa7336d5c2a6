"""Helpers for monitor tests: read figures and metrics from a running server."""

import requests
from prometheus_client.parser import text_string_to_metric_families

from .servers import http


def cache_result(response: requests.Response) -> str:
    """Return "hit" or "miss" from a response's Server-Timing cache entry."""
    for part in response.headers["Server-Timing"].split(","):
        name, *params = part.strip().split(";")
        if name == "cache":
            return dict(p.split("=", 1) for p in params)["desc"].strip('"')
    raise AssertionError("no cache entry in Server-Timing")


def metric_values(base_url: str) -> dict[str, float]:
    """Parse /metrics with prometheus-client's own parser: sample name+labels → value."""
    text = http(base_url).get(f"{base_url}/metrics", timeout=5).text
    values = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            values[f"{sample.name}{{{labels}}}"] = sample.value
    return values


def total(values: dict[str, float], name: str) -> float:
    """Sum every sample of a name, whatever its labels."""
    return sum(v for key, v in values.items() if key.split("{")[0] == name)


def figures(base_url: str) -> dict:
    """Return /monitor.json."""
    response = http(base_url).get(f"{base_url}/monitor.json", timeout=5)
    assert response.status_code == 200
    return response.json()
