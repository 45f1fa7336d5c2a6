"""The shared filter cases of tests/filter_cases.json, which server and browser tests both run."""

import json
from collections.abc import Callable
from pathlib import Path

CASES = json.loads((Path(__file__).parent / "filter_cases.json").read_text(encoding="utf-8"))


def case_id(case: dict) -> str:
    """Name a shared case by its query parameter."""
    return f"{case['table']}.{case['column']}={case['filter']}"


def insert_rows(post: Callable[[str, dict], dict]) -> dict[str, list[int]]:
    """Write the shared rows with `post(path, body)`, which returns the created row; return
    their ids by table, in file order."""
    ids: dict[str, list[int]] = {}
    for table, rows in CASES["rows"].items():
        extra = {"bread_type_id": ids["bread_types"][0]} if table == "sales_logs" else {}
        ids[table] = [post(f"/api/{table}", row | extra)["id"] for row in rows]
    return ids
