"""Print the README's settings table from config.SETTINGS (one source of truth).

    python tools/settings_table.py
"""
from __future__ import annotations

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from config import SETTINGS  # noqa: E402

BEGIN = "<!-- settings-table:begin -->"
END = "<!-- settings-table:end -->"
PIPE = "\\|"  # a literal | inside a table cell


def table() -> str:
    rows = ["| key | default | meaning |", "|---|---|---|"]
    for key, (default, meaning) in SETTINGS.items():
        shown = json.dumps(default, ensure_ascii=False).replace("|", PIPE)
        rows.append(f"| `{key}` | `{shown}` | {meaning.replace('|', PIPE)} |")
    return "\n".join(rows)


def block() -> str:
    return f"{BEGIN}\n{table()}\n{END}"


if __name__ == "__main__":
    print(block())
