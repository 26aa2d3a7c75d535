"""Printing: exactly one JSON document with --json, otherwise rich tables."""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console
from rich.table import Table

# Piped output (make demo, CI logs) gets a readable width instead of rich's 80-column default.
console = Console(width=None if sys.stdout.isatty() else 132)


def emit_json(obj: Any) -> None:
    print(json.dumps(obj, indent=2, sort_keys=True))


def table(title: str | None, columns: list[str], rows: list[list[Any]]) -> None:
    t = Table(title=title)
    for c in columns:
        t.add_column(c)
    for r in rows:
        t.add_row(*["" if v is None else str(v) for v in r])
    console.print(t)
