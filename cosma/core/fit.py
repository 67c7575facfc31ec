"""Best fit: the one placement rule of TFLite's arena planner and XLA's heap simulator.

Every packer (``cosma.packing``), the exact solver's packing checks and the prefetch pass's
relocations (``cosma.core.prefetch``) place a block with it.
"""

from __future__ import annotations

from typing import Iterable


def best_fit(
    busy: Iterable[tuple[int, int]], size: int, *, alignment: int = 1, capacity: int | None = None, first: bool = False
) -> int | None:
    """The offset for a block of ``size`` beside the ``busy`` address ranges ``[lo, hi)``
    (the blocks placed already that are alive at the same time).

    Best fit: the smallest free gap that holds the block, the lowest on ties (``first``:
    the lowest gap that holds it). Gap starts are rounded up to ``alignment``. The space
    above every busy range is a gap too, up to ``capacity``: with no capacity it is
    unbounded, so the block goes there only when no gap below fits. None: nothing fits
    under the capacity.
    """
    top = float("inf") if capacity is None else capacity
    chosen: int | None = None
    chosen_gap: float | None = None
    reach = 0  # lowest byte above every busy range seen so far
    for lo, hi in sorted(busy, key=lambda span: span[0]) + [(top, top)]:
        start = -(-reach // alignment) * alignment
        if lo - start >= size and (chosen_gap is None or lo - reach < chosen_gap):
            chosen, chosen_gap = start, lo - reach
            if first:
                break
        reach = max(reach, hi)
    return chosen


__all__ = ["best_fit"]
