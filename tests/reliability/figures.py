"""The counts the reliability tests measure, one row per property, merged into one JSON file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

FIGURES_ENV = "RELIABILITY_FIGURES"


class Figures:
    """A JSON file of rows; each test writes its own row (a rerun replaces it)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def record(self, row: str, **counts: Any) -> None:
        rows = self.rows()
        rows[row] = counts
        self.path.write_text(json.dumps(rows, indent=2, sort_keys=True) + "\n")
        print(f"figures[{row}] = {json.dumps(counts, sort_keys=True)}")

    def rows(self) -> dict[str, dict[str, Any]]:
        return json.loads(self.path.read_text()) if self.path.exists() else {}
