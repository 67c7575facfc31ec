"""Facts derived from a problem and a schedule: uses, no-spill lifetimes, live bytes,
and the capacity tiers ``M_R`` (tightest feasible) and peak live bytes (for ``M_P``)."""

from __future__ import annotations

from dataclasses import replace
from typing import Iterable, Sequence

from cosma.core.ir import Bytes, OpName, Plan, Problem, Residency, Step, TensorKind, TensorName


def is_topological(problem: Problem, schedule: Sequence[OpName]) -> bool:
    graph = problem.graph
    if sorted(schedule) != sorted(op.name for op in graph.operators):
        return False
    produced: set[TensorName] = set()
    for name in schedule:
        op = graph.operators[graph.op_index[name]]
        for t in op.inputs:
            if t in graph.producer and t not in produced:
                return False
        produced.update(op.outputs)
    return True


def use_steps(problem: Problem, schedule: Sequence[OpName]) -> dict[TensorName, list[Step]]:
    """For each managed tensor, the sorted steps at which it must be resident
    (the step producing it and every step reading it)."""
    graph = problem.graph
    steps: dict[TensorName, list[Step]] = {t: [] for t in problem.managed_tensors}
    for step, name in enumerate(schedule):
        op = graph.operators[graph.op_index[name]]
        for t in problem.operands(op):
            if not steps[t] or steps[t][-1] != step:
                steps[t].append(step)
    return steps


def live_intervals(problem: Problem, schedule: Sequence[OpName]) -> dict[TensorName, tuple[Step, Step]]:
    """Half-open ``[first, last+1)`` interval of every managed tensor when nothing is spilled:
    from its first use (or production) to its last use."""
    return {t: (s[0], s[-1] + 1) for t, s in use_steps(problem, schedule).items() if s}


def live_bytes(problem: Problem, schedule: Sequence[OpName]) -> list[Bytes]:
    """Footprint bytes live at each step with no spills (no fragmentation either)."""
    delta = [0] * (len(schedule) + 1)
    for t, (start, end) in live_intervals(problem, schedule).items():
        delta[start] += problem.footprint(t)
        delta[end] -= problem.footprint(t)
    out, running = [], 0
    for d in delta[:-1]:
        running += d
        out.append(running)
    return out


def peak_live_bytes(problem: Problem, schedule: Sequence[OpName]) -> Bytes:
    return max(live_bytes(problem, schedule), default=0)


def operator_footprint(problem: Problem, op_name: OpName) -> Bytes:
    return problem.operator_footprints[op_name]


def min_capacity(problem: Problem) -> Bytes:
    """``M_R``: the largest operator's resident operands. Below it no plan exists."""
    return max((operator_footprint(problem, op.name) for op in problem.graph.operators), default=0)


def largest_operator(problem: Problem) -> OpName:
    return max(problem.graph.operators, key=lambda op: operator_footprint(problem, op.name)).name


def compulsory_bytes(problem: Problem) -> Bytes:
    """Bytes every plan moves: managed inputs and weights loaded once, outputs stored once."""
    kinds = (TensorKind.INPUT, TensorKind.WEIGHT, TensorKind.OUTPUT)
    return sum(problem.graph.tensors[t].size for t in problem.managed_tensors if problem.graph.tensors[t].kind in kinds)


def compute_bound(problem: Problem, op_name: OpName) -> bool:
    """True when the operator, alone, is compute-bound on the problem's hardware: its MACs
    over the MAC rate take at least as long as moving all its operands (inputs and outputs,
    whole tensor bytes) over the DRAM bandwidth. Only at such steps can a load be hidden."""
    graph, hw = problem.graph, problem.hardware
    op = graph.operators[graph.op_index[op_name]]
    moved = sum(graph.tensors[t].size for t in (*op.inputs, *op.outputs))
    return op.macs / hw.macs_per_cycle >= moved / hw.dram_bytes_per_cycle


def compute_bound_share(problem: Problem) -> float:
    """The share of operators that are compute-bound (``compute_bound``); 0.0 for no operators.
    Near 0 (everything DMA-bound) or near 1, latency and bytes rank plans alike; in between,
    when a load is made (prefetch timing) is a decision of its own."""
    ops = problem.graph.operators
    return sum(compute_bound(problem, op.name) for op in ops) / len(ops) if ops else 0.0


def make_plan(problem: Problem, schedule: Sequence[OpName], residencies: Iterable[Residency]) -> Plan:
    """A plan from residencies whose ``spilled`` flags are set the one sensible way:
    an activation with more than one residency is written to DRAM once, at the end of
    its first. Solvers build plans through this so they never hand-set spill flags."""
    by_tensor: dict[TensorName, list[Residency]] = {}
    for r in residencies:
        by_tensor.setdefault(r.tensor, []).append(r)
    out: list[Residency] = []
    for t, rs in by_tensor.items():
        rs.sort(key=lambda r: r.start)
        spills = problem.graph.tensors[t].kind is TensorKind.ACTIVATION and len(rs) > 1
        out.extend(replace(r, spilled=spills and i == 0) for i, r in enumerate(rs))
    out.sort(key=lambda r: (r.start, r.tensor))
    return Plan(tuple(schedule), tuple(out))


__all__ = [
    "is_topological",
    "use_steps",
    "live_intervals",
    "live_bytes",
    "peak_live_bytes",
    "operator_footprint",
    "min_capacity",
    "largest_operator",
    "compulsory_bytes",
    "compute_bound",
    "compute_bound_share",
    "make_plan",
]
