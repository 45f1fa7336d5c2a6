"""The shared filter cases of tests/filter_cases.json, which server and browser tests both run."""

import json
from pathlib import Path

from flask import Flask

from feed import runtime, writes

CASES = json.loads((Path(__file__).parent / "filter_cases.json").read_text(encoding="utf-8"))


def case_id(case: dict) -> str:
    """Name a shared case by its query parameter."""
    return f"{case['table']}.{case['column']}={case['filter']}"


def insert_rows(app: Flask) -> dict[str, list[int]]:
    """Write the shared rows as the app itself (so recorded_by and the audit log hold what
    the file says); return their ids by table, in file order."""
    ids: dict[str, list[int]] = {}
    with app.app_context():
        for table, rows in CASES["rows"].items():
            extra = {"bread_type_id": ids["bread_types"][0]} if table == "sales_logs" else {}
            ids[table] = [
                writes.write(runtime(), "POST", table, body=row | extra)[1]["row"]["id"]
                for row in rows
            ]
    return ids
