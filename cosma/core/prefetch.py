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

``LoadTiming`` holds that state (the loads, their possible starts, the steps' DMA and
occupancy): the pass and mallocGame's timing phase, where the player picks each load's start,
share it.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from dataclasses import dataclass, replace
from typing import Any, Callable

from cosma.core.cost import evaluate, step_profile
from cosma.core.errors import UsageError
from cosma.core.fit import best_fit as place
from cosma.core.interface import RunOptions, SolveResult, bytes_bound_only
from cosma.core.ir import Bytes, Plan, Problem, Residency, Step, TensorKind, TensorName


@dataclass(frozen=True)
class Load:
    """A residency whose start moves DMA: a reload, or a graph input's or weight's first load."""

    index: int  # the residency's index in ``LoadTiming.residencies``
    tensor: TensorName
    use: Step  # its start in the plan given: the step that uses it
    earliest: Step  # the earliest step it may start: the end of the tensor's previous residency (0 for a first load)
    size: Bytes  # bytes the copy moves
    footprint: Bytes  # bytes it occupies (its range is [offset, offset + footprint) of its residency)


@dataclass(frozen=True)
class StartOption:
    """One start step a load may take, judged against the current DMA of every step."""

    start: Step
    delta: float  # roofline latency change (cycles, unrounded) of moving the load's start here
    added: float  # cycles the copy adds at ``start`` (0: fully hidden behind compute)
    offset: Bytes  # where the residency sits when it starts here (its own offset unless relocated)
    # (index, new offset) of another residency moved whole to make room (``options(displace=True)``)
    displaced: tuple[int, Bytes] | None = None


class LoadTiming:
    """The start steps of a plan's loads as decisions: the state the prefetch pass and
    mallocGame's timing phase share.

    Holds the plan's residencies with their current starts, the per-step compute cycles and
    DMA bytes of the roofline (``cosma.core.cost.step_profile``) and each step's occupied byte
    ranges. ``options(load)`` lists the start steps a load may move to (see the module doc
    for the rules), ``move`` makes one, ``plan`` and ``latency`` read the result (the latter
    equals ``evaluate(problem, plan()).latency_cycles``). ``clone`` is a cheap snapshot: the
    per-step occupied lists are replaced, never changed in place, so clones share them.

    With ``relocate``, a start where the residency's own range is taken may still be offered
    at another offset: the best fit (smallest gap, then lowest address) among the ranges free
    over the whole residency from that start to its end, at starts where some compute can hide
    part of the copy (elsewhere a relocation never lowers the latency). The residency then
    moves as a whole (a resident tensor still never moves). With ``options(displace=True)``
    (the prefetch pass), where no range is free, one residency blocking the load may move whole
    to a range free over its own interval to make room, and earlier starts are not offered.
    """

    def __init__(self, problem: Problem, plan: Plan, max_interval: int | None = None, relocate: bool = False):
        if max_interval is not None and max_interval < 0:
            raise ValueError(f"max_interval must not be negative, got {max_interval}")
        self.problem = problem
        self.schedule = plan.schedule
        self.max_interval = max_interval
        self.relocate = relocate
        n = len(plan.schedule)
        self.compute, self.dma = step_profile(problem, plan) if n else ([], [])
        self.bw = problem.hardware.dram_bytes_per_cycle
        graph = problem.graph
        self.residencies: list[Residency] = list(plan.residencies)
        # Occupied byte ranges per step, as lists of (lo, hi, index of the residency).
        occupied: list[list[tuple[int, int, int]]] = [[] for _ in range(n)]
        stays: dict[str, list[int]] = defaultdict(list)
        for i, r in enumerate(self.residencies):
            stays[r.tensor].append(i)
            lo, hi = r.offset, r.offset + problem.footprint(r.tensor)
            for t in range(r.start, r.end):
                occupied[t].append((lo, hi, i))
        self.occupied = occupied
        # The loads in the order the plan's tensors first appear (the prefetch pass's tie order).
        loads: list[Load] = []

        def load(i: int, earliest: int) -> Load:
            r = self.residencies[i]
            return Load(i, r.tensor, r.start, earliest, graph.tensors[r.tensor].size, problem.footprint(r.tensor))

        for t, idx in stays.items():
            idx.sort(key=lambda i: self.residencies[i].start)
            if graph.tensors[t].kind in (TensorKind.INPUT, TensorKind.WEIGHT):
                loads.append(load(idx[0], 0))
            for prev, i in zip(idx, idx[1:]):
                loads.append(load(i, self.residencies[prev].end))
        self.loads: tuple[Load, ...] = tuple(loads)
        self.moved = 0  # loads started earlier so far

    def clone(self) -> "LoadTiming":
        other = object.__new__(LoadTiming)
        other.__dict__.update(self.__dict__)
        other.dma = list(self.dma)
        other.occupied = list(self.occupied)
        other.residencies = list(self.residencies)
        return other

    def step_time(self, t: Step, extra: Bytes = 0) -> float:
        """Roofline cycles of step ``t`` with ``extra`` more DMA bytes."""
        return max(self.compute[t], (self.dma[t] + extra) / self.bw)

    def free(self, step: Step, lo: Bytes, hi: Bytes) -> bool:
        return all(b_hi <= lo or hi <= b_lo for b_lo, b_hi, _ in self.occupied[step])

    def start_of(self, load: Load) -> Step:
        return self.residencies[load.index].start

    def range_of(self, load: Load) -> tuple[Bytes, Bytes]:
        """The load's current byte range ``[lo, hi)``."""
        offset = self.residencies[load.index].offset
        return offset, offset + load.footprint

    def options(self, load: Load, hidden: int | None = 1, displace: bool = False) -> list[StartOption]:
        """The steps ``load`` may start at, latest first: every step from its current start
        back while its byte range stays free (with ``relocate``: while some range is free over
        the whole residency from there) and the tensor is not resident (and within
        ``max_interval`` of its use), until ``hidden`` starts that hide the whole copy have
        been seen (None: to the earliest start). Empty for a load that cannot move: an empty
        tensor, one at step 0, or one with no range free the step before. ``displace`` (with
        ``relocate``): at the first start with compute and no free range, one blocking residency
        may move to make room (``StartOption.displaced``), and the walk ends there."""
        start = self.start_of(load)
        if load.size == 0 or start == 0:
            return []
        gain = self.step_time(start, -load.size) - self.step_time(start)  # <= 0: the load leaves its step
        limit = load.earliest if self.max_interval is None else max(load.earliest, load.use - self.max_interval)
        lo, hi = self.range_of(load)
        own = True  # its own range is free from the step scanned to the start
        # With relocate: the ranges taken at some step from the one scanned to the residency's
        # end, and their best fit, recomputed only when a range joins them.
        taken: set[tuple[int, int]] = set()
        if self.relocate:
            end = self.residencies[load.index].end
            taken = self._taken_over(start, end, (load.index,))
        fit, stale = None, True
        copy = load.size / self.bw
        out: list[StartOption] = []
        seen = 0
        for s in range(start - 1, limit - 1, -1):
            own = own and self.free(s, lo, hi)
            added = self.step_time(s, load.size) - self.step_time(s)
            offset = lo
            if self.relocate:
                grown = len(taken)
                taken.update((b_lo, b_hi) for b_lo, b_hi, _ in self.occupied[s])
                stale = stale or len(taken) > grown
                if not own:
                    if added >= copy - 1e-9:  # no compute to hide behind here: never worth a relocation
                        continue
                    if stale:
                        fit, stale = self._best_fit(taken, load.footprint), False
                    if fit is None:  # nothing free over [s, end): nor over any longer span
                        made = self._displace(load, s) if displace else None
                        if made is not None:
                            out.append(StartOption(s, gain + added, added, made[0], (made[1], made[2])))
                        break
                    offset = fit
            elif not own:
                break
            out.append(StartOption(s, gain + added, added, offset))
            if added <= 1e-9:  # fully hidden: an earlier start can only tie
                seen += 1
                if hidden is not None and seen >= hidden:
                    break
        return out

    def _best_fit(self, taken: set[tuple[int, int]], footprint: Bytes) -> Bytes | None:
        return place(taken, footprint, alignment=self.problem.alignment, capacity=self.problem.capacity)

    def _taken_over(self, first: Step, last: Step, skip: tuple[int, ...]) -> set[tuple[int, int]]:
        """The byte ranges taken at some step ``first .. last - 1`` by residencies not in ``skip``."""
        return {(lo, hi) for t in range(first, last) for lo, hi, j in self.occupied[t] if j not in skip}

    def _displace(self, load: Load, s: Step) -> tuple[Bytes, int, Bytes] | None:
        """(offset for ``load`` over ``[s, end)``, a blocking residency ``j``, a new offset for
        ``j``): room made by moving one residency, the smallest first, to a range free over its
        whole interval; None when the step lacks the room outright or no single move makes it."""
        i, problem = load.index, self.problem
        end = self.residencies[i].end
        used = sum(hi - lo for lo, hi, j in self.occupied[s] if j != i)
        if problem.capacity - used < load.footprint:
            return None  # not fragmentation: the step has no room for the copy
        blockers = {j for t in range(s, end) for _, _, j in self.occupied[t] if j != i}
        for j in sorted(blockers, key=lambda j: (problem.footprint(self.residencies[j].tensor), j)):
            mine = self._best_fit(self._taken_over(s, end, (i, j)), load.footprint)
            if mine is None:
                continue
            rj = self.residencies[j]
            theirs = self._taken_over(rj.start, rj.end, (i, j)) | {(mine, mine + load.footprint)}
            moved_to = self._best_fit(theirs, problem.footprint(rj.tensor))
            if moved_to is not None:
                return mine, j, moved_to
        return None

    @staticmethod
    def best(options: list[StartOption]) -> StartOption | None:
        """The option with the lowest latency, the latest on ties (within 1e-9 cycles), when it
        lowers the latency; None when no option does."""
        best = None
        for o in options:  # latest first
            if o.delta < (0.0 if best is None else best.delta) - 1e-9:
                best = o
        return best

    def move(self, load: Load, option: StartOption) -> None:
        """Start ``load`` as ``option`` says (one of its ``options``)."""
        r = self.residencies[load.index]
        old, start = r.start, option.start
        if not load.earliest <= start < old:
            raise ValueError(f"{load.tensor}: start {start} is outside [{load.earliest}, {old})")
        self.dma[old] -= load.size
        self.dma[start] += load.size
        if option.displaced is not None:  # another residency moves whole first, to make room
            j, offset = option.displaced
            self._relocate(j, offset)
        block = (option.offset, option.offset + load.footprint, load.index)
        if option.offset != r.offset:  # relocated: the whole residency moves
            self._relocate(load.index, option.offset)
        for t in range(start, old):
            self.occupied[t] = self.occupied[t] + [block]
        self.residencies[load.index] = replace(r, start=start, offset=option.offset)
        self.moved += 1

    def _relocate(self, i: int, offset: Bytes) -> None:
        """Residency ``i``, over its own steps, now at ``offset`` (lists replaced, for clones)."""
        r = self.residencies[i]
        block = (offset, offset + self.problem.footprint(r.tensor), i)
        for t in range(r.start, r.end):
            self.occupied[t] = [b for b in self.occupied[t] if b[2] != i] + [block]
        self.residencies[i] = replace(r, offset=offset)

    def latency_float(self) -> float:
        return sum(max(c, d / self.bw) for c, d in zip(self.compute, self.dma))

    def latency(self) -> int:
        """The cost model's latency of ``plan()`` (the same sum, so the same rounding)."""
        return round(self.latency_float())

    def plan(self) -> Plan:
        return Plan(self.schedule, tuple(sorted(self.residencies, key=lambda r: (r.start, r.tensor))))


def prefetch(problem: Problem, plan: Plan, max_interval: int | None = None) -> Plan:
    """``plan`` with its loads started earlier where that lowers latency (see the module doc)."""
    if max_interval is not None and max_interval < 0:
        raise ValueError(f"max_interval must not be negative, got {max_interval}")
    if len(plan.schedule) == 0:
        return plan
    timing = LoadTiming(problem, plan, max_interval, relocate=True)

    def saving(load: Load) -> float:
        best = LoadTiming.best(timing.options(load, displace=True))
        return 0.0 if best is None else best.delta

    # Largest saving first; each move is re-judged against the current DMA profile.
    for load in sorted(timing.loads, key=saving):
        best = LoadTiming.best(timing.options(load, displace=True))
        if best is not None:
            timing.move(load, best)
    if not timing.moved:
        return plan
    out = timing.plan()
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


__all__ = [
    "Load",
    "StartOption",
    "LoadTiming",
    "prefetch",
    "moved_loads",
    "PREFETCH_SWITCH",
    "prefetch_wanted",
    "bytes_then_prefetch",
]
