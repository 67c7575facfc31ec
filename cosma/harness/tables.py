"""Where a benchmark writes its table: a partial run (a subset of the models, sizes or
solvers) never overwrites the tracked full table in ``results/`` unless asked."""

from __future__ import annotations

import sys
from pathlib import Path


def output_path(out: str | None, default: str | Path, partial: bool, update: bool = False) -> Path:
    """``out`` when given; the tracked ``default`` for a full run or with ``update``; else
    its ``-partial`` twin beside it (``results/exact.md`` -> ``results/exact-partial.md``)."""
    if out:
        return Path(out)
    default = Path(default)
    if not partial or update:
        return default
    twin = default.with_name(f"{default.stem}-partial{default.suffix}")
    print(f"a partial run: writing {twin}, not {default} (--update replaces it)", file=sys.stderr)
    return twin


__all__ = ["output_path"]
