"""Divide and conquer for graphs too large for one exact solve (NAS cells, RandWire).

For a fixed operator order the problem is, per tensor, a choice for every *gap* between
two consecutive uses: keep the tensor resident across it (at one offset) or evict it and
reload it at the next use. A plan in that form is canonical: a residency runs from a use
to a later use, never longer, and any valid plan shrinks into it at no extra cost.

0. **The order.** Unless the caller fixes it: file order, the memory-aware list schedule,
   the min-peak schedule and a portfolio of min-overflow beam searches
   (``cosma.schedules.minpeak``), scored by their no-address relaxation (below); from the
   best few a local search over orders walks while that relaxation drops
   (``improve_schedule``: branches dragged earlier or later, windows reordered; where CP-SAT
   is slow to score a move, scored by a greedy solution of the relaxation instead,
   ``greedy_relaxation``), and the cheapest order wins.
1. **Starts.** ``best-greedy``'s plans (its own order and the chosen one), and *relax and
   pack*: the relaxation's keep set, its residencies placed largest first, a residency
   that does not fit evicted across its longest gap. The cheapest is the incumbent.
2. **Pieces.** The steps are cut into windows of about ``window_steps``, each cut where
   the fewest bytes are live across it, and each window is solved by a CP-SAT model
   (``_WindowModel``): offsets of the uses inside, keep/evict of every gap touching it,
   a no-overlap-2D over (steps x bytes). Boundary conditions: a tensor resident at a cut
   sits at the offset the incumbent gives it; it may stay (pinned there) or be evicted
   (paying its reload, and its spill once). Without any start, the windows run left to
   right with *open* ends (each decides what stays resident across its end cut, and
   where) and are stitched into one plan.
3. **Large-neighbourhood search.** Until the time limit, re-solve windows over the cuts,
   around costly evictions, or a few evicted tensors over their whole lifetime (the rest
   of the plan fixed obstacles), hinted with the incumbent so a move never makes the plan
   worse. Windows grow while they solve to optimality quickly and shrink when they do not.
   When the plan meets the relaxation of its order (optimal for that order) or the windows
   stall, the order search goes on from its starts in turn; after a slice in which the best
   walk found nothing, windows of the plan are re-ordered by the order-aware model in their
   context instead (``reorder_windows``: ``cosma.exact.joint.reorder_window``, hinted with
   the plan). A cheaper order found restarts the windows from its relax-and-pack plan; the
   search stops at the time limit, or when the plan meets a bound proven for the problem as
   posed.

Never worse than ``best-greedy`` (its plan is a start). Every answer carries a valid lower
bound: the no-address relaxation (per step, the kept tensors' footprints fit the
capacity; offsets ignored), of the fixed-schedule problem when the caller fixed the
schedule, otherwise over every order (``cosma.exact.joint.order_bound``: the order-aware
relaxation, chunked on large graphs, and the schedule-free bound); the bound for the order
used is in ``stats["fixed_schedule_bound"]``.
Ctrl-C returns the best plan so far (``TIMEOUT``); the time limit is the whole solve's
(``FEASIBLE``, or ``OPTIMAL`` when the plan meets the bound): each phase above takes at most
its share of what is left, never the time kept back for the final bound, and a relaxation
too large to build in its share (``DncParams.relaxation_rate``; on RandWire graphs of
thousands of operators) is not started, its time going to the pieces.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

from ortools.sat.python import cp_model

from cosma.core.analysis import is_topological, live_bytes, make_plan, operator_footprint, use_steps
from cosma.core.clock import Clock
from cosma.core.errors import UsageError
from cosma.core.interface import RunOptions, SolveResult, Status, register
from cosma.core.ir import Bytes, OpName, Plan, Problem, Residency, Step, TensorKind, TensorName
from cosma.core.prefetch import bytes_then_prefetch
from cosma.exact.bounds import cheap_order_bounds, fixed_schedule_bound
from cosma.exact.joint import order_bound, reorder_window
from cosma.exact.model import RELAXATION_RATE, relaxation_terms
from cosma.schedules.orders import (
    ORDER_KINDS,
    OVERFLOW_PORTFOLIO,
    candidate_orders,
    neighbours,
    pull_earlier,
    push_later,
)

# The order walk scores greedily where the CP-SAT relaxation costs more than this many
# times as much and more than ``GREEDY_ABOVE`` seconds a score (``improve_schedule``): the
# greedy score is looser on some graphs (pnasnet5large: 11.94 against 11.20 MB on one
# candidate order), which a walk on it does not see: on pnasnet5large with weights at
# ``M_H``, where CP-SAT scores in 2-3 ms, dnc walking on the greedy score ended at 8.58 and
# 9.66 MB, on CP-SAT's at 7.84 MB.
GREEDY_SPEEDUP = 4.0
GREEDY_ABOVE = 0.01


@dataclass(frozen=True)
class DncParams:
    """Divide-and-conquer settings (every time in seconds of wall time)."""

    window_steps: int = 40  # steps per piece in the first pass, and the first LNS window size
    max_window_steps: int = 240  # LNS windows never grow beyond this many steps
    single_window_steps: int = 120  # schedules this short are solved as one window (exact for that order)
    window_time: float = 3.0  # CP-SAT time limit per window
    stall_windows: int = 60  # without a time limit: stop after this many LNS windows in a row without gain
    bound_time: float = 4.0  # CP-SAT time for each lower-bound relaxation
    relax_time: float = 20.0  # time for the relax-and-pack start (0: off)
    tensor_moves: float = 0.5  # share of LNS moves that free a few evicted tensors over their whole lifetime
    warm_start: bool = True  # also run best-greedy (when registered) and start from its plan if better
    warm_fraction: float = 0.75  # at most this share of the time limit for each best-greedy run
    schedule: str = "auto"  # "auto": best of the candidates; or "file", "memory-aware", "min-peak", "min-overflow"
    scheduler_time: float = 40.0  # at most this long for the candidate schedules (cosma.schedules.minpeak's searches)
    schedule_fraction: float = 0.25  # and at most this share of the time limit
    reorder_fraction: float = 0.3  # share of the time limit for the order search before the first plan (0: off)
    order_starts: int = 3  # candidate orders the order search walks from, in turn
    joint_window_steps: int = 16  # steps re-ordered by the order model when a walk stalls (0: off)
    joint_margin: int = 30  # steps each side of such a window whose residents are decided anew
    relaxation_rate: float = RELAXATION_RATE  # terms a second (cosma.exact.model): larger is not started


# --------------------------------------------------------------------------------------
# The incumbent: a fixed-schedule plan in canonical form.


@dataclass
class _TensorState:
    name: TensorName
    size: Bytes  # bytes of data (what traffic counts)
    units: int  # footprint in alignment units
    activation: bool  # pays one spill when evicted at least once
    uses: list[Step]  # sorted steps where it must be resident
    keep: list[bool]  # keep[j]: resident across the gap uses[j] -> uses[j+1] (same offset)
    offset: list[int]  # offset of each use, in alignment units

    def broken(self) -> int:
        return sum(not k for k in self.keep)

    def cost(self) -> Bytes:
        b = self.broken()
        return self.size * b + (self.size if self.activation and b else 0)


@dataclass
class _Layout:
    """Per-tensor keep/offset decisions for one schedule; ``plan()`` turns them into residencies.

    (The exact solver's incumbent is the same decision in ``FixedInstance``'s gap vectors;
    divide and conquer keeps it per tensor because its windows re-solve a few tensors at a time.)"""

    problem: Problem
    schedule: tuple[OpName, ...]
    cap_units: int  # capacity in alignment units
    tensors: dict[TensorName, _TensorState] = field(default_factory=dict)

    @classmethod
    def empty(cls, problem: Problem, schedule: Sequence[OpName]) -> "_Layout":
        """Every gap broken: at each step only the operator's operands are resident, laid
        out side by side from offset 0. Valid whenever the capacity is at least ``M_R``."""
        a = problem.alignment
        inc = cls(problem, tuple(schedule), problem.capacity // a)
        graph = problem.graph
        for t, steps in use_steps(problem, schedule).items():
            if not steps:
                continue
            kind = graph.tensors[t].kind
            inc.tensors[t] = _TensorState(
                t,
                graph.tensors[t].size,
                problem.footprint(t) // a,
                kind is TensorKind.ACTIVATION,
                steps,
                [False] * (len(steps) - 1),
                [0] * len(steps),
            )
        for step, name in enumerate(schedule):
            at = 0
            for t in dict.fromkeys(problem.operands(graph.operators[graph.op_index[name]])):
                st = inc.tensors[t]
                st.offset[st.uses.index(step)] = at
                at += st.units
        return inc

    @classmethod
    def from_plan(cls, problem: Problem, plan: Plan) -> "_Layout":
        """The canonical form of a valid plan: each use takes the offset of the residency
        covering it; a gap is kept when one residency covers both its uses. No worse than
        the plan (residencies only shrink, none is added)."""
        inc = cls.empty(problem, plan.schedule)
        a = problem.alignment
        by_tensor: dict[TensorName, list[Residency]] = {}
        for r in plan.residencies:
            by_tensor.setdefault(r.tensor, []).append(r)
        for t, st in inc.tensors.items():
            covering = []
            for u in st.uses:
                r = next(r for r in by_tensor[t] if r.start <= u < r.end)
                covering.append(r)
                st.offset[len(covering) - 1] = r.offset // a
            st.keep = [covering[j] is covering[j + 1] for j in range(len(st.uses) - 1)]
        return inc

    def cost(self) -> Bytes:
        return sum(st.cost() for st in self.tensors.values())

    def copy(self) -> "_Layout":
        out = _Layout(self.problem, self.schedule, self.cap_units)
        out.tensors = {
            t: _TensorState(st.name, st.size, st.units, st.activation, st.uses, list(st.keep), list(st.offset))
            for t, st in self.tensors.items()
        }
        return out

    def plan(self) -> Plan:
        a = self.problem.alignment
        out = []
        for t, st in self.tensors.items():
            first = 0
            for j in range(len(st.uses)):
                if j == len(st.uses) - 1 or not st.keep[j]:
                    out.append(Residency(t, st.uses[first], st.uses[j] + 1, st.offset[first] * a))
                    first = j + 1
        return make_plan(self.problem, self.schedule, out)


# --------------------------------------------------------------------------------------
# One window as a CP-SAT model.


class _WindowModel:
    """The fixed-schedule problem restricted to a neighbourhood, everything else pinned.

    The neighbourhood is a step window ``[a, b)`` plus a set of *free tensors*. Variables:
    an offset per use inside the window, and per use of a free tensor; a keep literal per
    gap touching the window, and per gap of a free tensor. A gap of another tensor that
    reaches outside the window (resident at a cut) is pinned to the offset the incumbent
    gives it and may only be kept if the incumbent keeps it; evicting it frees its whole
    span. At the end of an *open* window (first pass) keeping a gap that leaves the window
    is free and its offset is the window's choice. Free tensors let the search keep a
    long-lived tensor the incumbent evicts: the incumbent's residencies met over its
    lifetime are fixed obstacles.

    Every use and kept gap whose steps meet the model's horizon (the window and the free
    tensors' lifetimes) is a rectangle (steps x bytes) under one no-overlap-2D. Objective:
    bytes of broken gaps plus one spill per activation with a broken gap, unless a gap
    decided outside already pays it."""

    def __init__(self, inc: _Layout, a: Step, b: Step, open_end: bool, free: frozenset[TensorName] = frozenset()):
        self.inc, self.a, self.b, self.open_end, self.free = inc, a, b, open_end, free
        m = self.model = cp_model.CpModel()
        self.x: dict[tuple[TensorName, int], cp_model.IntVar] = {}  # (tensor, use index) -> offset
        self.k: dict[tuple[TensorName, int], cp_model.IntVar] = {}  # (tensor, gap index) -> keep
        x_rects, y_rects = [], []
        cost_terms = []
        self.constant = 0  # cost of the decisions this neighbourhood cannot change
        cap = inc.cap_units
        h0 = min([a] + [inc.tensors[t].uses[0] for t in free])
        h1 = max([b] + [inc.tensors[t].uses[-1] + 1 for t in free])
        self.horizon = (h0, h1)

        def rect(t0: Step, t1: Step, x, units: int, present=None) -> None:
            t0, t1 = max(t0, h0), min(t1, h1)  # only the part inside the horizon can meet a variable
            if t1 <= t0:
                return
            if present is None:
                x_rects.append(m.NewFixedSizeIntervalVar(x, units, ""))
                y_rects.append(m.NewFixedSizeIntervalVar(t0, t1 - t0, ""))
            else:
                x_rects.append(m.NewOptionalFixedSizeIntervalVar(x, units, present, ""))
                y_rects.append(m.NewOptionalFixedSizeIntervalVar(t0, t1 - t0, present, ""))

        def spill_term(st: _TensorState, lits: list) -> None:
            if not lits:
                return
            s = m.NewBoolVar(f"spill[{st.name}]")
            for k in lits:
                m.AddImplication(k.Not(), s)
            m.AddHint(s, not all(st.keep) or (open_end and st.name not in free))
            cost_terms.append(st.size * s)

        for t, st in inc.tensors.items():
            uses, n = st.uses, len(st.uses)
            if uses[-1] < h0 or uses[0] >= h1:
                self.constant += st.cost()  # lives wholly outside the horizon
                continue
            if t in free:
                for i in range(n):
                    v = m.NewIntVar(0, cap - st.units, f"x[{t},{i}]")
                    self.x[t, i] = v
                    m.AddHint(v, st.offset[i])
                    rect(uses[i], uses[i] + 1, v, st.units)
                lits = []
                for j in range(n - 1):
                    k = m.NewBoolVar(f"k[{t},{j}]")
                    self.k[t, j] = k
                    m.AddHint(k, st.keep[j])
                    m.Add(self.x[t, j] == self.x[t, j + 1]).OnlyEnforceIf(k)
                    rect(uses[j] + 1, uses[j + 1], self.x[t, j], st.units, k)
                    cost_terms.append(st.size * (1 - k))
                    lits.append(k)
                if st.activation:
                    spill_term(st, lits)
                continue

            for i in range(n):
                if a <= uses[i] < b:
                    v = m.NewIntVar(0, cap - st.units, f"x[{t},{i}]")
                    self.x[t, i] = v
                    m.AddHint(v, st.offset[i])
                    rect(uses[i], uses[i] + 1, v, st.units)
                else:
                    rect(uses[i], uses[i] + 1, st.offset[i], st.units)
            # Gap j (uses[j] -> uses[j+1]) touches the window when a use or its interior is in it.
            outside_broken = 0
            lits = []
            pinned_broken = False  # a touching gap evicted by the incumbent outside: its spill is paid
            for j in range(n - 1):
                if not (uses[j] < b and uses[j + 1] >= a):
                    if st.keep[j]:
                        rect(uses[j] + 1, uses[j + 1], st.offset[j], st.units)
                    else:
                        outside_broken += 1
                    continue
                first_in, second_in = uses[j] >= a, uses[j + 1] < b
                if first_in and second_in:  # wholly inside: free
                    k = m.NewBoolVar(f"k[{t},{j}]")
                    m.Add(self.x[t, j] == self.x[t, j + 1]).OnlyEnforceIf(k)
                    rect(uses[j] + 1, uses[j + 1], self.x[t, j], st.units, k)
                elif first_in and open_end:  # resident at the end cut: the window chooses where
                    k = m.NewBoolVar(f"k[{t},{j}]")
                    rect(uses[j] + 1, b, self.x[t, j], st.units, k)
                elif not st.keep[j]:  # pinned broken by the incumbent outside
                    self.constant += st.size
                    pinned_broken = True
                    continue
                else:  # kept by the incumbent across a cut: keep it there or evict it
                    k = m.NewBoolVar(f"k[{t},{j}]")
                    pinned = st.offset[j]
                    if first_in:
                        m.Add(self.x[t, j] == pinned).OnlyEnforceIf(k)
                    if second_in:
                        m.Add(self.x[t, j + 1] == pinned).OnlyEnforceIf(k)
                    rect(uses[j] + 1, uses[j + 1], pinned, st.units, k)
                self.k[t, j] = k
                # First pass: the part after the window is still the all-evicted layout,
                # which is feasible only with every boundary resident evicted.
                m.AddHint(k, st.keep[j] and not (open_end and not first_in))
                cost_terms.append(st.size * (1 - k))
                lits.append(k)
            self.constant += st.size * outside_broken
            if st.activation:
                if outside_broken or pinned_broken:
                    self.constant += st.size
                else:
                    spill_term(st, lits)
        if x_rects:
            m.AddNoOverlap2D(x_rects, y_rects)
        m.Minimize(sum(cost_terms) if cost_terms else 0)

    def solve(self, time_limit: float, threads: int, seed: int) -> tuple[str, _Layout | None, float]:
        """``(status name, new incumbent or None, seconds)``; the incumbent is unchanged."""
        solver = cp_model.CpSolver()
        solver.parameters.max_time_in_seconds = max(time_limit, 0.05)
        solver.parameters.num_workers = max(1, threads)
        solver.parameters.random_seed = seed
        solver.parameters.catch_sigint_signal = False  # Ctrl-C reaches Python: the caller keeps its best plan
        status = solver.Solve(self.model)
        name = solver.StatusName(status)
        if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
            return name, None, solver.WallTime()
        out = self.inc.copy()
        for (t, i), v in self.x.items():
            out.tensors[t].offset[i] = solver.Value(v)
        for (t, j), k in self.k.items():
            st = out.tensors[t]
            st.keep[j] = bool(solver.Value(k))
            if st.keep[j] and st.uses[j] >= self.a and st.uses[j + 1] >= self.b:
                st.offset[j + 1] = st.offset[j]  # open end: carried across the cut
        return name, out, solver.WallTime()


# --------------------------------------------------------------------------------------
# Where to cut, and which windows to re-solve.


def crossing_bytes(inc: _Layout) -> list[Bytes]:
    """``out[s]``: footprint bytes live across the cut before step ``s`` (no spills): what a
    cut there forces the two sides to agree on. Few bytes crossing = a good place to cut."""
    n = len(inc.schedule)
    delta = [0] * (n + 2)
    for st in inc.tensors.values():
        if len(st.uses) > 1:
            delta[st.uses[0] + 1] += st.units
            delta[st.uses[-1] + 1] -= st.units
    out, running = [], 0
    for s in range(n + 1):
        running += delta[s]
        out.append(running)
    return out


def piece_cuts(inc: _Layout, window: int) -> list[Step]:
    """Cut points ``0 = c0 < c1 < ... < n``: each piece is at most ``window`` steps, and each
    cut is where the fewest bytes cross among the steps from half a window on."""
    n = len(inc.schedule)
    crossing = crossing_bytes(inc)
    cuts = [0]
    while n - cuts[-1] > window:
        lo, hi = cuts[-1] + max(1, window // 2), cuts[-1] + window
        cuts.append(min(range(lo, hi + 1), key=lambda s: (crossing[s], -s)))
    cuts.append(n)
    return cuts


# --------------------------------------------------------------------------------------
# Relax and pack: a whole-schedule start that keeps far more than a greedy allocator.


def _relaxed_keeps(
    inc: _Layout, cap_units: int, time_limit: float, seed: int, clock: Clock | None = None
) -> dict[tuple[TensorName, int], bool] | None:
    """Keep/evict per gap from the no-address relaxation at ``cap_units``: the cheapest set of
    evictions such that, at every step, the operands plus the kept gaps spanning it fit.
    None when there is none in time, or ``clock`` runs out while the model is built (one
    term per gap and step inside it: tens of millions on a 5k-operator RandWire graph)."""
    m = cp_model.CpModel()
    steps = len(inc.schedule)
    spanning: list[list] = [[] for _ in range(steps)]
    keep: dict[tuple[TensorName, int], object] = {}
    terms = []
    for t, st in inc.tensors.items():
        if clock is not None and clock.expired():
            return None
        lits = []
        for j in range(len(st.uses) - 1):
            if st.uses[j + 1] - st.uses[j] == 1:
                keep[t, j] = True  # nothing in between: keeping it costs no space
                continue
            k = m.NewBoolVar("")
            keep[t, j] = k
            lits.append(k)
            terms.append(st.size * (1 - k))
            for s in range(st.uses[j] + 1, st.uses[j + 1]):
                spanning[s].append((st.units, k))
        if st.activation and lits:
            spill = m.NewBoolVar("")
            for k in lits:
                m.AddImplication(k.Not(), spill)
            terms.append(st.size * spill)
    a = inc.problem.alignment
    for s, items in enumerate(spanning):
        if clock is not None and clock.expired():
            return None
        room = cap_units - operator_footprint(inc.problem, inc.schedule[s]) // a
        if sum(u for u, _ in items) > room:
            m.Add(sum(u * k for u, k in items) <= max(0, room))
    m.Minimize(sum(terms) if terms else 0)
    solver = cp_model.CpSolver()
    left = None if clock is None else clock.left()
    solver.parameters.max_time_in_seconds = max(time_limit if left is None else min(time_limit, left), 0.05)
    solver.parameters.num_workers = 1
    solver.parameters.random_seed = seed
    solver.parameters.catch_sigint_signal = False
    if solver.Solve(m) not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return None
    return {key: k if k is True else bool(solver.Value(k)) for key, k in keep.items()}


def _pack_keeps(inc: _Layout, keeps: dict[tuple[TensorName, int], bool], clock: Clock | None = None) -> _Layout | None:
    """A plan that keeps the given gaps where it can: the residencies they imply are placed
    largest first at the lowest free offset (TFLite's greedy-by-size); a residency that
    does not fit is evicted across its longest gap and its two halves queued again. None
    when a single use does not fit (the keep set fragments the scratchpad too much), or
    when ``clock`` runs out (each placement scans those placed: quadratic)."""
    out = inc.copy()
    boxes: list[tuple[TensorName, int, int]] = []  # (tensor, first use index, last use index)
    for t, st in out.tensors.items():
        st.keep = [keeps.get((t, j), False) for j in range(len(st.uses) - 1)]
        first = 0
        for j in range(len(st.uses)):
            if j == len(st.uses) - 1 or not st.keep[j]:
                boxes.append((t, first, j))
                first = j + 1
    placed: list[tuple[int, int, int, int]] = []  # (start, end, offset, units), end exclusive

    def place(t: TensorName, i: int, j: int) -> int | None:
        st = out.tensors[t]
        start, end = st.uses[i], st.uses[j] + 1
        busy = sorted((o, o + u) for s, e, o, u in placed if s < end and start < e)
        x = 0
        for lo, hi in busy:
            if lo - x >= st.units:
                break
            x = max(x, hi)
        if x + st.units > out.cap_units:
            return None
        placed.append((start, end, x, st.units))
        return x

    def key(box: tuple[TensorName, int, int]) -> tuple:
        t, i, j = box
        st = out.tensors[t]
        return (-st.units, -(st.uses[j] - st.uses[i]), st.uses[i], t)

    queue = sorted(boxes, key=key)
    while queue:
        if clock is not None and clock.expired():
            return None
        t, i, j = queue.pop(0)
        x = place(t, i, j)
        st = out.tensors[t]
        if x is not None:
            for u in range(i, j + 1):
                st.offset[u] = x
            continue
        if i == j:
            return None
        g = max(range(i, j), key=lambda g: st.uses[g + 1] - st.uses[g])  # evict across its longest gap
        st.keep[g] = False
        queue = sorted(queue + [(t, i, g), (t, g + 1, j)], key=key)
    return out


def _pack_exactly(inc: _Layout, keeps: dict[tuple[TensorName, int], bool], time_limit: float) -> _Layout | None:
    """The keep set as it is, packed by ``cosma.packing.boxes`` (greedy, then an exact packer);
    None when it does not pack in time."""
    from cosma.packing.boxes import Box, pack_boxes

    out = inc.copy()
    boxes, runs = [], []
    for t, st in out.tensors.items():
        st.keep = [keeps.get((t, j), False) for j in range(len(st.uses) - 1)]
        first = 0
        for j in range(len(st.uses)):
            if j == len(st.uses) - 1 or not st.keep[j]:
                boxes.append(Box(st.uses[first], st.uses[j] + 1, st.units))
                runs.append((st, first, j))
                first = j + 1
    outcome = pack_boxes(boxes, out.cap_units, time_limit)
    if outcome.status is not Status.OPTIMAL or outcome.offsets is None:
        return None
    for (st, i, j), x in zip(runs, outcome.offsets):
        for u in range(i, j + 1):
            st.offset[u] = x
    return out


def relax_and_pack(inc: _Layout, time_limit: float, seed: int = 0) -> tuple[_Layout | None, dict]:
    """Solve the relaxation at shrinking capacities (slack for fragmentation) and pack each
    answer (greedily, splitting what does not fit; for the two largest capacities also
    exactly, keeping the whole keep set); the cheapest plan that packs, within about
    ``time_limit`` seconds, model building included. ``inc`` only supplies the schedule."""
    clock = Clock(time_limit)
    best, tried = None, {}
    for slack in (0.0, 0.05, 0.1, 0.2, 0.35, 1.0):
        left = clock.left()
        if left <= 0.05 or (best is not None and best.cost() == 0):
            break
        cap = int(inc.cap_units * (1 - slack))
        keeps = _relaxed_keeps(inc, cap, max(0.05, left / 3), seed, clock)
        if keeps is None:
            continue
        packed = [_pack_keeps(inc, keeps, clock)]
        if slack < 0.1 and not clock.expired(0.05):  # the keep sets that fragment: worth an exact packer's time
            packed.append(_pack_exactly(inc, keeps, max(0.05, clock.left() / 3)))
        packed = [p for p in packed if p is not None]
        tried[slack] = min((p.cost() for p in packed), default=None)
        for p in packed:
            if best is None or p.cost() < best.cost():
                best = p
    return best, tried


# --------------------------------------------------------------------------------------
# The solver.


# dnc's names for the order kinds of ``cosma.schedules.orders`` (DncParams.schedule).
SCHEDULE_KINDS = {
    "auto": ORDER_KINDS,
    "file": ("file",),
    "memory-aware": ("memory-aware",),
    "min-peak": ("min-peak",),
    "min-overflow": ("min-overflow",),
}


def candidate_schedules(problem: Problem, which: str, time_limit: float) -> list[tuple[str, tuple[OpName, ...]]]:
    """``(source, schedule)`` for the schedules ``which`` names ("auto": all of them), found
    within about ``time_limit`` seconds (the min-peak search gets half, the min-overflow
    portfolio the rest, as far as it gets)."""
    if which not in SCHEDULE_KINDS:
        raise UsageError(f"unknown schedule {which!r}: use {', '.join(SCHEDULE_KINDS)}")
    orders = candidate_orders(problem, SCHEDULE_KINDS[which], time_limit, min_peak_share=0.5, prove_min_peak=False)
    return [(order.source, order.schedule) for order in orders]


def overflow(problem: Problem, schedule: Sequence[OpName]) -> tuple[Bytes, Bytes]:
    """``(bytes-steps above the capacity, peak)`` with no spills: how much a schedule must
    evict, roughly. Lower is more promising."""
    cap = problem.capacity // problem.alignment * problem.alignment
    live = live_bytes(problem, schedule)
    return sum(max(0, b - cap) for b in live), max(live, default=0)


def relaxation(
    problem: Problem, schedule: Sequence[OpName], time_limit: float, clock: Clock, rate: float = math.inf
) -> Bytes | None:
    """``fixed_schedule_bound`` of ``schedule`` within ``clock`` (building included), or None
    when the clock ran out first (the bound may be a cut-short build's 0: no score), or when
    its terms would not be built in time at ``rate`` terms a second (then it is not started)."""
    left = clock.left()
    if left is not None and rate < math.inf and relaxation_terms(problem, schedule) > rate * left:
        return None
    value = fixed_schedule_bound(problem, schedule, time_limit, clock)
    return None if clock.expired() else value


def _operand_facts(problem: Problem) -> dict[OpName, tuple[tuple[TensorName, Bytes, Bytes, bool], ...]]:
    """Per operator, its managed operands once each as ``(tensor, footprint, size, is an
    activation)``: what ``greedy_relaxation`` reads thousands of times a walk (memoized on
    the graph, per setting and alignment)."""
    key = ("operand_facts", problem.weights_counted, problem.alignment)
    facts = problem.graph.memo.get(key)
    if facts is None:
        graph = problem.graph
        facts = {
            op.name: tuple(
                (t, problem.footprint(t), graph.tensors[t].size, graph.tensors[t].kind is TensorKind.ACTIVATION)
                for t in dict.fromkeys(problem.operands(op))
            )
            for op in graph.operators
        }
        problem.graph.memo[key] = facts
    return facts


def greedy_relaxation(problem: Problem, schedule: Sequence[OpName]) -> Bytes:
    """The cost of a feasible solution of ``fixed_schedule_bound``'s relaxation (so never below
    its optimum), found greedily in one pass over the steps: wherever the operands and the
    kept gaps spanning a step overflow the capacity, a spanning gap is evicted, the one whose
    next use is furthest (Belady's rule), or by a second rule, the most footprint-steps freed
    per byte it costs; the cheaper of the two passes. About 1 ms on a 478-operator RandWire
    graph, where the CP-SAT relaxation takes 25-35 ms; at the end of the walks measured there
    the two were equal."""
    facts = _operand_facts(problem)
    cap = problem.capacity // problem.alignment * problem.alignment
    n = len(schedule)
    opening: list[list[tuple]] = [[] for _ in range(n + 1)]  # per step: the gaps that start spanning it
    last: dict[TensorName, Step] = {}
    room = []
    for s, op in enumerate(schedule):
        room.append(cap - operator_footprint(problem, op))
        for fact in facts[op]:
            before = last.get(fact[0])
            if before is not None and s - before > 1:
                opening[before + 1].append((s, *fact))
            last[fact[0]] = s

    def freed_per_byte(gap: tuple, s: Step, spilled: set[TensorName]) -> float:
        """Footprint-steps that evicting ``gap`` at step ``s`` frees, per byte it moves."""
        end, t, footprint, size, activation = gap
        return (end - s) * footprint / (max(1, size) * (2 if activation and t not in spilled else 1))

    def one_pass(furthest: bool) -> Bytes:
        kept: list[tuple] = []  # gaps opened and not evicted (some already over)
        closing = [0] * (n + 1)  # per step: kept footprint whose gap ends there
        load = cost = 0
        spilled: set[TensorName] = set()
        for s in range(n):
            load -= closing[s]
            for end, _, footprint, _, _ in opening[s]:
                load += footprint
                closing[end] += footprint
            kept.extend(opening[s])
            if load <= room[s]:
                continue
            kept = [gap for gap in kept if gap[0] > s]
            while load > room[s]:
                gap = max(kept, key=(lambda g: g[0]) if furthest else (lambda g: freed_per_byte(g, s, spilled)))
                kept.remove(gap)
                end, t, footprint, size, activation = gap
                load -= footprint
                closing[end] -= footprint
                cost += size
                if activation and t not in spilled:
                    spilled.add(t)
                    cost += size
        return cost

    return min(one_pass(True), one_pass(False))


def improve_schedule(
    problem: Problem,
    schedule: tuple[OpName, ...],
    bound: Bytes,
    time_limit: float,
    rng: random.Random,
    plateau: float = 0.3,
) -> tuple[tuple[OpName, ...], Bytes, int, int]:
    """Local search over operator orders, scored by the fixed-schedule relaxation (which
    relax and pack nearly always reaches), or by ``greedy_relaxation`` (a feasible solution
    of it) where CP-SAT costs more than ``GREEDY_SPEEDUP`` times as much on the start order
    and more than ``GREEDY_ABOVE`` seconds. On RandWire graphs one CP-SAT score takes 25-35
    ms, the greedy one about 1 ms: on randwire_ws_n32_s0 at ``M_R`` three 30 s walks from the
    same order ended at 8.32-8.44 MB scored greedily, 8.68-9.05 MB scored by CP-SAT; on six
    synthetic RandWire stages (``cosma.core.synthetic``, 100 and 300 nodes), where CP-SAT
    does not finish a score in 0.5 s, 15 s walks ended 13-48% lower scored greedily. On
    pnasnet5large and nasnetalarge the relaxation takes 2-3 ms and is used.

    Moves, around a step drawn in proportion to the live bytes above the capacity there:
    an operator pulled earlier with its ancestors, or pushed later with its descendants
    (``cosma.schedules.orders.pull_earlier``/``push_later``: a whole branch finished before
    the rest), either the next use of a tensor waiting across that step, brought next to
    its previous use, or the reverse (4 moves in 10: on randwire_ws_n32_s0 at ``M_R``, 300
    moves from the same order saved 2.2-2.3 MB with them, 0.4-0.6 MB without), or any
    operator near the step, sent a random distance; and 1 move in 10, a window reordered
    by the min-overflow beam search aiming under a random fraction of the capacity. A move
    is kept when its score is lower, or equal with probability ``plateau`` (the relaxation
    is flat over most moves: walking its plateaus finds the way down). Returns (order, the
    relaxation of the order, moves that lowered the score, moves tried); ``bound`` is the
    relaxation of ``schedule``."""
    from cosma.schedules.minpeak import reorder_window

    clock = Clock(time_limit)
    cap = problem.capacity // problem.alignment * problem.alignment
    preds, succs = neighbours(problem)
    current = list(schedule)
    n, kept, tried = len(current), 0, 0
    weights = [max(0, b - cap) + 1 for b in live_bytes(problem, current)]
    uses = use_steps(problem, current)

    def exact(order: Sequence[OpName]) -> Bytes | None:
        return relaxation(problem, order, 0.5, clock)

    score, value, probe = exact, bound, 0.0
    if bound > 0:  # time the two scores once on the start order
        started = time.perf_counter()
        exact(current)
        probe = time.perf_counter() - started
        greedy = greedy_relaxation(problem, current)
        if probe > max(GREEDY_SPEEDUP * (time.perf_counter() - started - probe), GREEDY_ABOVE):
            score, value = (lambda order: greedy_relaxation(problem, order)), greedy
    while value > 0 and not clock.expired() and n > 2:
        centre = rng.choices(range(n), weights=weights)[0]
        move = rng.random()
        if move < 0.4:
            # A tensor waiting across the crowded step: bring its two uses together.
            spans = [(u[j], u[j + 1]) for u in uses.values() for j in range(len(u) - 1) if u[j] < centre < u[j + 1]]
            if not spans:
                continue
            a, b = rng.choice(spans)
            if rng.random() < 0.5:
                candidate = pull_earlier(current, b, a + 1, preds)
            else:
                candidate = push_later(current, a, b - 1, succs)
        elif move < 0.5:
            size = rng.randint(min(8, n), min(64, n))
            a = min(max(0, centre - size // 2), n - size)
            fraction, width = rng.choice(OVERFLOW_PORTFOLIO)
            candidate = list(reorder_window(problem, current, a, a + size, int(cap * fraction), max(2, width // 4)))
        else:
            i = min(n - 1, max(0, centre + rng.randint(-8, 8)))
            reach = rng.randint(1, 40)
            if rng.random() < 0.5:
                candidate = pull_earlier(current, i, max(0, i - reach), preds)
            else:
                candidate = push_later(current, i, min(n - 1, i + reach), succs)
        if candidate == current:
            continue
        tried += 1
        new = score(candidate)
        if new is None:
            break  # the clock ran out while scoring
        if new < value or (new == value and rng.random() < plateau):
            kept += new < value
            current, value = candidate, new
            weights = [max(0, b - cap) + 1 for b in live_bytes(problem, current)]
            uses = use_steps(problem, current)
    if score is exact or tuple(current) == tuple(schedule):
        return tuple(current), value, kept, tried
    # Scored greedily: the last order's own relaxation, in a moment past the clock (a few
    # times what the start's took), kept only when it is no dearer than the start's (a
    # lower greedy score does not promise it).
    final = relaxation(problem, current, 0.5, Clock(max(0.5, 3 * probe)))
    if final is None or final > bound:
        return tuple(schedule), bound, kept, tried
    return tuple(current), final, kept, tried


def reorder_windows(
    inc: _Layout, bound: Bytes, time_limit: float, rng: random.Random, params: DncParams, options: RunOptions
) -> tuple[tuple[OpName, ...], Bytes, int, int]:
    """Large-neighbourhood moves over the order of ``inc``'s plan, whose order's relaxation is
    ``bound``: windows of ``params.joint_window_steps`` steps around costly evictions, each
    re-ordered by the order model in its context (``cosma.exact.joint.reorder_window``, with
    ``params.joint_margin`` steps of margin), until one lowers the whole order's relaxation or
    ``time_limit`` runs out. Returns (order, its relaxation, moves kept (0 or 1), moves tried).

    Where ``improve_schedule``'s random moves stall, a window solved by the model finds the
    orders that need several operators moved together: on randwire_ws_n32_s0 at ``M_R``
    (activations only) 2 of 52 windows lowered a plan the walk had left (10.27 to 9.54 MB)."""
    clock = Clock(time_limit)
    problem, plan, size = inc.problem, inc.plan(), params.joint_window_steps
    n, tried = len(inc.schedule), 0
    while not clock.expired(0.2):
        b = min(n, _pick_window(inc, size, rng) + size)
        a = max(0, b - size)
        limit = min(params.window_time, clock.left() - 0.1)
        found = reorder_window(problem, plan, a, b, limit, params.joint_margin, options.threads, options.seed + tried)
        tried += 1
        if found.schedule == inc.schedule:
            continue
        value = relaxation(problem, found.schedule, 0.5, clock)
        if value is None:
            break
        if value < bound:
            return found.schedule, value, 1, tried
    return inc.schedule, bound, 0, tried


@dataclass
class _Search:
    """The running state of one solve: the best valid plan and the figures for ``stats``."""

    best: _Layout
    best_cost: Bytes
    stats: dict = field(default_factory=dict)
    report: Callable[..., None] = lambda **_: None  # RunOptions.report: hears of every better plan

    def offer(self, inc: _Layout, source: str) -> bool:
        cost = inc.cost()
        if cost < self.best_cost:
            self.best, self.best_cost = inc, cost
            self.stats["best_from"] = source
            self.report(incumbent=cost)
            return True
        return False


@register("dnc", "divide and conquer: CP-SAT windows with pinned boundary residents, stitched, then LNS", DncParams)
@bytes_then_prefetch
def solve_dnc(problem: Problem, params: DncParams, options: RunOptions) -> SolveResult:
    return dnc_search(problem, params, options)


def dnc_search(
    problem: Problem,
    params: DncParams,
    options: RunOptions,
    starts: Sequence[tuple[Plan, str]] = (),
    floor: Bytes = 0,
) -> SolveResult:
    """The ``dnc`` solver, also taking valid plans to start from (``auto`` hands over the
    exact solver's best plan): ``(plan, source)``, each canonicalized and used if best.
    ``floor``: a lower bound the caller proved for the problem as posed; the search stops
    as soon as a plan meets it."""
    clock = Clock(options.time_limit)  # the whole solve's: every phase below takes its share
    started = time.monotonic()
    limited = options.time_limit is not None

    def left() -> float:
        seconds = clock.left()
        return math.inf if seconds is None else seconds

    if options.schedule is not None and not is_topological(problem, options.schedule):
        raise UsageError("the fixed schedule is not a topological order of the graph's operators")
    budget = options.time_limit if options.time_limit is not None else 600.0
    bound_time = min(params.bound_time, 0.05 * budget)

    # Kept back for the end: the final bound, and building, validating and scoring the plan
    # (about 0.1 ms an operator: 2 s at 20k operators).
    finish = 2 * bound_time + 1e-4 * len(problem.graph.operators)

    def reserve() -> float:
        """Seconds left for the search: what the end needs is kept back."""
        return left() - finish

    def share(cap: float) -> float:
        """The next phase's seconds: its own ``cap``, never into the final bound's reserve
        (on a 5k-operator RandWire graph the phases' caps add up to more than the limit)."""
        return max(0.0, min(cap, reserve()))

    rng = random.Random(options.seed)
    stats: dict = {}
    interrupted = False
    # A valid plan from the first instant (all evicted, on any topological order), so that
    # Ctrl-C at any point returns a plan.
    from cosma.schedules.minpeak import topological_order

    first = _Layout.empty(problem, options.schedule or tuple(topological_order(problem)))
    search = _Search(first, first.cost(), stats, options.report)
    stats["best_from"] = "all evicted"
    schedule, schedule_bound, single_optimal = first.schedule, None, False
    pool: list[list] = []  # the order search's walks: [order, its relaxation, source]
    too_big = False  # the relaxation of the chosen order could not be built in the scoring's time

    try:
        # Warm start: the best greedy baseline, canonicalized (never worse than its plan).
        def greedy(schedule: tuple[OpName, ...] | None) -> _Layout | None:
            from cosma.core.interface import run

            # Up to three quarters of the limit: on a 20k-operator RandWire graph one greedy
            # candidate takes half a minute, and its plan is what dnc returns there (past its
            # limit the baseline keeps only operands resident: gigabytes more traffic).
            limit = share(params.warm_fraction * budget) if limited else None
            if not params.warm_start or (limit is not None and limit <= 0):
                return None
            result = run(problem, "best-greedy", options=RunOptions(time_limit=limit, schedule=schedule))
            if result.plan is None:
                return None
            stats.setdefault("best_greedy_bytes", result.objective)
            return _Layout.from_plan(problem, result.plan)

        warm = greedy(options.schedule)
        stats["seconds_warm"] = round(time.monotonic() - started, 2)
        if warm is not None:
            search.offer(warm, "best-greedy")
        for plan, origin in starts:
            search.offer(_Layout.from_plan(problem, plan), origin)

        # The schedule.
        if options.schedule is not None:
            schedule, source = tuple(options.schedule), "fixed by caller"
        else:
            # The candidate whose no-address relaxation is cheapest (relax and pack nearly
            # always reaches it), then the one that overflows the capacity least.
            cands = candidate_schedules(
                problem, params.schedule, share(min(params.scheduler_time, params.schedule_fraction * budget))
            )
            stats["seconds_orders"] = round(time.monotonic() - started, 2)
            # Scored while the setup's share of the budget lasts (a relaxation cut short by it
            # scores nothing: math.inf). The least overflowing first (overflow is instant), so a
            # cut-short scoring keeps the most promising orders.
            scores = {}
            scoring = Clock(share(params.schedule_fraction * budget))
            for source, s in sorted(cands, key=lambda c: overflow(problem, c[1])):
                if scores and scoring.expired():
                    break
                value = relaxation(problem, s, min(bound_time, 1.0), scoring, params.relaxation_rate)
                scores[source] = (math.inf if value is None else value, *overflow(problem, s))
            stats["schedule_scores"] = {k: v[0] for k, v in scores.items()}
            # The order search's starts: the best few candidates, each walked in turn (one
            # start alone gets stuck: on pnasnet5large at M_H two orders of equal relaxation,
            # one improvable by 19% and the other not at all). Orders whose relaxation could
            # not be built in time are no starts.
            ranked = sorted((c for c in cands if c[0] in scores), key=lambda c: scores[c[0]])
            pool = [[s, scores[src][0], src] for src, s in ranked[: params.order_starts] if scores[src][0] < math.inf]
            if params.reorder_fraction > 0 and pool:
                kept = tried = 0
                for entry in pool:
                    entry[0], entry[1], k, t = improve_schedule(
                        problem, entry[0], entry[1], share(params.reorder_fraction * budget / len(pool)), rng
                    )
                    kept, tried = kept + k, tried + t
                stats["reorder_moves"] = f"{kept} kept of {tried}"
            if pool:
                pool.sort(key=lambda entry: entry[1])
                schedule, stats["reorder_bound"], source = pool[0]
            else:  # no candidate's relaxation could be built in time: the least overflowing
                source, schedule = ranked[0]
                too_big = True
        stats["schedule"] = source
        # The chosen order's relaxation: a plan on it that reaches this is optimal for it. When
        # scoring could not build it, neither can this nor relax and pack (a larger model of
        # the same kind) in a shorter time: their time goes to the pieces instead.
        schedule_bound = (
            None
            if too_big
            else relaxation(problem, schedule, bound_time, Clock(share(2 * bound_time)), params.relaxation_rate)
        )
        too_big = schedule_bound is None
        if too_big:
            schedule_bound = 0  # no time to build it: the trivial bound
            stats["relaxation"] = "not built: too large for the time"
        stats["seconds_setup"] = round(time.monotonic() - started, 2)
        n = len(schedule)

        def settled() -> bool:
            return search.best_cost <= floor or (
                search.best.schedule == schedule and search.best_cost <= schedule_bound
            )

        empty = _Layout.empty(problem, schedule)
        search.offer(empty, "all evicted")
        if options.schedule is None and (warm is None or warm.schedule != schedule):
            same = greedy(schedule)
            if same is not None:
                search.offer(same, "greedy on the chosen schedule")

        # A whole-schedule start: the relaxation's keep set, packed.
        if params.relax_time > 0 and not too_big:
            packed, tried = relax_and_pack(empty, share(min(params.relax_time, 0.25 * budget)), options.seed)
            stats["relax_and_pack"] = tried
            if packed is not None:
                search.offer(packed, "relax and pack")
        stats["seconds_start"] = round(time.monotonic() - started, 2)

        # 1-2. Pieces, cut where few bytes cross. From the all-evicted plan: left to right with
        # open ends (each piece decides what stays resident across its end cut, and where),
        # stitched into one plan at the end. From a warm start: each piece re-solved with the
        # incumbent's residents at both cuts as its boundary conditions.
        open_end = stats["best_from"] == "all evicted"
        base = empty if open_end else search.best
        n = len(base.schedule)
        window = n if n <= params.single_window_steps else params.window_steps
        cuts = piece_cuts(base, window)
        stats["pieces"] = len(cuts) - 1
        inc, complete = base, True
        exact_pieces = 0
        for i, (a, b) in enumerate(zip(cuts, cuts[1:])):
            if settled():
                break
            piece_time = reserve() / max(1, len(cuts) - 1 - i) if limited else params.window_time
            limit = piece_time if window == n else min(params.window_time, piece_time)
            if limit <= 0.05:
                complete = False
                break
            status, out, _ = _WindowModel(inc, a, b, open_end=open_end).solve(limit, options.threads, options.seed)
            if out is None and open_end:  # the stitched plan would miss this piece: give it up
                complete = False
                break
            if out is None:  # no plan in time: the incumbent's decisions stand
                status, out = "UNCHANGED", inc
            inc = out
            exact_pieces += status == "OPTIMAL"
            if not open_end:
                search.offer(inc, "pieces")
        stats["exact_pieces"] = exact_pieces
        stats["seconds_pieces"] = round(time.monotonic() - started, 2)
        if complete:
            stats["first_pass_bytes"] = inc.cost()
            search.offer(inc, "pieces")
        # One piece over the whole schedule, solved to optimality: nothing left to improve on it.
        single_optimal = window == n and exact_pieces == 1 and inc.cost() <= search.best_cost
        options.say(f"dnc: {n} steps, {len(cuts) - 1} pieces, first pass {search.best_cost} B")

        # 3. LNS: re-solve windows with both ends pinned to the incumbent. When the plan on the
        # current order cannot improve (it meets that order's relaxation, or windows stall) and
        # time is left, the order itself is searched again (the plans of NAS graphs meet their
        # order's relaxation within seconds: what remains to gain is in the order), and the
        # windows go on from the new order's relax-and-pack plan.
        windows = rounds = stall = 0
        current = search.best  # the plan the windows improve: on ``schedule`` after a reorder
        size = min(params.window_steps, len(current.schedule))
        todo = [c for c in cuts[1:-1]]  # windows over the cuts first
        reorders = reorders_kept = 0
        stalled, joint_moves = False, (0, 0)  # the best walk's last slice gained nothing; (kept, tried)
        can_reorder = bool(pool) and params.reorder_fraction > 0 and limited
        cheap_tried = options.schedule is not None  # the cheap bounds over every order, once

        while search.best_cost > floor:
            if limited and reserve() < 0.2:
                break
            done_here = single_optimal or (current.schedule == schedule and current.cost() <= schedule_bound)
            if done_here and not cheap_tried:
                # Before the order search spends the rest of the time: the cheap bounds over
                # every order may already prove this plan (a transformer stack: 1k operators
                # proven in 10 s instead of searching orders for the whole limit).
                cheap_tried = True
                cheap, how, _ = cheap_order_bounds(problem, min(bound_time, max(0.1, reserve() / 4)))
                if cheap > floor:
                    floor, stats["order_bound_how"] = cheap, how
                continue
            if done_here or stall >= params.stall_windows:
                if not can_reorder:
                    if done_here or not limited:
                        break
                    stall = 0  # a fixed order and time left: keep trying windows
                    continue
                reorders += 1
                slice_ = share(max(1.0, params.reorder_fraction * budget / 3))
                if slice_ < 0.2:
                    break
                # The walks in turn. (Two slices in three to the best walk was measured too: on
                # the NAS benchmark at 60 s it did no better, 70.9% against 71.2% over all tiers,
                # four RandWire cells moving by 0.2-0.7 MB either way.)
                entry = pool[reorders % len(pool)]
                best = min(pool, key=lambda e: e[1])
                if stalled and entry is best and current.schedule == schedule:
                    # The best walk's last slice found nothing: windows of the plan re-ordered by
                    # the order model (the whole problem's relaxation inside them) instead. The
                    # walk may have drifted along a plateau: the windows start from the plan.
                    stalled = False
                    new, value, k, t = reorder_windows(current, schedule_bound, slice_, rng, params, options)
                    joint_moves = (joint_moves[0] + k, joint_moves[1] + t)
                else:
                    new, value, k, _ = improve_schedule(problem, entry[0], entry[1], slice_, rng)
                    if entry is best:  # the other walks' slices leave this as it is
                        stalled = k == 0 and params.joint_window_steps > 0
                entry[0], entry[1] = new, value
                if value >= schedule_bound:
                    continue
                schedule, schedule_bound = new, value
                packed, _ = relax_and_pack(
                    _Layout.empty(problem, schedule),
                    share(min(params.relax_time, max(0.1, reserve() / 4))),
                    options.seed,
                )
                if packed is not None:
                    reorders_kept += 1
                    current, single_optimal, stall, todo = packed, False, 0, []
                    search.offer(packed, "reordered, relax and pack")
                continue
            steps = len(current.schedule)
            free: frozenset[TensorName] = frozenset()
            if todo:
                centre = todo.pop(0)
                a = max(0, centre - size // 2)
                b = min(steps, a + size)
            elif rng.random() < params.tensor_moves:
                free, a, b = _pick_tensors(current, size, rng)
            else:
                a = _pick_window(current, size, rng)
                b = min(steps, a + size)
                a = max(0, b - size)
            limit = min(params.window_time, max(0.05, reserve()))
            model = _WindowModel(current, a, b, open_end=False, free=free)
            status, out, wall = model.solve(limit, options.threads, options.seed + windows)
            options.say(f"dnc: window [{a}, {b}) + {len(free)} tensors, horizon {model.horizon}: {status} {wall:.2f}s")
            windows += 1
            if out is not None and out.cost() < current.cost():
                current, stall = out, 0
                rounds += 1
                search.offer(out, "lns")
                options.say(f"dnc: window [{a}, {b}) -> {current.cost()} B (best {search.best_cost} B)")
            else:
                stall += 1
            if status == "OPTIMAL" and wall < params.window_time / 3:
                size = min(params.max_window_steps, steps, int(size * 1.25) + 1)
            elif status != "OPTIMAL":
                size = max(8, int(size * 0.8))
        stats.update(order_searches=reorders, orders_kept=reorders_kept)
        if joint_moves[1]:
            stats["joint_windows"] = f"{joint_moves[0]} kept of {joint_moves[1]}"
        stats["seconds_lns"] = round(time.monotonic() - started, 2)
        stats.update(lns_windows=windows, lns_improvements=rounds, final_window_steps=size)
    except KeyboardInterrupt:
        interrupted = True

    # The bound: valid for the problem as posed (schedule fixed by the caller or free).
    plan = search.best.plan()
    cost = search.best_cost
    bound = 0
    if cost > 0 and not interrupted:
        try:
            same = search.best.schedule == schedule
            fixed = schedule_bound if same and schedule_bound is not None else None
            if fixed is None:
                within = Clock(max(0.0, min(bound_time, left() - bound_time)))
                fixed = relaxation(problem, search.best.schedule, bound_time, within, params.relaxation_rate) or 0
            if single_optimal and same:
                fixed = max(fixed, cost)
            stats["fixed_schedule_bound"] = fixed
            if options.schedule is not None:
                bound = max(fixed, floor)
            elif cost <= floor:
                bound = floor
                stats.setdefault("order_bound_how", "the caller's floor")
            elif left() < 0.1:
                bound, stats["order_bound_how"] = floor, "skipped: the time limit was reached"
            else:  # over every order: the order-aware relaxation (chunked on large graphs)
                limit = min(bound_time, left()) if limited else bound_time
                found = order_bound(problem, limit, options.threads, options.seed, upper=cost)
                bound, stats["order_bound_how"] = max(found.bound, floor), found.how
                stats["seconds_order_bound"] = round(found.seconds, 2)
        except KeyboardInterrupt:
            interrupted = True
    stats["bound_kind"] = "fixed schedule" if options.schedule is not None else "every schedule"
    if interrupted:
        status, message = Status.TIMEOUT, "interrupted: best plan so far"
    elif cost <= bound:
        status, message = Status.OPTIMAL, ""
    else:
        status, message = Status.FEASIBLE, ""
    return SolveResult(status, plan, bound=min(bound, cost), stats=stats, message=message)


def _pick_window(inc: _Layout, size: int, rng: random.Random) -> Step:
    """Start of the next LNS window: around an eviction, chosen with probability
    proportional to its bytes (most of the time), or anywhere."""
    steps = len(inc.schedule)
    gaps = [
        (st.size, st.uses[j], st.uses[j + 1]) for st in inc.tensors.values() for j, k in enumerate(st.keep) if not k
    ]
    if gaps and rng.random() < 0.8:
        _, u, v = rng.choices(gaps, weights=[g[0] for g in gaps])[0]
        if v - u < size:
            return max(0, min(steps - size, u - rng.randint(0, size - (v - u))))
        return max(0, rng.choice((u, v)) - rng.randint(0, size - 1))
    return rng.randint(0, max(0, steps - size))


def _pick_tensors(inc: _Layout, size: int, rng: random.Random) -> tuple[frozenset[TensorName], Step, Step]:
    """A tensor neighbourhood: one to three evicted tensors (chosen by bytes evicted), free
    over their whole lifetime, plus a small window around one of their evictions."""
    steps = len(inc.schedule)
    evicted = [st for st in inc.tensors.values() if not all(st.keep)]
    if not evicted:
        return frozenset(), 0, min(steps, size)
    weights = [st.size * st.broken() for st in evicted]
    chosen = {rng.choices(evicted, weights=weights)[0].name for _ in range(rng.randint(1, 3))}
    st = inc.tensors[next(iter(sorted(chosen)))]
    j = rng.choice([j for j, k in enumerate(st.keep) if not k] or [0])
    half = max(2, size // 8)
    return frozenset(chosen), max(0, st.uses[j] - half), min(steps, st.uses[j] + half)


__all__ = [
    "DncParams",
    "solve_dnc",
    "dnc_search",
    "crossing_bytes",
    "piece_cuts",
    "candidate_schedules",
]
