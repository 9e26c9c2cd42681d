"""Benchmarks that print measured figures; `--save` keeps a dated copy in bench/results/."""

from __future__ import annotations

import datetime as dt
from pathlib import Path


def report(lines: list[str], name: str, save: bool) -> None:
    """Print a benchmark's lines, and with `save` write them to results/<date>-<name>.txt."""
    print("\n".join(lines))
    if save:
        path = Path(__file__).parent / "results" / f"{dt.date.today()}-{name}.txt"
        path.write_text("\n".join(lines) + "\n")
