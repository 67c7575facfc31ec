"""The latency-optimal plan for a fixed operator order (CP-SAT): issue #19's exact side.

Under ``objective="latency"`` the cost model (``cosma.core.cost``) charges step ``t``
``max(compute_t, dma_t / bandwidth)`` cycles, a residency's load to its start step and a
spill to its last step ``end - 1``. For one schedule, in the terms of
``cosma.exact.model`` (chains of uses, a keep/evict decision per gap), every valid plan
is, up to moves that never slow it down, described by:

* **keep / evict** per gap, as for bytes (one reload per evicted gap: a second one only
  adds DMA);
* the **start of each load**: a reload in an evicted gap starts at any step from the
  previous residency's end to its use; a graph input's or counted weight's first load at
  any step from 0 to its first use. The residency then occupies its block's offset from
  that step on;
* the **spill step** of an activation: its first evicted gap spills it, and the cost model
  charges the spill to the residency's last step. Keeping the residency past its last use
  moves the spill onto a later step, which pays when the use step is DMA-bound and a
  later step in the gap is compute-bound, so it is a decision too (``spill_timing``). Other
  evictions move no bytes: their residencies end right after their last use (ending later
  only takes space);
* the offsets of the blocks.

Candidate steps, and why the others are never needed: a load lands on its use step or on
an earlier step with **slack** (compute above the DMA every plan puts there: graph outputs
stored, streamed weights); a spill on its block's last use or a later slack step. On a step
without slack every byte added costs its full transfer time, while the step it moves to
gains at most that time, so moving the load later to its use (or the spill back to the
last use) costs no more, frees space, and moves the same bytes. Candidates whose residency
could not fit beside some step's operands at all are dropped.

The objective, in integers: with ``K`` the least common multiple of the numerators of the
MAC rate and the bandwidth (exact ``Fraction`` s of the floats), step ``t`` costs
``max(macs_t * cc, dma_t * dc)`` units of ``1/K`` cycle. Beside the row ``t >= dma * dc``, each
step with slack ``g`` (its floor less its fixed DMA) has a second: ``t >= floor + sum of
(size * dc - g)^+`` over the copies landing there, valid because ``(a + b - g)^+ >= (a - g)^+ +
(b - g)^+``; without it the LP lands a copy larger than any step's slack in thin fractions on
many steps, each hidden, and its bound stays near the compute alone. Ties are broken by bytes
(a second solve at the optimal latency). The solve follows ``cosma.exact.solver``'s decomposition:

1. the **relaxation** without addresses (per step, the resident footprints fit the
   capacity): its optimum is a lower bound; if its boxes pack (``pack_boxes``) that plan is
   optimal. Above ``MIP_ABOVE`` decisions, after a short CP-SAT search, HiGHS's branch-and-cut
   (``highspy``; each start as landing columns, capacity rows added once broken, see
   ``_highs_solve``) takes it: on the large weight-load models it finds far better answers and
   proves some that CP-SAT's root LP never finishes (its bound is floating point, read as
   ``cosma.exact.ilp`` reads it);
2. otherwise the **joint** model: offsets per use under no-overlap-2D, each early start a
   chain of optional segments at its block's offset, floored at the relaxation's bound and
   hinted with the incumbent.

A bound that meets the incumbent in the cost model's cycles (``latency_bound_cycles``) proves it too.
The incumbent starts as the best of the warm plans the caller gives (the bytes-optimal plan
after the prefetch pass; ``exact`` adds xla-msa's and best-greedy's for the same order), and
only a plan the cost model scores strictly better replaces it, so the answer is never slower
than any of them. The reported bound in cycles is ``latency_bound_cycles``: the cost
model's ``latency_cycles`` is ``round`` of a float sum, so the exact rational bound is
shrunk by the sum's worst relative rounding error before ``round`` (monotone) is applied.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Sequence

from ortools.sat.python import cp_model

from cosma.core.analysis import make_plan
from cosma.core.clock import Clock
from cosma.core.cost import evaluate, step_profile
from cosma.core.cpsat import solve_interruptibly
from cosma.core.interface import RunOptions, Status
from cosma.core.ir import OpName, Plan, Problem, Residency, TensorKind
from cosma.exact.model import FixedInstance, use_boxes
from cosma.packing.boxes import Box, pack_boxes

# Models with at most this many keep bits and early starts get the full LP. With the excess rows (see _build)
# the LP alone closes many weight-load instances (transformer acts+weights M_R on mcu, 5,026 decisions:
# proven in 10 s at level 2, 59 s at level 1); up to 10,000 level 2 cost no zoo cell time, beyond it
# CP-SAT's root LP does not finish within a minute (efficientnet_b0, 17,526).
LINEARIZE_BELOW = 10000
# On one thread, relaxations with more decisions than INTERLEAVE_ABOVE, and at most INTERLEAVE_BELOW, get
# CP-SAT's interleaved subsolvers (LNS) after a plain search (see _phase); beyond INTERLEAVE_BELOW the
# interleaved search does not even reach the hinted plan in a minute.
INTERLEAVE_ABOVE = 1000
INTERLEAVE_BELOW = 30000
PLAIN_SHARE = 1 / 3  # of the relaxation's time, the plain search's before the interleaved one (see _phase)
PACK_TRIES = 4  # relaxation answers, best first, tried for packing
# Relaxations with more decisions than MIP_ABOVE go to HiGHS's branch-and-cut first (see _phase): on the large
# weight-load models its root cuts and sub-MIP heuristics find far better answers than CP-SAT (densenet121
# acts+weights M_H: 2% faster, given a minute) and it proves the transformer's (acts+weights M_H on mcu) in
# 15-30 s, where CP-SAT's root LP stalls.
MIP_ABOVE = 10000
MIP_AFTER = 0.1  # of the relaxation's time, the plain search's before HiGHS
MIP_SHARE = 0.8  # of the time left then, HiGHS's; CP-SAT searches on from its answer with the rest
HIGHS_PACE = 0.85  # of the time to its deadline, HiGHS's time limit (it overruns its limit by up to 12%)
MAX_SCALED = 2**60  # a model whose step costs could sum past this (int64 risk) is not built: warm plan, no bound


@dataclass(frozen=True)
class LatencyParams:
    """Switches of the latency model; every default is the exact setting."""

    relaxation: bool = True  # solve the no-address relaxation first and try to pack its answer
    joint: bool = True  # fall back to the joint model with offsets (off: stop with the relaxation's bound)
    spill_timing: bool = True  # let a spilling residency outlive its last use so its spill lands on a slack step
    tie_break: bool = True  # at the optimal latency, a second solve for the fewest bytes
    mip: bool = True  # relaxations above MIP_ABOVE decisions: HiGHS's branch-and-cut first (when highspy is there)
    pack_time_limit: float = 2.0  # seconds one packing check may take (at most a quarter of the time left)
    solver_params: str = ""  # CP-SAT parameters in protobuf text format, merged last


@dataclass(frozen=True)
class LatencyScale:
    """Exact integer units for the roofline: ``1/k`` cycle. A step costs
    ``max(macs * cc, dma * dc)`` units (``macs / macs_per_cycle`` and ``dma / bandwidth``, times ``k``)."""

    k: int
    cc: int  # units per MAC
    dc: int  # units per DMA byte

    @classmethod
    def of(cls, problem: Problem) -> "LatencyScale":
        m = Fraction(problem.hardware.macs_per_cycle)
        b = Fraction(problem.hardware.dram_bytes_per_cycle)
        k = math.lcm(m.numerator, b.numerator)
        return cls(k, m.denominator * k // m.numerator, b.denominator * k // b.numerator)


def scaled_latency(problem: Problem, plan: Plan, scale: LatencyScale | None = None) -> int:
    """The exact latency of ``plan`` in units of ``1/scale.k`` cycle (the cost model's sum without floats)."""
    scale = scale or LatencyScale.of(problem)
    _, dma = step_profile(problem, plan)
    graph = problem.graph
    macs = [graph.operators[graph.op_index[name]].macs for name in plan.schedule]
    return sum(max(m * scale.cc, d * scale.dc) for m, d in zip(macs, dma))


def latency_bound_cycles(scaled_bound: int, scale: LatencyScale, n_steps: int) -> int:
    """A lower bound on the cost model's ``latency_cycles`` of every plan whose exact latency is at
    least ``scaled_bound / scale.k`` cycles. The cost model sums ``n_steps`` floats (each a correctly
    rounded quotient): its result is at least the exact sum times ``1 - (n_steps + 2) * 2**-52``;
    ``round`` is monotone, so ``round`` of the shrunk bound is below ``round`` of every such sum."""
    shrunk = Fraction(max(0, scaled_bound), scale.k) * (1 - Fraction(n_steps + 2, 2**52))
    return max(0, round(shrunk))


def order_free_bound(problem: Problem, moved_bytes: int, scale: LatencyScale | None = None) -> int:
    """A lower bound, in ``1/scale.k`` cycles, on the latency of every plan under **every** order that
    loads and spills at least ``moved_bytes`` (compulsory loads plus a bound on non-compulsory bytes).

    Each operator's compute and its fixed DMA (its graph outputs stored, its streamed weights) do not
    depend on the order, so step costs are at least ``max(compute, fixed / bw)``; the moved bytes land
    on steps too, free only within the compute slack ``max(0, compute - fixed / bw)`` of each step."""
    scale = scale or LatencyScale.of(problem)
    fixed = _fixed_dma_per_op(problem)
    base = slack = 0
    for op in problem.graph.operators:
        c, f = op.macs * scale.cc, fixed[op.name] * scale.dc
        base += max(c, f)
        slack += max(0, c - f)
    return base + max(0, moved_bytes * scale.dc - slack)


def compulsory_loads(problem: Problem) -> int:
    """Bytes of managed graph inputs and weights: every plan loads each once."""
    kinds = (TensorKind.INPUT, TensorKind.WEIGHT)
    tensors = problem.graph.tensors
    return sum(
        tensors[t].size for t in problem.managed_tensors if tensors[t].kind in kinds and problem.graph.consumers[t]
    )


def _fixed_dma_per_op(problem: Problem) -> dict[OpName, int]:
    """Bytes every plan moves at an operator's step: its graph outputs stored, its streamed weights."""
    graph = problem.graph
    out = {}
    for op in graph.operators:
        stored = sum(graph.tensors[t].size for t in op.outputs if graph.tensors[t].kind is TensorKind.OUTPUT)
        streamed = sum(graph.tensors[t].size for t in op.inputs if not problem.is_managed(t))
        out[op.name] = stored + streamed
    return out


# ----- the instance: loads and spills whose step is a decision -----


@dataclass(frozen=True)
class Load:
    """A load whose start step is a decision: a reload in gap ``gap``, or a first load (``gap`` None)."""

    chain: int
    use: int  # index of the use its block starts at (the step it must be resident by)
    gap: int | None  # the evicted gap it serves; None: an input's or weight's first load (always made)
    starts: tuple[int, ...]  # candidate start steps, ascending; the last is the use step


@dataclass(frozen=True)
class SpillChoice:
    """Where an activation's spill lands when gap ``gap`` (its ``k``-th) is its first eviction."""

    chain: int
    k: int  # index of the gap in the chain (the block ends at uses[k])
    gap: int
    steps: tuple[int, ...]  # candidate spill steps, ascending; the first is uses[k] (no extension)


@dataclass
class LatencyInstance:
    """A ``FixedInstance`` with the roofline data and the timing decisions."""

    inst: FixedInstance
    scale: LatencyScale
    compute: list[int]  # units per step from compute
    fixed: list[int]  # DMA bytes per step every plan moves
    loads: list[Load] = field(default_factory=list)
    spills: list[SpillChoice] = field(default_factory=list)
    gap_load: dict[int, int] = field(default_factory=dict)  # gap -> index in loads
    first_load: dict[int, int] = field(default_factory=dict)  # chain -> index in loads
    gap_spill: dict[int, int] = field(default_factory=dict)  # gap -> index in spills

    @classmethod
    def build(cls, inst: FixedInstance, spill_timing: bool = True) -> "LatencyInstance":
        problem = inst.problem
        graph = problem.graph
        scale = LatencyScale.of(problem)
        fixed_op = _fixed_dma_per_op(problem)
        ops = [graph.operators[graph.op_index[name]] for name in inst.schedule]
        lat = cls(inst, scale, [op.macs * scale.cc for op in ops], [fixed_op[op.name] for op in ops])
        slack = [c > f * scale.dc for c, f in zip(lat.compute, lat.fixed)]

        def fits(units: int, step: int) -> bool:
            return inst.base[step] + units <= inst.capacity

        for ci, c in enumerate(inst.chains):
            kind = graph.tensors[c.name].kind
            if kind in (TensorKind.INPUT, TensorKind.WEIGHT):
                lat.first_load[ci] = len(lat.loads)
                lat.loads.append(Load(ci, 0, None, _starts(0, c.uses[0], c.units, c.size, slack, fits)))
            for i, g in enumerate(inst.gaps_of(ci)):
                lat.gap_load[g] = len(lat.loads)
                lat.loads.append(
                    Load(ci, i + 1, g, _starts(c.uses[i] + 1, c.uses[i + 1], c.units, c.size, slack, fits))
                )
                if c.spills:
                    steps = [c.uses[i]]
                    if spill_timing and c.size > 0:
                        for s in range(c.uses[i] + 1, c.uses[i + 1]):
                            if not fits(c.units, s):
                                break
                            if slack[s]:
                                steps.append(s)
                    lat.gap_spill[g] = len(lat.spills)
                    lat.spills.append(SpillChoice(ci, i, g, tuple(steps)))
        return lat

    def n_steps(self) -> int:
        return len(self.inst.schedule)

    # ----- decisions -> plans -----

    def plan(self, dec: "Decisions", offsets: Sequence[int]) -> Plan:
        """The plan of ``dec`` with one offset (alignment units) per block of ``self.blocks(dec)``."""
        align = self.inst.problem.alignment
        residencies = [
            Residency(self.inst.chains[ci].name, lo, hi, off * align)
            for (ci, lo, hi, _), off in zip(self.blocks(dec), offsets)
        ]
        return make_plan(self.inst.problem, self.inst.schedule, residencies)

    def blocks(self, dec: "Decisions") -> list[tuple[int, int, int, int]]:
        """Residencies as ``(chain, start step, end step, first use index)``."""
        out = []
        for ci, a, b in self.inst.blocks(dec.keep):
            c = self.inst.chains[ci]
            lo, hi = c.uses[a], c.uses[b] + 1
            load = self.first_load.get(ci) if a == 0 else self.gap_load[c.first_gap + a - 1]
            if load is not None:
                lo = dec.starts[load]
            if b < len(c.uses) - 1:
                spill = self.gap_spill.get(c.first_gap + b)
                if spill is not None and spill in dec.spill_steps:
                    hi = dec.spill_steps[spill] + 1
            out.append((ci, lo, hi, a))
        return out

    def boxes(self, dec: "Decisions") -> list[Box]:
        return [Box(lo, hi, self.inst.chains[ci].units) for ci, lo, hi, _ in self.blocks(dec)]

    def decisions(self, plan: Plan) -> tuple["Decisions", list[list[int]]] | None:
        """The decisions and per-use offsets of a valid plan for this schedule, starts and spill steps
        moved to the nearest candidate that is no earlier (loads) or no later (spills): never slower."""
        canon = self.inst.canonical(plan)
        if canon is None:
            return None
        keep, offsets = canon
        by_tensor: dict[str, list[Residency]] = {}
        for r in plan.residencies:
            by_tensor.setdefault(r.tensor, []).append(r)
        starts, spill_steps = {}, {}
        for li, load in enumerate(self.loads):
            if load.gap is not None and keep[load.gap]:
                continue
            c = self.inst.chains[load.chain]
            u = c.uses[load.use]
            r = next(r for r in by_tensor[c.name] if r.start <= u < r.end)
            starts[li] = min(s for s in load.starts if s >= min(r.start, u))
        for si, sp in enumerate(self.spills):
            c = self.inst.chains[sp.chain]
            if keep[sp.gap] or any(not keep[g] for g in range(c.first_gap, sp.gap)):
                continue
            u = c.uses[sp.k]
            r = next(r for r in by_tensor[c.name] if r.start <= u < r.end)
            spill_steps[si] = max(s for s in sp.steps if s <= max(u, r.end - 1))
            # the reload may not start before the extended residency ends
            li = self.gap_load[sp.gap]
            if starts[li] <= spill_steps[si]:
                spill_steps[si] = max(s for s in sp.steps if s < starts[li])
        return Decisions(list(keep), starts, spill_steps), offsets


@dataclass
class Decisions:
    keep: list[bool]  # per gap
    starts: dict[int, int]  # load index -> start step (loads made only)
    spill_steps: dict[int, int]  # spill index -> step its DMA lands on (first evictions only)


def _starts(lo: int, use: int, units: int, size: int, slack: list[bool], fits) -> tuple[int, ...]:
    """Candidate starts of a load resident by ``use``, earliest ``lo``: slack steps from which the
    residency fits beside every step's operands up to ``use``, and ``use`` itself."""
    out = [use]
    if size > 0:
        for s in range(use - 1, lo - 1, -1):
            if not fits(units, s):
                break
            if slack[s]:
                out.append(s)
    return tuple(reversed(out))


# ----- the model -----


@dataclass
class _Vars:
    keep: list[Any]
    load_y: list[list[Any]]  # per load, per candidate j: "started at or before starts[j]" (last: made)
    spill_w: list[list[Any]]  # per spill, per candidate j: "spill lands at or after steps[j]" (first: spilled here)
    offsets: list[list[Any]] | None  # per chain, per use (joint model only)
    latency: Any  # units of 1/k cycle
    bytes: Any
    derived: list[tuple[int, Any, Any]] = field(default_factory=list)  # (gap, first eviction, kept so far)
    steps: list[tuple[Any, int, int, list]] = field(default_factory=list)  # (var, floor, fixed, dma terms)
    order_rows: set[int] = field(default_factory=set)  # indices of the load encodings' "y_j <= y_j+1" rows
    capacity_rows: list[int] = field(default_factory=list)  # indices of the per-step capacity rows


def _build(
    lat: LatencyInstance,
    forced: set[int],
    addresses: bool,
    floor: int = 0,
    latency_cap: int | None = None,
    minimize_bytes: bool = False,
) -> tuple[cp_model.CpModel, _Vars]:
    """One model for both phases: keep bits, timing order-encodings, per-step capacity rows and the
    roofline; with ``addresses`` also offsets under no-overlap-2D (the joint model)."""
    inst = lat.inst
    model = cp_model.CpModel()
    n = lat.n_steps()
    cap = inst.capacity
    # Variables: keep bits, then the timing of every load and spill (order encodings).
    keep = [model.new_bool_var(f"keep_{g}") for g in range(len(inst.gaps))]
    for g in forced:
        model.add(keep[g] == 0)
    load_y: list[list[Any]] = []
    order_rows: set[int] = set()
    for li, load in enumerate(lat.loads):
        made = 1 if load.gap is None else ~keep[load.gap]
        ys = [model.new_bool_var(f"y_{li}_{j}") for j in range(len(load.starts) - 1)] + [made]
        for a, b in zip(ys, ys[1:]):
            if not isinstance(b, int):  # a first load is always made: nothing to imply
                order_rows.add(len(model.proto.constraints))
                model.add(a <= b)  # linear, so the LP relaxation sees it at every linearization level
        load_y.append(ys)
    # first[g]: gap g is its activation's first eviction (every earlier gap kept): it spills.
    first: dict[int, Any] = {}
    derived_vars: list[tuple[int, Any, Any]] = []
    spilled_terms = []
    for ci, c in enumerate(inst.chains):
        if not c.spills:
            continue
        prefix: Any = 1  # every gap so far kept
        for g in inst.gaps_of(ci):
            f = model.new_bool_var(f"first_{g}")
            if isinstance(prefix, int):
                model.add(f == 1 - keep[g])
            else:
                model.add(f <= prefix)
                model.add(f <= 1 - keep[g])
                model.add(f >= prefix - keep[g])
            first[g] = f
            spilled_terms.append((c.size, f))
            nxt = model.new_bool_var(f"kept_to_{g}")
            if isinstance(prefix, int):
                model.add(nxt == keep[g])
            else:
                model.add(nxt <= prefix)
                model.add(nxt <= keep[g])
                model.add(nxt >= prefix + keep[g] - 1)
            derived_vars.append((g, f, nxt))
            prefix = nxt
    spill_w: list[list[Any]] = []
    for si, sp in enumerate(lat.spills):
        ws = [first[sp.gap]] + [model.new_bool_var(f"w_{si}_{j}") for j in range(1, len(sp.steps))]
        for a, b in zip(ws, ws[1:]):
            model.add(b <= a)
        spill_w.append(ws)
        # The reload in the same gap starts after the extended residency ends.
        load = lat.loads[lat.gap_load[sp.gap]]
        for j in range(1, len(sp.steps)):
            i = max((i for i, s in enumerate(load.starts) if s <= sp.steps[j]), default=None)
            if i is not None:
                model.add(ws[j] + load_y[lat.gap_load[sp.gap]][i] <= 1)

    # Occupancy: who may be resident at each step beyond the operands (units, literal).
    occupants: list[list[tuple[int, Any]]] = [[] for _ in range(n)]
    for g, gap in enumerate(inst.gaps):
        if g not in forced:
            for s in range(gap.lo, gap.hi):
                occupants[s].append((inst.chains[gap.chain].units, keep[g]))
    segments: list[tuple[int, int, int, int, Any]] = []  # (chain, use index, lo, hi, presence)
    for li, load in enumerate(lat.loads):
        units = inst.chains[load.chain].units
        for j in range(len(load.starts) - 1):
            lo, hi = load.starts[j], load.starts[j + 1]
            segments.append((load.chain, load.use, lo, hi, load_y[li][j]))
            for s in range(lo, hi):
                occupants[s].append((units, load_y[li][j]))
    for si, sp in enumerate(lat.spills):
        units = inst.chains[sp.chain].units
        for j in range(1, len(sp.steps)):
            lo, hi = sp.steps[j - 1] + 1, sp.steps[j] + 1
            segments.append((sp.chain, sp.k, lo, hi, spill_w[si][j]))
            for s in range(lo, hi):
                occupants[s].append((units, spill_w[si][j]))
    capacity_rows = []
    for s in range(n):
        room = cap - inst.base[s]
        if sum(u for u, _ in occupants[s]) > room:
            capacity_rows.append(len(model.proto.constraints))
            model.add(sum(u * lit for u, lit in occupants[s]) <= room)

    # The roofline: DMA bytes per step as an expression, one max per step that can vary.
    dma_terms: list[list[tuple[int, Any]]] = [[] for _ in range(n)]
    for li, load in enumerate(lat.loads):
        size = inst.chains[load.chain].size
        if size == 0:
            continue
        ys = load_y[li]
        for j, s in enumerate(load.starts):
            dma_terms[s].append((size, ys[j]))
            if j > 0:
                dma_terms[s].append((-size, ys[j - 1]))
    for si, sp in enumerate(lat.spills):
        size = inst.chains[sp.chain].size
        if size == 0:
            continue
        ws = spill_w[si]
        for j, s in enumerate(sp.steps):
            dma_terms[s].append((size, ws[j]))
            if j + 1 < len(ws):
                dma_terms[s].append((-size, ws[j + 1]))
    scale = lat.scale
    constant = 0
    step_vars = []
    step_rows: list[tuple[Any, int, int, list]] = []
    for s in range(n):
        fixed = lat.fixed[s] * scale.dc
        if not dma_terms[s]:
            constant += max(lat.compute[s], fixed)
            continue
        most = lat.fixed[s] + sum(c for c, _ in dma_terms[s] if c > 0)
        lo = max(lat.compute[s], fixed)
        hi = max(lat.compute[s], most * scale.dc)
        if hi == lo:
            constant += lo
            continue
        v = model.new_int_var(lo, hi, f"t_{s}")
        model.add(v >= fixed + sum(c * scale.dc * lit for c, lit in dma_terms[s]))
        # Each copy landing here alone costs what it exceeds of the step's slack: with slack g = lo - fixed,
        # lo + (sum of sizes * dc - g)^+ >= lo + sum of (size * dc - g)^+. Redundant for integer landings,
        # this row keeps the LP from spreading one large copy thinly over the slack of many steps.
        slack = lo - fixed
        excess = [(c // abs(c) * max(0, abs(c) * scale.dc - slack), lit) for c, lit in dma_terms[s]]
        if slack > 0 and any(e for e, _ in excess):
            model.add(v >= lo + sum(e * lit for e, lit in excess if e))
        step_vars.append(v)
        step_rows.append((v, lo, fixed, dma_terms[s]))
    latency = sum(step_vars) + constant

    bytes_terms = []
    for ci, c in enumerate(inst.chains):
        for g in inst.gaps_of(ci):
            bytes_terms.append(c.size * (1 - keep[g]))
    nc_bytes = sum(bytes_terms) + sum(size * f for size, f in spilled_terms)

    offsets = None
    if addresses:
        offsets, x_iv, y_iv = use_boxes(model, inst, keep, forced)
        for k, (ci, use, lo, hi, lit) in enumerate(segments):
            units = inst.chains[ci].units
            x_iv.append(model.new_optional_fixed_size_interval_var(lo, hi - lo, lit, f"xs_{k}"))
            y_iv.append(model.new_optional_fixed_size_interval_var(offsets[ci][use], units, lit, f"ys_{k}"))
        model.add_no_overlap_2d(x_iv, y_iv)

    if latency_cap is not None:
        model.add(latency <= latency_cap)
    if minimize_bytes:
        model.minimize(nc_bytes)
    else:
        if floor > 0:
            model.add(latency >= floor)
        model.minimize(latency)
    v = _Vars(keep, load_y, spill_w, offsets, latency, nc_bytes, derived_vars, step_rows, order_rows, capacity_rows)
    return model, v


def _hint(model: cp_model.CpModel, lat: LatencyInstance, v: _Vars, dec: Decisions, offsets) -> None:
    """Hint every variable with ``dec`` (a complete hint: CP-SAT then starts from it at once)."""
    values: dict[int, int] = {}

    def put(var: Any, value: int) -> None:
        model.add_hint(var, value)
        values[var.index] = value

    def lit(x: Any) -> int:
        if isinstance(x, int):
            return x
        return values[x.index] if x.index >= 0 else 1 - values[-x.index - 1]

    for var, value in zip(v.keep, dec.keep):
        put(var, int(bool(value)))
    chain, prefix = -1, 1
    for g, first, kept in v.derived:  # chain by chain, each chain's gaps in order (see _build)
        if lat.inst.gaps[g].chain != chain:
            chain, prefix = lat.inst.gaps[g].chain, 1
        put(first, int(prefix and not dec.keep[g]))
        prefix = int(prefix and dec.keep[g])
        put(kept, prefix)
    for li, load in enumerate(lat.loads):
        start = dec.starts.get(li)
        for j in range(len(load.starts) - 1):
            put(v.load_y[li][j], int(start is not None and start <= load.starts[j]))
    for si, sp in enumerate(lat.spills):
        step = dec.spill_steps.get(si)
        for j in range(1, len(sp.steps)):
            put(v.spill_w[si][j], int(step is not None and step >= sp.steps[j]))
    for var, floor, fixed, terms in v.steps:
        put(var, max(floor, fixed + sum(c * lat.scale.dc * lit(x) for c, x in terms)))
    if v.offsets is not None and offsets is not None:
        for row, values_row in zip(v.offsets, offsets):
            for var, value in zip(row, values_row):
                model.add_hint(var, int(value))


def _extract(solver, lat: LatencyInstance, v: _Vars) -> Decisions:
    keep = [bool(solver.value(k)) for k in v.keep]
    starts, spill_steps = {}, {}
    for li, load in enumerate(lat.loads):
        values = [bool(solver.value(y)) for y in v.load_y[li]]
        if values[-1]:
            starts[li] = load.starts[values.index(True)]
    for si, sp in enumerate(lat.spills):
        values = [bool(solver.value(w)) for w in v.spill_w[si]]
        if values[0]:
            spill_steps[si] = sp.steps[max(j for j, on in enumerate(values) if on)]
    return Decisions(keep, starts, spill_steps)


def _block_offsets(lat: LatencyInstance, dec: Decisions, use_offsets: Sequence[Sequence[int]]) -> list[int]:
    return [use_offsets[ci][a] for ci, _, _, a in lat.blocks(dec)]


# ----- HiGHS on the relaxation -----


@dataclass
class _MipAnswer:
    """What HiGHS's branch-and-cut gave on a model: its best answer (values per CP-SAT variable, None when it
    found none), a lower bound on the objective and whether it closed the gap."""

    values: list[float] | None
    objective: int | None  # of ``values``
    bound: int
    optimal: bool

    def value(self, x: Any) -> int:
        """The answer's value of a CP-SAT literal, variable or constant (``_extract`` reads answers so)."""
        if isinstance(x, int):
            return x
        if x.index < 0:
            return 1 - round(self.values[-x.index - 1])
        return round(self.values[x.index])


def _highs_solve(
    model: cp_model.CpModel, deadline: float | None, threads: int, v: _Vars | None = None
) -> _MipAnswer | None:
    """HiGHS's branch-and-cut on ``model``, whose constraints are all linear (the relaxation's), from its hint,
    until about ``deadline`` (a ``time.perf_counter()`` time, the model's conversion included); None when highspy
    is missing or the model has another constraint. The bound is HiGHS's dual bound,
    rounded up to an integer (the objective's coefficients are integers) after an absolute tolerance of 1e-6
    (``cosma.exact.ilp`` reads its bound the same way); where HiGHS closes the gap (below 1, an integer
    objective) the bound is its answer's objective.

    With ``v`` (the model's variables from ``_build``), HiGHS gets the same model in other columns, which
    solves far faster: each load's start as **landing** variables ``x_j`` (``y_j = x_0 + ... + x_j``,
    ``sum x = made``) instead of the order encoding, whose ``y_j <= y_j+1`` rows (one per candidate: 17k
    on efficientnet_b0 with weights) vanish into ``x >= 0``; and the capacity rows, dense in landings, held
    back and added only once an answer violates them (then solved again). Every answer HiGHS gives is a
    relaxation's optimum or bound, so the bound stays valid; only answers that satisfy every row are kept.
    Where the LP without the capacity rows breaks one of them (memory binds), HiGHS gets the order encoding.
    On efficientnet_b0 acts+weights M_R (mcu) the root LP takes 0.1 s instead of 15-27 s, and the
    relaxation is proven in 25 s where the order encoding's bound stayed at its LP after 196 s."""
    try:
        import highspy
        import numpy as np
    except ImportError:
        return None
    proto = model.proto
    n = len(proto.variables)
    rows = []
    for ct in proto.constraints:
        if not ct.has_linear() or len(ct.enforcement_literal) or len(ct.linear.domain) != 2:
            return None
        lo, hi = ct.linear.domain
        coeffs: dict[int, int] = {}
        for ref, c in zip(ct.linear.vars, ct.linear.coeffs):
            if ref < 0:  # not x = 1 - x
                lo, hi, ref, c = lo - c, hi - c, -ref - 1, -c
            coeffs[ref] = coeffs.get(ref, 0) + c
        rows.append((lo, hi, coeffs))
    cost = np.zeros(n)
    for ref, c in zip(proto.objective.vars, proto.objective.coeffs):
        if ref < 0:
            return None
        cost[ref] += c
    domains = [list(d.domain) for d in proto.variables]
    lower, upper = [d[0] for d in domains], [d[-1] for d in domains]
    hint = proto.solution_hint
    start = None
    if len(hint.vars) == n:
        start = [0] * n
        for ref, value in zip(hint.vars, hint.values):
            start[ref] = value
    lazy: list[tuple[int, int, dict[int, int]]] = []
    prefix: dict[int, list[int]] = {}  # a substituted y column -> its landing columns
    ncols = n
    if v is not None:
        lazy = [rows[i] for i in v.capacity_rows]
        dropped = v.order_rows | set(v.capacity_rows)
        rows = [row for i, row in enumerate(rows) if i not in dropped]
        for ys in v.load_y:
            xs = list(range(ncols, ncols + len(ys)))
            ncols += len(ys)
            for j, y in enumerate(ys[:-1]):
                prefix[y.index] = xs[: j + 1]
                lower[y.index] = upper[y.index] = 0  # unused from now on
            made = ys[-1]  # sum of landings = made (1, or a reload's "not kept")
            row = {x: 1 for x in xs}
            if isinstance(made, int):
                rows.append((made, made, row))
            elif made.index < 0:
                rows.append((1, 1, {**row, -made.index - 1: 1}))
            else:
                rows.append((0, 0, {**row, made.index: -1}))
            if start is not None:
                ys_values = [_lit_value(start, y) for y in ys]
                start += [ys_values[0]] + [b - a for a, b in zip(ys_values, ys_values[1:])]
        lower += [0] * (ncols - n)
        upper += [1] * (ncols - n)
        cost = np.concatenate([cost, np.zeros(ncols - n)])

        def substitute(row: tuple[int, int, dict[int, int]]) -> tuple[int, int, dict[int, int]]:
            out: dict[int, int] = {}
            for ref, c in row[2].items():
                for col in prefix.get(ref, (ref,)):
                    out[col] = out.get(col, 0) + c
            return row[0], row[1], {col: c for col, c in out.items() if c}

        rows = [substitute(row) for row in rows]
        lazy = [substitute(row) for row in lazy]
        if any(cost[ref] for ref in prefix):
            return None
    from cosma.exact.ilp import quiet_stdout

    with quiet_stdout(True):  # highspy prints a banner on stdout
        h = highspy.Highs()
    inf = highspy.kHighsInf
    for key, value in (("output_flag", False), ("threads", max(1, threads)), ("mip_rel_gap", 0.0)):
        h.setOptionValue(key, value)
    h.setOptionValue("mip_abs_gap", 0.99)  # an integer objective: a gap below 1 is closed
    h.addVars(ncols, np.array(lower, float), np.array(upper, float))
    idx = np.arange(ncols, dtype=np.int32)
    h.changeColsCost(ncols, idx, cost)

    def add_rows(block: list[tuple[int, int, dict[int, int]]]) -> None:
        starts, index, coef = [], [], []
        for _, _, coeffs in block:
            starts.append(len(index))
            index += coeffs
            coef += coeffs.values()
        h.addRows(
            len(block),
            np.array([-inf if lo <= cp_model.INT_MIN else lo for lo, _, _ in block], float),
            np.array([inf if hi >= cp_model.INT_MAX else hi for _, hi, _ in block], float),
            len(index),
            np.array(starts, np.int32),
            np.array(index, np.int32),
            np.array(coef, float),
        )

    def holds(row: tuple[int, int, dict[int, int]], x: Sequence[float]) -> bool:
        total = sum(c * x[col] for col, c in row[2].items())
        return row[0] - 1e-6 <= total <= row[1] + 1e-6

    add_rows(rows)
    if lazy:
        # Where the capacity binds already in the LP (densenet121: every row it breaks, added, left HiGHS
        # slower than the order encoding), the order encoding with every row is the better model.
        if deadline is not None:
            h.setOptionValue("time_limit", max(0.01, HIGHS_PACE * (deadline - time.perf_counter())))
        h.run()
        if h.getModelStatus() != highspy.HighsModelStatus.kOptimal:
            return _highs_solve(model, deadline, threads)
        lp = h.getSolution().col_value
        if not all(holds(row, lp) for row in lazy):
            return _highs_solve(model, deadline, threads)
    h.changeColsIntegrality(ncols, idx, np.array([highspy.HighsVarType.kInteger] * ncols))
    offset = proto.objective.offset
    values = objective = None
    bound, optimal = 0, False
    while True:
        if start is not None:
            h.setSolution(ncols, idx, np.array(start, float))
        if deadline is not None:  # HiGHS looks at its clock seldom: 2-6 s late on densenet121's 50 s (shared machine)
            h.setOptionValue("time_limit", max(0.01, HIGHS_PACE * (deadline - time.perf_counter())))
        h.run()
        info = h.getInfo()
        raw = info.mip_dual_bound + offset
        bound = max(bound, math.ceil(raw - 1e-6) if math.isfinite(raw) else 0)  # of a relaxation: valid
        if info.primal_solution_status != 2:  # kSolutionStatusFeasible
            break
        x = [round(value) for value in h.getSolution().col_value]
        violated = [row for row in lazy if not holds(row, x)]
        if not violated:
            values = [sum(x[col] for col in prefix[i]) if i in prefix else x[i] for i in range(n)]
            terms = zip(proto.objective.vars, proto.objective.coeffs)
            objective = round(offset + sum(c * values[ref] for ref, c in terms))
            optimal = h.getModelStatus() == highspy.HighsModelStatus.kOptimal
            break
        # a capacity row the answer breaks: add those rows and solve again (the best valid answer is the hint)
        if deadline is not None and time.perf_counter() >= deadline:
            break
        lazy = [row for row in lazy if holds(row, x)]
        add_rows(violated)
    if optimal:
        bound = objective
    return _MipAnswer(values, objective, max(0, min(bound, objective) if objective is not None else bound), optimal)


def _lit_value(values: Sequence[int], lit: Any) -> int:
    """The value of a CP-SAT literal (or a constant) in a full assignment of the model's variables."""
    if isinstance(lit, int):
        return lit
    return 1 - values[-lit.index - 1] if lit.index < 0 else values[lit.index]


# ----- the solve -----


@dataclass
class LatencyOutcome:
    """The answer for one schedule under ``objective="latency"``."""

    status: Status  # OPTIMAL: proven latency-optimal for this schedule
    plan: Plan
    scaled: int  # exact latency of ``plan`` in units of 1/scale.k cycle
    scaled_bound: int  # proven lower bound for this schedule, same units
    bound: int  # lower bound on the cost model's latency_cycles for this schedule
    stats: dict[str, Any] = field(default_factory=dict)
    message: str = ""


class _Best:
    """The best plan so far by the cost model's key (latency, then bytes)."""

    def __init__(self, problem: Problem, plan: Plan, source: str):
        self.problem, self.plan, self.source = problem, plan, source
        self.key = evaluate(problem, plan).key("latency")
        self.scaled = scaled_latency(problem, plan)

    def offer(self, plan: Plan, source: str) -> bool:
        """Keep ``plan`` when its exact latency, then bytes, are lower, and the cost model's rounded
        latency is no higher (so the answer is never slower, by the cost model's own figure)."""
        key = evaluate(self.problem, plan).key("latency")
        scaled = scaled_latency(self.problem, plan)
        if (scaled, key[1]) < (self.scaled, self.key[1]) and key[0] <= self.key[0]:
            self.plan, self.key, self.scaled, self.source = plan, key, scaled, source
            return True
        return False


def _solver(
    params: LatencyParams,
    options: RunOptions,
    clock: Clock,
    size: int,
    reserve: float = 0.0,
    share: float = 1.0,
    interleave: bool = False,
) -> cp_model.CpSolver:
    """A CP-SAT solver on ``share`` of the time left less ``reserve`` seconds, for a model of ``size``
    decisions: full LP linearization only up to ``LINEARIZE_BELOW`` (beyond, its root LP alone can
    take the whole limit); with ``interleave``, CP-SAT's subsolvers (LNS among them) take turns on
    the one thread."""
    solver = cp_model.CpSolver()
    solver.parameters.num_workers = max(1, options.threads)
    solver.parameters.random_seed = options.seed
    solver.parameters.linearization_level = 2 if size <= LINEARIZE_BELOW else 1
    solver.parameters.interleave_search = interleave
    left = clock.left()
    if left is not None:
        solver.parameters.max_time_in_seconds = max(0.01, (left - reserve) * share)
    if params.solver_params and not solver.parameters.merge_text_format(params.solver_params):
        from cosma.core.errors import UsageError

        raise UsageError(f"bad CP-SAT parameters {params.solver_params!r} (protobuf text format)")
    return solver


class _Collect(cp_model.CpSolverSolutionCallback):
    """Keeps the decisions of every improving relaxation solution (the best may not pack)."""

    def __init__(self, lat: LatencyInstance, v: _Vars):
        super().__init__()
        self.lat, self.v, self.found = lat, v, []

    def on_solution_callback(self) -> None:
        self.found.append(_extract(self, self.lat, self.v))


class _Callback(cp_model.CpSolverSolutionCallback):
    def __init__(self, lat: LatencyInstance, v: _Vars, best: _Best):
        super().__init__()
        self.lat, self.v, self.best = lat, v, best

    def on_solution_callback(self) -> None:
        dec = _extract(self, self.lat, self.v)
        use_offsets = [[self.value(o) for o in row] for row in self.v.offsets]
        self.best.offer(self.lat.plan(dec, _block_offsets(self.lat, dec, use_offsets)), "joint")


def _phase(
    lat: LatencyInstance,
    forced: set[int],
    best: _Best,
    params: LatencyParams,
    options: RunOptions,
    clock: Clock,
    stats: dict[str, Any],
    latency_cap: int | None = None,
) -> tuple[int, bool]:
    """Relaxation, packing check, joint model; minimizing latency, or (``latency_cap`` given) bytes at
    that latency. Offers every plan to ``best``. Returns (proven lower bound on what it minimized, proven)."""
    minimize_bytes = latency_cap is not None
    tag = "tie" if minimize_bytes else "latency"
    canon = lat.decisions(best.plan)
    floor = 0
    size = len(lat.inst.gaps) + sum(len(ld.starts) - 1 for ld in lat.loads)
    if params.relaxation:
        model, v = _build(lat, forced, False, latency_cap=latency_cap, minimize_bytes=minimize_bytes)
        if canon is not None:
            _hint(model, lat, v, canon[0], None)
        left = clock.left()
        reserve = 0.0 if left is None else min(params.pack_time_limit, left / 10)  # to pack its answers
        collect = _Collect(lat, v)
        # The plain search proves; where it does not within a third of the time, on one thread, the interleaved
        # subsolvers (LNS) take the rest from its best answer: on the large weight-load models they find
        # far better plans than the plain search, which proves the mid-sized ones much faster than they do.
        lns = options.threads <= 1 and INTERLEAVE_ABOVE < size <= INTERLEAVE_BELOW and left is not None
        status, relaxed = cp_model.UNKNOWN, None
        # Above MIP_ABOVE, HiGHS's branch-and-cut after a short plain search (which proves the easy ones at once).
        big = params.mip and size > MIP_ABOVE
        # Beyond INTERLEAVE_BELOW, CP-SAT does not even reach a hinted answer afterwards: HiGHS has all the time.
        turns = [("plain", MIP_AFTER if big else PLAIN_SHARE if lns else 1.0)]
        turns += [("mip", MIP_SHARE if size <= INTERLEAVE_BELOW else 1.0)] if big else []
        turns += [("interleave", 1.0)] if lns else [("plain", 1.0)] if big and size <= INTERLEAVE_BELOW else []
        for turn, (kind, share) in enumerate(turns):
            if turn and collect.found:
                model.clear_hints()
                _hint(model, lat, v, collect.found[-1], None)
            if kind == "mip":
                left, began = clock.left(), time.perf_counter()
                deadline = None if left is None else began + (left - reserve) * share
                mip = _highs_solve(model, deadline, options.threads, v)
                if mip is None:  # highspy missing
                    continue
                how = "optimal" if mip.optimal else "stopped"
                stats[f"{tag}_mip"] = f"{how} in {time.perf_counter() - began:.1f} s, bound {mip.bound}"
                floor = max(floor, mip.bound)
                if mip.values is not None:
                    collect.found.append(_extract(mip, lat, v))
                if mip.optimal:
                    status, relaxed = cp_model.OPTIMAL, mip.objective
                    break
                continue
            solver = _solver(params, options, clock, size, reserve, share, kind == "interleave")
            got = solve_interruptibly(solver, model, collect)
            stats[f"{tag}_relaxation_status"] = solver.status_name(got)
            if got in (cp_model.OPTIMAL, cp_model.FEASIBLE):
                floor = max(floor, int(solver.best_objective_bound))
                status, relaxed = got, int(solver.objective_value)
            elif got == cp_model.INFEASIBLE:
                status = got
            if got in (cp_model.OPTIMAL, cp_model.INFEASIBLE):
                break
        if status in (cp_model.OPTIMAL, cp_model.FEASIBLE) or collect.found:
            # The best answers first: the first that packs is a plan (optimal when it is the relaxation's optimum).
            answers = collect.found or [_extract(solver, lat, v)]
            for tried, dec in enumerate(reversed(answers[-PACK_TRIES:])):
                left = clock.left()
                limit = params.pack_time_limit if left is None else max(0.05, min(params.pack_time_limit, left / 2))
                packed = pack_boxes(lat.boxes(dec), lat.inst.capacity, limit, options.threads)
                stats[f"{tag}_pack"] = f"{packed.status.value} ({packed.how}), answer {tried + 1}"
                if packed.status is Status.OPTIMAL:
                    best.offer(lat.plan(dec, packed.offsets or []), "relaxation+packing")
                    if tried == 0 and status == cp_model.OPTIMAL and floor == relaxed:
                        return floor, True
                    break
                if clock.expired():
                    break
        elif status == cp_model.INFEASIBLE:
            return 0, False
        else:  # not even the hinted plan within the time: the joint model, larger, would not do better
            return floor, False
    if not params.joint or clock.expired(margin=1.0) or size > INTERLEAVE_BELOW:
        # (the joint model of the largest instances, bigger than their relaxation, is not even built in time)
        return floor, False
    model, v = _build(lat, forced, True, floor=floor, latency_cap=latency_cap, minimize_bytes=minimize_bytes)
    if not minimize_bytes:
        model.add(v.latency <= best.scaled)  # only as good or better: the incumbent proves the rest
    canon = lat.decisions(best.plan)
    if canon is not None:
        _hint(model, lat, v, canon[0], canon[1])
    solver = _solver(params, options, clock, size)
    status = solve_interruptibly(solver, model, _Callback(lat, v, best))
    stats[f"{tag}_joint_status"] = solver.status_name(status)
    if status == cp_model.OPTIMAL:
        return int(solver.objective_value), True
    if status == cp_model.INFEASIBLE:
        return (best.scaled, True) if not minimize_bytes else (0, False)
    if status == cp_model.FEASIBLE:
        return max(floor, int(solver.best_objective_bound)), False
    return floor, False


def solve_latency_fixed(
    problem: Problem,
    schedule: Sequence[OpName],
    warm: Plan | Sequence[Plan] | None,
    params: LatencyParams,
    options: RunOptions,
    clock: Clock,
) -> LatencyOutcome:
    """The latency-optimal plan for ``schedule`` (see the module docstring), never slower than
    ``warm`` (valid plans for this schedule, the first the caller's main one; None: the
    evict-everything plan)."""
    started = time.perf_counter()
    schedule = tuple(schedule)
    inst = FixedInstance.build(problem, schedule)
    lat = LatencyInstance.build(inst, params.spill_timing)
    plans = [warm] if isinstance(warm, Plan) else list(warm or [])
    if not plans:
        plans = [inst.plan_from_uses(*inst.evict_all())]
    best = _Best(problem, plans[0], "warm start")
    for i, plan in enumerate(plans[1:], 1):
        best.offer(plan, f"warm start {i}")
    forced = set(inst.forced_evictions())
    stats: dict[str, Any] = {
        "tensors": len(inst.chains),
        "gaps": len(inst.gaps),
        "timed_loads": sum(len(ld.starts) > 1 for ld in lat.loads),
        "start_candidates": sum(len(ld.starts) - 1 for ld in lat.loads),
        "spill_candidates": sum(len(sp.steps) - 1 for sp in lat.spills),
        "warm_scaled": best.scaled,
    }
    scaled_bound, proven = 0, False
    n = len(schedule)
    if max([*lat.compute, *(f * lat.scale.dc for f in lat.fixed), 0]) * max(n, 1) > MAX_SCALED:
        message = "latency units too fine for an integer model: the warm plan, no bound"
    else:
        try:
            scaled_bound, proven = _phase(lat, forced, best, params, options, clock, stats)
            if proven:
                scaled_bound = best.scaled
            elif latency_bound_cycles(min(scaled_bound, best.scaled), lat.scale, n) == best.key[0]:
                proven = True  # the bound meets the incumbent in the cost model's own cycles
            if proven and params.tie_break and not clock.expired():
                _phase(lat, forced, best, params, options, clock, stats, latency_cap=best.scaled)
            message = "latency-optimal for the fixed schedule" if proven else "time limit: best plan so far"
        except KeyboardInterrupt:
            message = "interrupted: best plan so far"
    scaled_bound = min(scaled_bound, best.scaled)
    bound = min(latency_bound_cycles(scaled_bound, lat.scale, n), best.key[0])
    status = Status.OPTIMAL if proven and bound == best.key[0] else Status.FEASIBLE
    if not proven and params.joint and "too fine" not in message:  # the joint model settles every instance
        # given the time: it ran out
        status = Status.TIMEOUT
    stats.update(
        scaled_bound=scaled_bound,
        source=best.source,
        seconds=round(time.perf_counter() - started, 4),
        scale=lat.scale.k,
    )
    return LatencyOutcome(status, best.plan, best.scaled, scaled_bound, bound, stats, message)


__all__ = [
    "LatencyParams",
    "LatencyScale",
    "LatencyInstance",
    "LatencyOutcome",
    "scaled_latency",
    "latency_bound_cycles",
    "order_free_bound",
    "compulsory_loads",
    "solve_latency_fixed",
]
