"""The one validator. It trusts no solver: every rule of the problem model is checked
from the plan alone, the obvious way, and each failure is named by a ``Rule``.

Rules (see MISSION.md, "The problem model"):

* the schedule runs every operator exactly once, each after the producers of its inputs;
* every residency names a managed tensor and a non-empty step interval inside the schedule;
* every operand (input and output) of the operator at step ``t`` is resident at ``t``;
* an activation is created in the scratchpad: its first residency starts at its producer's step;
* nothing stays resident after its last use;
* one tensor's residencies never overlap in time (a tensor cannot move while resident; it
  may be relocated through DRAM: evicted after step ``t-1`` and reloaded before ``t``, which
  the cost model charges as a reload, and a spill for an activation);
* resident footprints at the same step never overlap and stay inside the capacity (a
  footprint is ``Problem.footprint``: at least one alignment unit, so an empty tensor
  occupies an address like any other);
* offsets are multiples of the alignment;
* a reload of an activation needs an earlier residency that spilled it; only activations
  spill, and at most once (tensors are immutable: the DRAM copy stays valid).
"""

from __future__ import annotations

import enum
import heapq
from bisect import bisect_left, bisect_right
from collections import defaultdict
from dataclasses import dataclass
from itertools import accumulate

from cosma.core.analysis import use_steps
from cosma.core.ir import Plan, Problem, Residency, TensorKind


class Rule(enum.Enum):
    SCHEDULE_NOT_PERMUTATION = "schedule does not run every operator exactly once"
    RUN_BEFORE_INPUT = "operator run before its input exists"
    UNKNOWN_TENSOR = "residency of a tensor that is not in the scratchpad problem"
    EMPTY_OR_OUTSIDE = "residency interval empty or outside the schedule"
    OPERAND_NOT_RESIDENT = "operand not resident at its step"
    RESIDENT_BEFORE_PRODUCED = "activation resident before the step that produces it"
    RESIDENT_AFTER_LAST_USE = "tensor resident after its last use"
    MOVED_WHILE_RESIDENT = "tensor moved while resident (two residencies overlap in time)"
    OVERLAP = "overlap in time and address"
    OUT_OF_CAPACITY = "out of capacity"
    MISALIGNED = "misaligned offset"
    RELOAD_WITHOUT_SPILL = "reload of an activation that was never spilled"
    BAD_SPILL = "spill of a tensor that cannot be written back, or written twice"


@dataclass(frozen=True)
class Violation:
    rule: Rule
    message: str

    def __str__(self) -> str:
        return f"{self.rule.name}: {self.message}"


class PlanInvalid(Exception):
    """Raised by ``check`` when a plan breaks a rule."""

    def __init__(self, violations: list[Violation]):
        self.violations = violations
        shown = "; ".join(str(v) for v in violations[:5])
        more = f" (and {len(violations) - 5} more)" if len(violations) > 5 else ""
        super().__init__(f"invalid plan: {shown}{more}")


def validate(problem: Problem, plan: Plan) -> list[Violation]:
    """Every broken rule of ``plan`` for ``problem``; an empty list means valid."""
    graph = problem.graph
    out: list[Violation] = []

    # The schedule: a permutation of the operators, in topological order.
    names = [op.name for op in graph.operators]
    if sorted(plan.schedule) != sorted(names):
        missing = set(names) - set(plan.schedule)
        extra = [n for n in plan.schedule if n not in graph.op_index]
        dup = {n for n in plan.schedule if plan.schedule.count(n) > 1}
        out.append(
            Violation(
                Rule.SCHEDULE_NOT_PERMUTATION,
                f"missing {sorted(missing)[:5]}, unknown {extra[:5]}, repeated {sorted(dup)[:5]}",
            )
        )
        return out  # nothing else can be checked against a broken schedule
    step_of = {name: step for step, name in enumerate(plan.schedule)}
    for step, name in enumerate(plan.schedule):
        for t in graph.operators[graph.op_index[name]].inputs:
            producer = graph.producer.get(t)
            if producer is not None and step_of[producer] >= step:
                out.append(
                    Violation(
                        Rule.RUN_BEFORE_INPUT,
                        f"{name} at step {step} reads {t}, produced by {producer} at step {step_of[producer]}",
                    )
                )

    # Each residency on its own.
    n_steps = len(plan.schedule)
    uses = use_steps(problem, plan.schedule)
    by_tensor: dict[str, list[Residency]] = defaultdict(list)
    for r in plan.residencies:
        if r.tensor not in graph.tensors or not problem.is_managed(r.tensor):
            out.append(Violation(Rule.UNKNOWN_TENSOR, f"{r.tensor} has a residency but is not a scratchpad tensor"))
            continue
        if not 0 <= r.start < r.end <= n_steps:
            out.append(Violation(Rule.EMPTY_OR_OUTSIDE, f"{r.tensor} resident over [{r.start}, {r.end})"))
            continue
        if r.offset % problem.alignment:
            out.append(Violation(Rule.MISALIGNED, f"{r.tensor} at offset {r.offset}, alignment {problem.alignment}"))
        if r.offset < 0 or r.offset + problem.footprint(r.tensor) > problem.capacity:
            out.append(
                Violation(
                    Rule.OUT_OF_CAPACITY,
                    f"{r.tensor} occupies [{r.offset}, {r.offset + problem.footprint(r.tensor)})"
                    f" beyond capacity {problem.capacity}",
                )
            )
        by_tensor[r.tensor].append(r)

    # Per tensor: coverage of uses, creation, death, moves, spills and reloads.
    for t, steps in uses.items():
        kind = graph.tensors[t].kind
        stays = sorted(by_tensor.get(t, []), key=lambda r: r.start)
        # A step is covered when some stay starting at or before it ends after it: the
        # furthest end among the stays that start by then (bisect, not a scan per use).
        starts = [r.start for r in stays]
        reach = list(accumulate((r.end for r in stays), max))
        for step in steps:
            k = bisect_right(starts, step)
            if k == 0 or reach[k - 1] <= step:
                op = plan.schedule[step]
                out.append(Violation(Rule.OPERAND_NOT_RESIDENT, f"{t} is not resident at step {step} ({op})"))
        if not stays:
            continue
        if not steps:
            out.append(Violation(Rule.RESIDENT_AFTER_LAST_USE, f"{t} is never used but has a residency"))
        elif stays[-1].end > steps[-1] + 1:
            out.append(
                Violation(
                    Rule.RESIDENT_AFTER_LAST_USE,
                    f"{t} last used at step {steps[-1]} but resident until step {stays[-1].end - 1}",
                )
            )
        if t in graph.producer:
            made = step_of[graph.producer[t]]
            if stays[0].start < made:
                out.append(
                    Violation(
                        Rule.RESIDENT_BEFORE_PRODUCED, f"{t} resident from step {stays[0].start}, produced at {made}"
                    )
                )
        for a, b in zip(stays, stays[1:]):
            if b.start < a.end:
                out.append(
                    Violation(
                        Rule.MOVED_WHILE_RESIDENT,
                        f"{t} resident over [{a.start}, {a.end}) at {a.offset} and [{b.start}, {b.end}) at {b.offset}",
                    )
                )
        spills = [r for r in stays if r.spilled]
        if spills and kind is not TensorKind.ACTIVATION:
            out.append(Violation(Rule.BAD_SPILL, f"{t} is a {kind.value}: it already has a DRAM copy"))
        if len(spills) > 1:
            out.append(Violation(Rule.BAD_SPILL, f"{t} written to DRAM {len(spills)} times"))
        if kind is TensorKind.ACTIVATION:
            first_spill_end = min((r.end for r in spills), default=None)
            for later in stays[1:]:
                if first_spill_end is None or first_spill_end > later.start:
                    out.append(
                        Violation(Rule.RELOAD_WITHOUT_SPILL, f"{t} reloaded at step {later.start} but never spilled")
                    )

    # All tensors together: no two footprints share a byte at the same step. A sweep finds
    # whether any pair does in time linear in the residencies; only then are the pairs named
    # step by step (which costs the sum of the residencies' lengths).
    if _any_overlap(problem, [r for rs in by_tensor.values() for r in rs]):
        out.extend(_overlaps(problem, by_tensor, n_steps))
    return out


def _any_overlap(problem: Problem, residencies: list[Residency]) -> bool:
    """True when two residencies share a step and a byte. Sweep over start steps with the
    resident blocks sorted by offset: while they are disjoint, a new block overlaps one of
    them exactly when it overlaps its neighbour below or above."""
    residencies = sorted(residencies, key=lambda r: r.start)
    ending: list[tuple[int, int, int]] = []  # heap of (end step, offset, id) of resident blocks
    offsets: list[int] = []  # resident blocks' offsets, sorted
    tops: list[int] = []  # their ends in bytes, parallel to ``offsets``
    for uid, r in enumerate(residencies):
        while ending and ending[0][0] <= r.start:
            _, offset, _ = heapq.heappop(ending)
            i = bisect_left(offsets, offset)
            del offsets[i], tops[i]
        low, high = r.offset, r.offset + problem.footprint(r.tensor)
        i = bisect_right(offsets, low)
        if (i > 0 and tops[i - 1] > low) or (i < len(offsets) and offsets[i] < high):
            return True
        offsets.insert(i, low)
        tops.insert(i, high)
        heapq.heappush(ending, (r.end, low, uid))
    return False


def _overlaps(problem: Problem, by_tensor: dict[str, list[Residency]], n_steps: int) -> list[Violation]:
    """Every overlapping pair, named at the first step it shows (a step-by-step scan)."""
    out: list[Violation] = []
    alive: list[list[Residency]] = [[] for _ in range(n_steps)]
    for rs in by_tensor.values():
        for r in rs:
            for step in range(r.start, r.end):
                alive[step].append(r)
    reported: set[tuple[Residency, Residency]] = set()
    for step, rs in enumerate(alive):
        rs.sort(key=lambda r: (r.offset, r.tensor))
        # Sorted by offset, a residency overlaps a later one only if the furthest end seen so far passes it.
        reach, holder = -1, None
        for r in rs:
            if holder is not None and r.offset < reach and (holder, r) not in reported:
                reported.add((holder, r))
                out.append(
                    Violation(
                        Rule.OVERLAP,
                        f"{holder.tensor} [{holder.offset}, {reach}) and {r.tensor} at {r.offset} at step {step}",
                    )
                )
            end = r.offset + problem.footprint(r.tensor)
            if end > reach:
                reach, holder = end, r
    return out


def check(problem: Problem, plan: Plan) -> None:
    """Raise ``PlanInvalid`` naming every broken rule, or return quietly."""
    violations = validate(problem, plan)
    if violations:
        raise PlanInvalid(violations)


__all__ = ["Rule", "Violation", "PlanInvalid", "validate", "check"]
