"""Packing fixed-lifetime boxes: the allocation subproblem inside the exact solver.

Once the keep/evict decisions are fixed, every residency is a box with a fixed step
interval ``[lo, hi)`` and a fixed height (its footprint, in alignment units); only its
offset is free. This module answers "do these boxes fit under the capacity?":

1. greedy best fit in a few orders (the TFLite arena idea), which settles nearly every
   instance with slack in microseconds;
2. the project's exact packer (``cosma.packing.exact``);
3. when it runs out of time, a CP-SAT model (y offsets under no-overlap-2D with the time intervals
   fixed, plus a cumulative on the time axis), which also proves infeasibility.

Heights, offsets and the capacity are all in alignment units here: the caller scales.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Sequence

from ortools.sat.python import cp_model

from cosma.core.cpsat import keep_sigint_handler, solve_interruptibly
from cosma.core.interface import Status
from cosma.packing.exact import PackParams, pack
from cosma.packing.problem import Buffer, PackingProblem, best_fit


@dataclass(frozen=True)
class Box:
    lo: int  # first step occupied
    hi: int  # one past the last step occupied (half-open)
    height: int  # footprint in alignment units, > 0


@dataclass
class PackOutcome:
    status: Status  # OPTIMAL: packed; INFEASIBLE: proven not to fit; TIMEOUT: ran out of time
    offsets: list[int] | None  # one per box, in alignment units, when PACKED
    how: str = ""  # which method settled it ("greedy", "packer", "cp-sat")


def greedy_pack(boxes: Sequence[Box], capacity: int, deadline: float | None = None) -> list[int] | None:
    """Best-fit placement in several orders; the first order that places every box wins.

    Each box goes into the smallest free address gap (among boxes already placed that
    overlap it in time) that holds it, lowest offset on ties. None when no order places
    every box, or when ``deadline`` (``time.perf_counter()``) passes first.
    """
    n = len(boxes)
    orders = (
        sorted(range(n), key=lambda i: (-boxes[i].height, boxes[i].lo, -boxes[i].hi)),
        sorted(range(n), key=lambda i: (-(boxes[i].hi - boxes[i].lo), -boxes[i].height, boxes[i].lo)),
        sorted(range(n), key=lambda i: (-boxes[i].height * (boxes[i].hi - boxes[i].lo), boxes[i].lo)),
        sorted(range(n), key=lambda i: (boxes[i].lo, -boxes[i].hi, -boxes[i].height)),
    )
    for order in orders:
        offsets = _place_in_order(boxes, capacity, order, deadline)
        if offsets is not None:
            return offsets
    return None


# Boxes placed so far are indexed by blocks of steps, about this many blocks in all: a box
# then meets only the boxes in its own blocks, not every box placed (56k boxes of a 20k-operator
# transformer stack took 67 s to place with a scan of every placed box, under 1 s this way).
_TIME_BLOCKS = 4096


def _place_in_order(
    boxes: Sequence[Box], capacity: int, order: Sequence[int], deadline: float | None = None
) -> list[int] | None:
    offsets: list[int | None] = [None] * len(boxes)
    lo = min((b.lo for b in boxes), default=0)
    width = max(1, -(-(max((b.hi for b in boxes), default=1) - lo) // _TIME_BLOCKS))
    blocks: dict[int, list[int]] = {}
    for count, i in enumerate(order):
        if deadline is not None and count % 256 == 255 and time.perf_counter() > deadline:
            return None
        b = boxes[i]
        span = range((b.lo - lo) // width, (b.hi - 1 - lo) // width + 1)
        near = {j for k in span for j in blocks.get(k, ())}
        busy = [(offsets[j], offsets[j] + boxes[j].height) for j in near if boxes[j].lo < b.hi and b.lo < boxes[j].hi]
        offsets[i] = best_fit(busy, b.height, capacity=capacity)
        if offsets[i] is None:
            return None
        for k in span:
            blocks.setdefault(k, []).append(i)
    return offsets  # type: ignore[return-value]


def cpsat_pack(
    boxes: Sequence[Box], capacity: int, time_limit: float | None, threads: int = 1, hint: Sequence[int] | None = None
) -> PackOutcome:
    """Exact packing with CP-SAT: offsets under no-overlap-2D, time intervals fixed."""
    model = cp_model.CpModel()
    ys, x_iv, y_iv = [], [], []
    for i, b in enumerate(boxes):
        if b.height > capacity:
            return PackOutcome(Status.INFEASIBLE, None, "cp-sat")
        y = model.new_int_var(0, capacity - b.height, f"y{i}")
        ys.append(y)
        x_iv.append(model.new_fixed_size_interval_var(b.lo, b.hi - b.lo, f"x{i}"))
        y_iv.append(model.new_fixed_size_interval_var(y, b.height, f"yi{i}"))
    model.add_no_overlap_2d(x_iv, y_iv)
    model.add_cumulative(x_iv, [b.height for b in boxes], capacity)
    if hint is not None:
        for y, v in zip(ys, hint):
            model.add_hint(y, v)
    solver = cp_model.CpSolver()
    solver.parameters.num_workers = max(1, threads)
    if time_limit is not None:
        solver.parameters.max_time_in_seconds = max(0.01, time_limit)
    status = solve_interruptibly(solver, model)
    if status in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return PackOutcome(Status.OPTIMAL, [solver.value(y) for y in ys], "cp-sat")
    if status == cp_model.INFEASIBLE:
        return PackOutcome(Status.INFEASIBLE, None, "cp-sat")
    return PackOutcome(Status.TIMEOUT, None, "cp-sat")


def _exact_pack(boxes: Sequence[Box], capacity: int, time_limit: float | None) -> PackOutcome:
    """The project's exact packer (``cosma.packing.exact``) on the boxes as buffers."""
    problem = PackingProblem(tuple(Buffer(str(i), b.lo, b.hi, b.height) for i, b in enumerate(boxes)), capacity)
    with keep_sigint_handler():
        result = pack(problem, PackParams(), time_limit, None)
    if "interrupted" in result.message:
        raise KeyboardInterrupt  # the packer caught Ctrl-C: hand it on to the caller
    if result.fits:
        return PackOutcome(Status.OPTIMAL, [int(result.offsets[str(i)]) for i in range(len(boxes))], "packer")
    return PackOutcome(Status.INFEASIBLE if result.status is Status.INFEASIBLE else Status.TIMEOUT, None, "packer")


def pack_boxes(
    boxes: Sequence[Box], capacity: int, time_limit: float | None, threads: int = 1, use_packer: bool = True
) -> PackOutcome:
    """Greedy first, then an exact method; see the module docstring."""
    if not boxes:
        return PackOutcome(Status.OPTIMAL, [], "trivial")
    if max(b.height for b in boxes) > capacity or _max_load(boxes) > capacity:
        return PackOutcome(Status.INFEASIBLE, None, "load")
    start = time.perf_counter()
    offsets = greedy_pack(boxes, capacity, None if time_limit is None else start + time_limit)
    if offsets is not None:
        return PackOutcome(Status.OPTIMAL, offsets, "greedy")
    if time_limit is not None and time.perf_counter() - start > time_limit:
        return PackOutcome(Status.TIMEOUT, None, "greedy")
    if use_packer:
        outcome = _exact_pack(boxes, capacity, time_limit)
        if outcome.status is not Status.TIMEOUT:
            return outcome
    remaining = None if time_limit is None else max(0.01, time_limit - (time.perf_counter() - start))
    return cpsat_pack(boxes, capacity, remaining, threads)


def _max_load(boxes: Sequence[Box]) -> int:
    events = sorted([(b.lo, b.height) for b in boxes] + [(b.hi, -b.height) for b in boxes], key=lambda e: (e[0], e[1]))
    load = best = 0
    for _, d in events:
        load += d
        best = max(best, load)
    return best


__all__ = ["Box", "PackOutcome", "greedy_pack", "cpsat_pack", "pack_boxes"]
