"""Prefetch timing as a decision: start loads earlier so their DMA hides behind compute.

The cost model charges a residency's load to the step it starts at (``cosma.core.cost``),
and a step takes ``max(compute, dma / bandwidth)`` cycles. A reload (or a graph input's or
counted weight's first load) that starts at a DMA-bound step costs time there; started at an
earlier, compute-bound step where the tensor's byte range is free, the same copy costs
nothing. XLA's memory-space assignment picks that start time with its prefetch-interval
picker (MISSION.md, "Execution time"); this pass is its analogue on our per-step roofline.

``prefetch(problem, plan)`` keeps the schedule and every byte moved; it moves the ``start`` of
loaded residencies earlier, one step at a time, while

* the tensor is not resident then (at or after the end of its previous residency, hence
  after its spill for an activation),
* some byte range of its footprint is free over the whole new interval: its own offset while
  that is free, else (a load may land anywhere) the best fit among the ranges free from the
  new start to its end; where none is, at one step, one residency blocking it may move to a
  range free over its own whole interval to make room (a residency may sit at any offset free
  over its steps), and earlier starts are not tried,
* and, with ``max_interval``, the residency starts at most that many steps before its
  original start,

and among those starts takes the one with the lowest total roofline latency, the latest
first on ties (so the buffer occupies fast memory no longer than needed): the latest start
that hides the whole copy behind compute when one exists. Loads are taken largest saving
first; each move is judged with the steps' current DMA and occupancy, so later moves see
earlier ones. Offsets change only where a move needs it; the capacity always holds.
The result validates whenever the input does, and its latency is never higher.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from dataclasses import replace
from typing import Any, Callable

from cosma.core.cost import evaluate, step_profile
from cosma.core.errors import UsageError
from cosma.core.fit import best_fit as place
from cosma.core.interface import RunOptions, SolveResult, bytes_bound_only
from cosma.core.ir import Plan, Problem, TensorKind


def prefetch(problem: Problem, plan: Plan, max_interval: int | None = None) -> Plan:
    """``plan`` with its loads started earlier where that lowers latency (see the module doc)."""
    if max_interval is not None and max_interval < 0:
        raise ValueError(f"max_interval must not be negative, got {max_interval}")
    n = len(plan.schedule)
    if n == 0:
        return plan
    compute, dma = step_profile(problem, plan)
    bw = problem.hardware.dram_bytes_per_cycle
    graph = problem.graph
    capacity, align = problem.capacity, problem.alignment

    def step_time(t: int, extra: int = 0) -> float:
        return max(compute[t], (dma[t] + extra) / bw)

    # Occupied byte ranges per step, as lists of (lo, hi, index of the residency).
    occupied: list[list[tuple[int, int, int]]] = [[] for _ in range(n)]
    residencies = list(plan.residencies)
    stays: dict[str, list[int]] = defaultdict(list)
    for i, r in enumerate(residencies):
        stays[r.tensor].append(i)
        lo, hi = r.offset, r.offset + problem.footprint(r.tensor)
        for t in range(r.start, r.end):
            occupied[t].append((lo, hi, i))

    # The loaded residencies and the earliest step each may start at (the tensor's previous end).
    loads: list[tuple[int, int]] = []  # (residency index, earliest start)
    for t, idx in stays.items():
        idx.sort(key=lambda i: residencies[i].start)
        kind = graph.tensors[t].kind
        if kind in (TensorKind.INPUT, TensorKind.WEIGHT):
            loads.append((idx[0], 0))
        for prev, i in zip(idx, idx[1:]):
            loads.append((i, residencies[prev].end))

    def free(step: int, lo: int, hi: int) -> bool:
        return all(b_hi <= lo or hi <= b_lo for b_lo, b_hi, _ in occupied[step])

    def best_fit(blocks: set[tuple[int, int]], fp: int) -> int | None:
        return place(blocks, fp, alignment=align, capacity=capacity)

    def blocks_over(first: int, last: int, skip: tuple[int, ...]) -> set[tuple[int, int]]:
        """The byte ranges occupied at some step ``first .. last - 1`` by residencies not in ``skip``."""
        return {(b_lo, b_hi) for t in range(first, last) for b_lo, b_hi, j in occupied[t] if j not in skip}

    def displace(i: int, s: int) -> tuple[int, int, int] | None:
        """(offset for ``i`` over ``[s, end)``, another residency ``j``, a new offset for ``j``):
        room for load ``i`` from step ``s`` made by moving one residency that blocks it to a
        range free over ``j``'s whole interval; None when no single move does it."""
        r = residencies[i]
        fp = problem.footprint(r.tensor)
        used = sum(b_hi - b_lo for b_lo, b_hi, j in occupied[s] if j != i)
        if capacity - used < fp:
            return None  # not even fragmentation: the step has no room for the copy
        blockers = {j for t in range(s, r.end) for _, _, j in occupied[t] if j != i}
        for j in sorted(blockers, key=lambda j: (problem.footprint(residencies[j].tensor), j)):
            mine = best_fit(blocks_over(s, r.end, (i, j)), fp)
            if mine is None:
                continue
            rj = residencies[j]
            theirs = blocks_over(rj.start, rj.end, (i, j))
            theirs.add((mine, mine + fp))
            moved_to = best_fit(theirs, problem.footprint(rj.tensor))
            if moved_to is not None:
                return mine, j, moved_to
        return None

    def best_start(i: int, earliest: int) -> tuple[float, int, int, tuple[int, int] | None]:
        """(latency change, start, offset, displaced) of the best earlier start of residency
        ``i``; (0, start, offset, None) if none. The residency keeps its offset while that range
        is free; before that it may land on any range free over the whole new interval (a load may
        land anywhere), the best fit; where none is, one blocking residency may move to a range
        free over its own interval (``displaced`` = (its index, new offset)), and the walk stops."""
        r = residencies[i]
        size = graph.tensors[r.tensor].size
        if size == 0 or r.start == 0:
            return 0.0, r.start, r.offset, None
        gain = step_time(r.start, -size) - step_time(r.start)  # <= 0: the load leaves its step
        fp = problem.footprint(r.tensor)
        lo, hi = r.offset, r.offset + fp
        limit = earliest if max_interval is None else max(earliest, r.start - max_interval)
        best: tuple[float, int, int, tuple[int, int] | None] = (0.0, r.start, r.offset, None)
        others: set[tuple[int, int]] | None = None  # blocks over [s, r.end) other than i's, once relocating
        for s in range(r.start - 1, limit - 1, -1):
            added = step_time(s, size) - step_time(s)
            delta = gain + added
            offset, displaced = lo, None
            if others is None and not free(s, lo, hi):
                others = blocks_over(s + 1, r.end, (i,))
            if others is not None:
                others.update((b_lo, b_hi) for b_lo, b_hi, _ in occupied[s])
                found = best_fit(others, fp)
                if found is None:
                    made = displace(i, s) if delta < best[0] - 1e-9 else None
                    if made is not None:
                        best = (delta, s, made[0], (made[1], made[2]))
                    break
                offset = found
            if delta < best[0] - 1e-9:
                best = (delta, s, offset, displaced)
            if added <= 1e-9:  # fully hidden: no earlier start can do better
                break
        return best

    def move(i: int, start: int, offset: int) -> None:
        """Residency ``i`` now starts at ``start`` at ``offset`` (its end unchanged)."""
        r = residencies[i]
        fp = problem.footprint(r.tensor)
        for t in range(r.start, r.end):
            occupied[t] = [b for b in occupied[t] if b[2] != i]
        for t in range(start, r.end):
            occupied[t].append((offset, offset + fp, i))
        residencies[i] = replace(r, start=start, offset=offset)

    # Largest saving first; each move is re-judged against the current DMA profile.
    order = sorted(loads, key=lambda load: best_start(*load)[0])
    moved = False
    for i, earliest in order:
        delta, s, offset, displaced = best_start(i, earliest)
        if delta >= -1e-9:
            continue
        r = residencies[i]
        size = graph.tensors[r.tensor].size
        dma[r.start] -= size
        dma[s] += size
        if displaced is not None:
            j, j_offset = displaced
            move(j, residencies[j].start, j_offset)
        move(i, s, offset)
        moved = True
    if not moved:
        return plan

    out = Plan(plan.schedule, tuple(sorted(residencies, key=lambda r: (r.start, r.tensor))))
    if evaluate(problem, out).latency_cycles > evaluate(problem, plan).latency_cycles:
        return plan  # rounding only: never hand back a slower plan
    return out


def moved_loads(before: Plan, after: Plan) -> int:
    """How many residencies ``after`` starts earlier than ``before`` (same residencies, by tensor
    and end: a tensor's residencies never share an end; the pass may change a load's offset)."""
    start = {(r.tensor, r.end): r.start for r in before.residencies}
    return sum(1 for r in after.residencies if r.start < start.get((r.tensor, r.end), r.start))


PREFETCH_SWITCH = ("auto", "on", "off")


def prefetch_wanted(switch: str | bool, problem: Problem) -> bool:
    """A solver's ``prefetch`` parameter resolved: ``"auto"`` (on under ``objective="latency"``,
    off under ``"bytes"`` so byte-objective results keep their plans), ``"on"``, ``"off"``
    (a bool is taken as on/off). ``UsageError`` on any other value."""
    if isinstance(switch, bool):
        return switch
    value = str(switch).lower()
    if value in ("on", "true", "yes", "1"):
        return True
    if value in ("off", "false", "no", "0"):
        return False
    if value == "auto":
        return problem.objective == "latency"
    raise UsageError(f"parameter prefetch takes auto, on or off, got {switch!r}")


def bytes_then_prefetch(solve: Callable[[Problem, Any, RunOptions], SolveResult]) -> Callable:
    """Wrap a solver that minimizes bytes so it is correct under ``objective="latency"``:
    it solves the same problem in bytes, the prefetch pass retimes its plan's loads, and
    its byte bound and ``OPTIMAL`` are withdrawn (``bytes_bound_only``): the plan has the
    fewest bytes the solver proved, not a proven-fastest latency. Under ``"bytes"`` the
    solver runs unchanged."""

    @functools.wraps(solve)
    def wrapped(problem: Problem, params: Any, options: RunOptions) -> SolveResult:
        if problem.objective == "bytes":
            return solve(problem, params, options)
        result = solve(replace(problem, objective="bytes"), params, options)
        if result.plan is not None:
            plan = prefetch(problem, result.plan)
            result.stats["prefetched_loads"] = moved_loads(result.plan, plan)
            result.plan = plan
        return bytes_bound_only(problem, result)

    return wrapped


__all__ = ["prefetch", "moved_loads", "PREFETCH_SWITCH", "prefetch_wanted", "bytes_then_prefetch"]
