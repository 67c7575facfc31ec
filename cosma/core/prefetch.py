"""Prefetch timing as a decision: start loads earlier so their DMA hides behind compute.

The cost model charges a residency's load to the step it starts at (``cosma.core.cost``),
and a step takes ``max(compute, dma / bandwidth)`` cycles. A reload (or a graph input's or
counted weight's first load) that starts at a DMA-bound step costs time there; started at an
earlier, compute-bound step where the tensor's byte range is free, the same copy costs
nothing. XLA's memory-space assignment picks that start time with its prefetch-interval
picker (MISSION.md, "Execution time"); this pass is its analogue on our per-step roofline.

``prefetch(problem, plan)`` keeps the schedule, every offset and every byte moved; it only
moves the ``start`` of loaded residencies earlier, one step at a time, while

* the tensor is not resident then (at or after the end of its previous residency, hence
  after its spill for an activation),
* its byte range ``[offset, offset + footprint)`` is free at that step (no other residency
  overlaps it; the offset is unchanged, so the capacity holds),
* and, with ``max_interval``, the residency starts at most that many steps before its
  original start,

and among those starts takes the one with the lowest total roofline latency, the latest
first on ties (so the buffer occupies fast memory no longer than needed): the latest start
that hides the whole copy behind compute when one exists. Loads are taken largest saving
first; each move is judged with the steps' current DMA, so later moves see earlier ones.
The result validates whenever the input does, and its latency is never higher.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from dataclasses import replace
from typing import Any, Callable

from cosma.core.cost import evaluate, step_profile
from cosma.core.errors import UsageError
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

    def best_start(i: int, earliest: int) -> tuple[float, int]:
        """(latency change, start) of the best earlier start of residency ``i``; (0, start) if none."""
        r = residencies[i]
        size = graph.tensors[r.tensor].size
        if size == 0 or r.start == 0:
            return 0.0, r.start
        gain = step_time(r.start, -size) - step_time(r.start)  # <= 0: the load leaves its step
        lo, hi = r.offset, r.offset + problem.footprint(r.tensor)
        limit = earliest if max_interval is None else max(earliest, r.start - max_interval)
        best = (0.0, r.start)
        for s in range(r.start - 1, limit - 1, -1):
            if not free(s, lo, hi):
                break
            added = step_time(s, size) - step_time(s)
            delta = gain + added
            if delta < best[0] - 1e-9:
                best = (delta, s)
            if added <= 1e-9:  # fully hidden: no earlier start can do better
                break
        return best

    # Largest saving first; each move is re-judged against the current DMA profile.
    order = sorted(loads, key=lambda load: best_start(*load)[0])
    moved = False
    for i, earliest in order:
        delta, s = best_start(i, earliest)
        if delta >= -1e-9:
            continue
        r = residencies[i]
        size = graph.tensors[r.tensor].size
        lo, hi = r.offset, r.offset + problem.footprint(r.tensor)
        dma[r.start] -= size
        dma[s] += size
        for t in range(s, r.start):
            occupied[t].append((lo, hi, i))
        residencies[i] = replace(r, start=s)
        moved = True
    if not moved:
        return plan

    out = Plan(plan.schedule, tuple(sorted(residencies, key=lambda r: (r.start, r.tensor))))
    if evaluate(problem, out).latency_cycles > evaluate(problem, plan).latency_cycles:
        return plan  # rounding only: never hand back a slower plan
    return out


def moved_loads(before: Plan, after: Plan) -> int:
    """How many residencies ``after`` starts earlier than ``before`` (same residencies, by tensor and end)."""
    start = {(r.tensor, r.end, r.offset): r.start for r in before.residencies}
    return sum(1 for r in after.residencies if r.start < start.get((r.tensor, r.end, r.offset), r.start))


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
