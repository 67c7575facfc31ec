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
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

from cosma.packing.problem import Buffer, BufferId, PackingProblem, height


@dataclass(frozen=True)
class PackResult:
    offsets: dict[BufferId, int]  # buffer id -> byte offset (aligned)
    height: int  # highest byte used + 1: max over buffers of offset + size
    fits: bool  # height <= capacity
    seconds: float  # wall time of the packer
    order: str = ""  # which buffer order produced these offsets (best-fit keeps the better of two)


def _align_up(x: int, a: int) -> int:
    return -(-x // a) * a


def _place(buffers: Sequence[Buffer], alignment: int, best_fit: bool) -> dict[BufferId, int]:
    """Place ``buffers`` in the given order; each goes into a free gap among the placed
    buffers that overlap it in time: the smallest that fits (``best_fit``) or the
    lowest that fits, else on top of them. Gap starts are rounded up to ``alignment``."""
    placed: list[tuple[Buffer, int]] = []
    offsets: dict[BufferId, int] = {}
    for b in buffers:
        busy = sorted(
            ((o, o + p.size) for p, o in placed if p.lower < b.upper and b.lower < p.upper),
            key=lambda span: span[0],
        )
        chosen: int | None = None
        chosen_gap: int | None = None
        reach = 0  # lowest byte above every busy span seen so far
        for lo, hi in busy:
            start = _align_up(reach, alignment)
            if lo - start >= b.size:
                gap = lo - reach
                if chosen is None or (best_fit and gap < chosen_gap):
                    chosen, chosen_gap = start, gap
                if not best_fit:
                    break
            reach = max(reach, hi)
        if chosen is None:
            chosen = _align_up(reach, alignment)
        offsets[b.id] = chosen
        placed.append((b, chosen))
    return offsets


def _by_size(buffers: Iterable[Buffer]) -> list[Buffer]:
    """Decreasing size, then longer lifetime, then earlier start (XLA's spatial order)."""
    return sorted(buffers, key=lambda b: (-b.size, -(b.upper - b.lower), b.lower, b.id))


def _by_duration(buffers: Iterable[Buffer]) -> list[Buffer]:
    """Decreasing lifetime length, then larger size, then earlier start (XLA's temporal order)."""
    return sorted(buffers, key=lambda b: (-(b.upper - b.lower), -b.size, b.lower, b.id))


def _result(problem: PackingProblem, offsets: dict[BufferId, int], start: float, order: str) -> PackResult:
    h = height(problem, offsets)
    return PackResult(offsets, h, h <= problem.capacity, time.perf_counter() - start, order)


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
