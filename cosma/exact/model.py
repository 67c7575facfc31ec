"""The fixed-schedule problem in the exact solver's terms: uses, gaps, keep decisions.

With the schedule fixed, a managed tensor must be resident at its use steps
``u1 < u2 < ... < uk`` (for an activation ``u1`` is its producer's step). Between two
consecutive uses lies a *gap*. Some optimal plan evicts a tensor right after a use and
reloads it right before the next one (that frees the most room for the same cost), so
the only decision per gap is **keep** (stay resident, same offset) or **evict**
(reload before the next use: cost = size, plus a one-time spill = size for an
activation the first time it is evicted). Evicting across an empty gap (adjacent uses)
is a relocation through DRAM: legal, charged the same.

A choice of keeps turns every tensor into *blocks* (maximal runs of uses joined by kept
gaps); each block is one residency ``[u_a, u_b + 1)`` at one offset. This module turns
problems into that form and back, and builds the two CP-SAT models the solver uses:

* the **relaxation** without addresses: per step, the resident footprints fit in the
  capacity (a multi-knapsack over keep bits). Its optimum is a lower bound; when its
  blocks pack, that plan is optimal;
* the **joint** model: keep bits plus one offset per use, boxes over time x address
  under no-overlap-2D, the relaxation's step constraints kept as a redundant
  cumulative, and the objective bounded below by the relaxation.

All addresses here are in alignment units; plans are built in bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from ortools.sat.python import cp_model

from cosma.core.analysis import make_plan, use_steps
from cosma.core.ir import OpName, Plan, Problem, Residency, TensorKind
from cosma.packing.boxes import Box


@dataclass(frozen=True)
class UseChain:
    """One managed tensor's uses under the fixed schedule."""

    name: str
    size: int  # bytes: the cost of one reload (and of the one spill of an activation)
    units: int  # footprint in alignment units
    spills: bool  # an activation: its first eviction also writes it to DRAM
    uses: tuple[int, ...]  # sorted use steps
    first_gap: int  # index in ``FixedInstance.gaps`` of the gap after ``uses[0]``


@dataclass(frozen=True)
class Gap:
    """The stretch between two consecutive uses of one tensor."""

    chain: int  # index in ``FixedInstance.chains``
    index: int  # between uses[index] and uses[index + 1]
    lo: int  # first step freed by an eviction (uses[index] + 1)
    hi: int  # one past the last step freed (uses[index + 1]); lo == hi: adjacent uses


@dataclass
class FixedInstance:
    """The problem for one schedule, with the per-step loads the models need."""

    problem: Problem
    schedule: tuple[OpName, ...]
    chains: list[UseChain] = field(default_factory=list)
    gaps: list[Gap] = field(default_factory=list)
    capacity: int = 0  # alignment units
    base: list[int] = field(default_factory=list)  # units resident at each step whatever we decide
    _covering: list[list[int]] | None = None  # built on first use: as large as the relaxation

    @classmethod
    def build(cls, problem: Problem, schedule: Sequence[OpName]) -> "FixedInstance":
        align = problem.alignment
        inst = cls(problem, tuple(schedule), capacity=problem.capacity // align)
        n_steps = len(schedule)
        inst.base = [0] * n_steps
        for name, steps in use_steps(problem, schedule).items():
            if not steps:
                continue
            tensor = problem.graph.tensors[name]
            chain = UseChain(
                name,
                tensor.size,
                problem.footprint(name) // align,
                tensor.kind is TensorKind.ACTIVATION,
                tuple(steps),
                len(inst.gaps),
            )
            ci = len(inst.chains)
            inst.chains.append(chain)
            for s in steps:
                inst.base[s] += chain.units
            for i in range(len(steps) - 1):
                inst.gaps.append(Gap(ci, i, steps[i] + 1, steps[i + 1]))
        return inst

    @property
    def terms(self) -> int:
        """Size of the no-address relaxation: one term per gap and step inside it."""
        return sum(g.hi - g.lo for g in self.gaps)

    @property
    def covering(self) -> list[list[int]]:
        """Per step, the gaps whose kept box spans it (``terms`` entries in all: built only
        for the models, since on RandWire graphs of thousands of operators they are millions)."""
        if self._covering is None:
            self._covering = [[] for _ in self.schedule]
            for gi, g in enumerate(self.gaps):
                for s in range(g.lo, g.hi):
                    self._covering[s].append(gi)
        return self._covering

    # ----- decisions -> cost, blocks, plans -----

    def gaps_of(self, ci: int) -> range:
        c = self.chains[ci]
        return range(c.first_gap, c.first_gap + len(c.uses) - 1)

    def cost(self, keep: Sequence[bool]) -> int:
        """Non-compulsory bytes of a keep vector (one entry per gap)."""
        total = 0
        for ci, c in enumerate(self.chains):
            evicted = sum(1 for g in self.gaps_of(ci) if not keep[g])
            total += c.size * evicted + (c.size if c.spills and evicted else 0)
        return total

    def blocks(self, keep: Sequence[bool]) -> list[tuple[int, int, int]]:
        """Residencies as ``(chain, first use index, last use index)``."""
        out = []
        for ci, c in enumerate(self.chains):
            a = 0
            for i, g in enumerate(self.gaps_of(ci)):
                if not keep[g]:
                    out.append((ci, a, i))
                    a = i + 1
            out.append((ci, a, len(c.uses) - 1))
        return out

    def boxes(self, blocks: Sequence[tuple[int, int, int]]) -> list[Box]:
        return [Box(self.chains[ci].uses[a], self.chains[ci].uses[b] + 1, self.chains[ci].units) for ci, a, b in blocks]

    def plan(self, blocks: Sequence[tuple[int, int, int]], offsets: Sequence[int]) -> Plan:
        """A plan from blocks and their offsets (alignment units)."""
        align = self.problem.alignment
        residencies = [
            Residency(self.chains[ci].name, self.chains[ci].uses[a], self.chains[ci].uses[b] + 1, off * align)
            for (ci, a, b), off in zip(blocks, offsets)
        ]
        return make_plan(self.problem, self.schedule, residencies)

    def plan_from_uses(self, keep: Sequence[bool], use_offsets: Sequence[Sequence[int]]) -> Plan:
        blocks = self.blocks(keep)
        return self.plan(blocks, [use_offsets[ci][a] for ci, a, _ in blocks])

    def canonical(self, plan: Plan) -> tuple[list[bool], list[list[int]]] | None:
        """Keep bits and per-use offsets of a valid plan for this schedule (None if it
        does not cover every use). Its canonical form evicts as early and reloads as
        late as possible, so it is valid whenever the plan is, and costs no more."""
        if tuple(plan.schedule) != self.schedule:
            return None
        by_tensor: dict[str, list[Residency]] = {}
        for r in plan.residencies:
            by_tensor.setdefault(r.tensor, []).append(r)
        keep = [False] * len(self.gaps)
        offsets: list[list[int]] = []
        for ci, c in enumerate(self.chains):
            holder = []
            for u in c.uses:
                r = next((r for r in by_tensor.get(c.name, ()) if r.start <= u < r.end), None)
                if r is None:
                    return None
                holder.append(r)
            offsets.append([r.offset // self.problem.alignment for r in holder])
            for i, g in enumerate(self.gaps_of(ci)):
                keep[g] = holder[i] is holder[i + 1]
        return keep, offsets

    def evict_all(self) -> tuple[list[bool], list[list[int]]]:
        """The plan that is always valid at capacity >= M_R: every tensor resident only
        at its use steps, each step's operands stacked from offset 0."""
        keep = [False] * len(self.gaps)
        cursor = [0] * len(self.schedule)
        offsets = []
        for c in self.chains:
            row = []
            for u in c.uses:
                row.append(cursor[u])
                cursor[u] += c.units
            offsets.append(row)
        return keep, offsets

    # ----- presolve facts -----

    def forced_evictions(self) -> list[int]:
        """Gaps that can never be kept: their box does not fit beside a step's operands."""
        out = []
        for gi, g in enumerate(self.gaps):
            units = self.chains[g.chain].units
            if any(self.base[s] + units > self.capacity for s in range(g.lo, g.hi)):
                out.append(gi)
        return out

    def step_constraints(self, forced: set[int]) -> list[tuple[int, tuple[int, ...]]]:
        """The relaxation's binding step constraints as ``(room, gaps)``: the kept gaps
        covering that step must fit in ``room`` units. Steps whose every possible keep
        fits are dropped, and duplicates keep only the tightest room."""
        rows: dict[tuple[int, ...], int] = {}
        for s, cover in enumerate(self.covering):
            free = tuple(g for g in cover if g not in forced)
            room = self.capacity - self.base[s]
            if sum(self.chains[self.gaps[g].chain].units for g in free) <= room:
                continue
            rows[free] = min(room, rows.get(free, room))
        # A row whose gap set is contained in another row's with at least as much room is implied.
        items = sorted(rows.items(), key=lambda kv: -len(kv[0]))
        kept: list[tuple[int, tuple[int, ...]]] = []
        sets: list[tuple[frozenset[int], int]] = []
        for gaps, room in items:
            fs = frozenset(gaps)
            if any(fs <= other and other_room <= room for other, other_room in sets):
                continue
            sets.append((fs, room))
            kept.append((room, gaps))
        return kept


# Terms (gap x step inside it) of the no-address relaxation built per second (measured: 400k
# on a 1k-operator RandWire graph, 250k on a 5k one, 2 cores): a relaxation that would not be
# built in the time left is not started.
RELAXATION_RATE = 250_000.0


def relaxation_terms(problem: Problem, schedule: Sequence[OpName]) -> int:
    """``FixedInstance.build(problem, schedule).terms`` without building it: one term per gap
    between uses and step inside it. Millions on RandWire graphs of thousands of operators,
    where tensors live long."""
    return sum(b - a - 1 for uses in use_steps(problem, schedule).values() for a, b in zip(uses, uses[1:]))


def add_objective(model: cp_model.CpModel, inst: FixedInstance, keep: Sequence[cp_model.IntVar]) -> cp_model.LinearExpr:
    """Non-compulsory bytes as a linear expression over keep bits (spill bits added)."""
    terms = []
    for ci, c in enumerate(inst.chains):
        gaps = list(inst.gaps_of(ci))
        if not gaps:
            continue
        for g in gaps:
            terms.append(c.size * (1 - keep[g]))
        if c.spills:
            spilled = model.new_bool_var(f"spill_{ci}")
            for g in gaps:
                model.add_implication(~keep[g], spilled)  # type: ignore[arg-type]
            terms.append(c.size * spilled)
    return sum(terms) if terms else cp_model.LinearExpr.constant(0)  # type: ignore[return-value]


def build_relaxation(
    inst: FixedInstance, forced: set[int], cuts: Sequence[Sequence[int]], hint: Sequence[bool] | None
) -> tuple[cp_model.CpModel, list[cp_model.IntVar], cp_model.LinearExpr]:
    """The no-address relaxation: keep bits, per-step knapsack rows, no-good cuts."""
    model = cp_model.CpModel()
    keep = [model.new_bool_var(f"keep_{g}") for g in range(len(inst.gaps))]
    for g in forced:
        model.add(keep[g] == 0)
    for room, gaps in inst.step_constraints(forced):
        model.add(sum(inst.chains[inst.gaps[g].chain].units * keep[g] for g in gaps) <= room)
    for cut in cuts:
        model.add(sum(keep[g] for g in cut) <= len(cut) - 1)
    objective = add_objective(model, inst, keep)
    model.minimize(objective)
    if hint is not None:
        for var, value in zip(keep, hint):
            model.add_hint(var, bool(value))
    return model, keep, objective


@dataclass
class JointVars:
    keep: list[cp_model.IntVar]
    offsets: list[list[cp_model.IntVar]]  # per chain, per use
    objective: cp_model.LinearExpr


def use_boxes(
    model: cp_model.CpModel, inst: FixedInstance, keep: Sequence[cp_model.IntVar], forced: set[int]
) -> tuple[list[list[cp_model.IntVar]], list[cp_model.IntervalVar], list[cp_model.IntervalVar]]:
    """One offset per use, and the boxes (step x address) they occupy: a box per use, and a
    box per kept gap (optional on its keep bit, which also ties the two uses' offsets).
    Returns ``(offsets per chain, x intervals, y intervals)`` for a no-overlap-2D."""
    cap = inst.capacity
    offsets: list[list[cp_model.IntVar]] = []
    x_iv: list[cp_model.IntervalVar] = []
    y_iv: list[cp_model.IntervalVar] = []
    for ci, c in enumerate(inst.chains):
        row = [model.new_int_var(0, cap - c.units, f"o_{ci}_{i}") for i in range(len(c.uses))]
        offsets.append(row)
        for i, u in enumerate(c.uses):
            x_iv.append(model.new_fixed_size_interval_var(u, 1, f"xu_{ci}_{i}"))
            y_iv.append(model.new_fixed_size_interval_var(row[i], c.units, f"yu_{ci}_{i}"))
        for i, g in enumerate(inst.gaps_of(ci)):
            if g in forced:
                continue
            model.add(row[i] == row[i + 1]).only_enforce_if(keep[g])
            gap = inst.gaps[g]
            if gap.lo < gap.hi:
                x_iv.append(model.new_optional_fixed_size_interval_var(gap.lo, gap.hi - gap.lo, keep[g], f"xg_{g}"))
                y_iv.append(model.new_optional_fixed_size_interval_var(row[i], c.units, keep[g], f"yg_{g}"))
    return offsets, x_iv, y_iv


def build_joint(
    inst: FixedInstance,
    forced: set[int],
    lower_bound: int,
    hint: tuple[Sequence[bool], Sequence[Sequence[int]]] | None,
    symmetry_breaking: bool = True,
) -> tuple[cp_model.CpModel, JointVars]:
    """Keep bits and offsets together: the full fixed-schedule problem, exactly."""
    model = cp_model.CpModel()
    cap = inst.capacity
    keep = [model.new_bool_var(f"keep_{g}") for g in range(len(inst.gaps))]
    for g in forced:
        model.add(keep[g] == 0)
    offsets, x_iv, y_iv = use_boxes(model, inst, keep, forced)
    model.add_no_overlap_2d(x_iv, y_iv)
    # Redundant: the relaxation's step rows (what a cumulative over the boxes would say).
    for room, gaps in inst.step_constraints(forced):
        model.add(sum(inst.chains[inst.gaps[g].chain].units * keep[g] for g in gaps) <= room)
    if symmetry_breaking and inst.chains:
        # Mirroring every offset (o -> cap - units - o) maps plans to plans: put the
        # first use of the largest tensor in the lower half.
        big = max(range(len(inst.chains)), key=lambda ci: inst.chains[ci].units)
        model.add(2 * offsets[big][0] <= cap - inst.chains[big].units)
    objective = add_objective(model, inst, keep)
    model.add(objective >= lower_bound)
    model.minimize(objective)
    if hint is not None:
        hk, ho = hint
        for var, value in zip(keep, hk):
            model.add_hint(var, bool(value))
        for ci, row in enumerate(offsets):
            for var, value in zip(row, ho[ci]):
                model.add_hint(var, int(value))
    return model, JointVars(keep, offsets, objective)


def mirror(inst: FixedInstance, use_offsets: Sequence[Sequence[int]]) -> list[list[int]]:
    """Offsets reflected top to bottom (a plan stays valid; used to meet symmetry breaking)."""
    return [[inst.capacity - c.units - o for o in row] for c, row in zip(inst.chains, use_offsets)]


__all__ = [
    "UseChain",
    "Gap",
    "FixedInstance",
    "JointVars",
    "add_objective",
    "build_relaxation",
    "build_joint",
    "mirror",
]
