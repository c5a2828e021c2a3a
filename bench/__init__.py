"""Side-by-side benchmarks: ``python -m bench [name ...]``.

Every module ``bench/<name>.py`` whose name has no leading underscore is a benchmark: it
exposes ``run() -> list[Row]`` and may print notes (what it measured, how) while it runs.
``python -m bench`` runs them all and prints one table; ``python -m bench http`` runs one.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from typing import NamedTuple

REFERENCE_IMPL = "sandbox"


class Row(NamedTuple):
    scenario: str
    impl: str
    value: float
    unit: str


def available() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))


def load(name: str) -> Callable[[], list[Row]]:
    return importlib.import_module(f"{__name__}.{name}").run


def format_table(rows: list[Row]) -> str:
    """One line per row; every other impl of a scenario gets the ratio sandbox / impl."""
    reference = {r.scenario: r.value for r in rows if r.impl == REFERENCE_IMPL}
    lines = [("scenario", "impl", "value", "unit", f"{REFERENCE_IMPL} / impl")]
    for row in rows:
        ratio = ""
        if row.impl != REFERENCE_IMPL and row.value and row.scenario in reference:
            ratio = f"{reference[row.scenario] / row.value:.2f}x"
        lines.append((row.scenario, row.impl, f"{row.value:,.1f}", row.unit, ratio))
    widths = [max(len(line[i]) for line in lines) for i in range(5)]
    return "\n".join(
        "  ".join(
            cell.rjust(width) if i in (2, 4) else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(line, widths, strict=True))
        ).rstrip()
        for line in lines
    )
