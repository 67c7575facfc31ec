"""What every benchmark command shares: where it writes its table (a partial run, on a
subset of the models, sizes or solvers, never overwrites the tracked full table in
``results/`` unless asked), and how it runs its independent cells (here, one after the
other, or as Ray tasks, one CPU each, on a local Ray or a cluster)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


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


def map_cells(fn: Callable[[T], R], items: Iterable[T], ray: str | None = None, cpus: int = 2) -> Iterator[R]:
    """``fn(item)`` for every item: here in order (``ray`` None), or as Ray tasks of one CPU
    each (``ray``: ``cosma.core.distributed.LOCAL`` for a local Ray with ``cpus`` CPUs, or a
    cluster's address), yielded as they finish. ``fn`` must be a module-level function and
    its items picklable; Ctrl-C cancels the tasks still out."""
    if ray is None:
        yield from map(fn, items)
        return
    from cosma.core.distributed import ray_session

    with ray_session(ray, cpus) as ray_module:
        task = ray_module.remote(num_cpus=1)(fn)
        pending = [task.remote(item) for item in items]
        try:
            while pending:
                ready, pending = ray_module.wait(pending, num_returns=1)
                yield ray_module.get(ready[0])
        finally:
            for ref in pending:
                ray_module.cancel(ref, force=True)


def add_ray_option(parser, cells: str, local: str) -> None:
    """The ``--ray [ADDRESS]`` option every sweep shares: ``cells`` names what runs as tasks,
    ``local`` how many CPUs a local Ray gets."""
    parser.add_argument(
        "--ray",
        nargs="?",
        const="local",
        default=None,
        metavar="ADDRESS",
        help=f"run the {cells} as Ray tasks: alone, on a local Ray with {local}; with an ADDRESS (auto,"
        " ray://head:10001), on that running cluster, whose nodes have cosma installed",
    )


__all__ = ["output_path", "map_cells", "add_ray_option"]
