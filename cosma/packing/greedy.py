"""Allocation-only baselines: offsets for buffers whose lifetimes are fixed.

The scratchpad-allocation subproblem on its own (``cosma.packing.PackingProblem``, the
MiniMalloc CSV format), solved the way production compilers do, with no search:

* ``best-fit``: XLA's heap simulator (``GlobalDecreasingSizeBestFitHeap``). Buffers are
  placed one at a time, each in the smallest free gap among the already placed buffers
  alive at the same time (on top of them if no gap fits). It runs twice, once with the
  buffers sorted by size (XLA's "spatial" order) and once by lifetime length ("temporal"
  order), and keeps the lower height, as XLA does.
* ``greedy-by-size``: TFLite Micro's ``GreedyMemoryPlanner`` and TVM's greedy-by-size
  planner: largest buffer first, each at the lowest offset where it fits among the
  buffers already placed that overlap it in time (first fit from the bottom).

Neither looks at the capacity while placing: they report the height reached and whether
it fits (``PackResult.fits``). ``cosma.packing.check_packing`` is the independent check.
"""

from __future__ import annotations

import time
from typing import Callable, Iterable, Sequence

from cosma.core.interface import Status
from cosma.packing.problem import Buffer, BufferId, PackingProblem, PackResult, height
from cosma.packing.problem import best_fit as place


def _place(buffers: Sequence[Buffer], alignment: int, best_fit: bool) -> dict[BufferId, int]:
    """Place ``buffers`` in the given order, each beside the placed buffers that overlap it
    in time: the smallest gap that fits (``best_fit``) or the lowest, else on top of them."""
    placed: list[tuple[Buffer, int]] = []
    offsets: dict[BufferId, int] = {}
    for b in buffers:
        busy = [(o, o + p.size) for p, o in placed if p.lower < b.upper and b.lower < p.upper]
        offsets[b.id] = place(busy, b.size, alignment=alignment, first=not best_fit)
        placed.append((b, offsets[b.id]))
    return offsets


def _by_size(buffers: Iterable[Buffer]) -> list[Buffer]:
    """Decreasing size, then longer lifetime, then earlier start (XLA's spatial order)."""
    return sorted(buffers, key=lambda b: (-b.size, -(b.upper - b.lower), b.lower, b.id))


def _by_duration(buffers: Iterable[Buffer]) -> list[Buffer]:
    """Decreasing lifetime length, then larger size, then earlier start (XLA's temporal order)."""
    return sorted(buffers, key=lambda b: (-(b.upper - b.lower), -b.size, b.lower, b.id))


def _result(problem: PackingProblem, offsets: dict[BufferId, int], start: float, order: str) -> PackResult:
    h = height(problem, offsets)
    status = Status.OPTIMAL if h <= problem.capacity else Status.FEASIBLE  # over the capacity: no proof it can't fit
    return PackResult(status, offsets, h, time.perf_counter() - start, order=order)


def pack_best_fit(problem: PackingProblem) -> PackResult:
    """XLA heap simulator: best fit in size order and in duration order; the lower height wins."""
    start = time.perf_counter()
    tries = []
    for order, sort in (("size", _by_size), ("duration", _by_duration)):
        offsets = _place(sort(problem.buffers), problem.alignment, best_fit=True)
        tries.append((height(problem, offsets), order, offsets))
    h, order, offsets = min(tries, key=lambda x: x[0])  # min is stable: size order on ties
    return _result(problem, offsets, start, order)


def pack_greedy_by_size(problem: PackingProblem) -> PackResult:
    """TFLite Micro / TVM greedy by size: largest first, lowest offset that fits."""
    start = time.perf_counter()
    offsets = _place(_by_size(problem.buffers), problem.alignment, best_fit=False)
    return _result(problem, offsets, start, "size")


# Packer name -> function, as ``cosma pack --solver NAME`` uses them.
PACKERS: dict[str, Callable[[PackingProblem], PackResult]] = {
    "best-fit": pack_best_fit,
    "greedy-by-size": pack_greedy_by_size,
}


__all__ = ["PackResult", "PACKERS", "pack_best_fit", "pack_greedy_by_size"]
