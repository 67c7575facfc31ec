"""Operator orders: the one place every solver, the tiers and the game get candidate orders.

``candidate_orders`` gathers them by kind (cheapest first):

* ``"file"``: the framework's order (``file_order``);
* ``"memory-aware"``: the greedy list scheduler below (``memory_aware_schedule``);
* ``"min-peak"``: the memory-minimizing scheduler (``cosma.schedules.minpeak``), then, when
  it cannot prove its peak minimal, COSMA's exact MPMF model (``cosma.schedules.mpmf``);
* ``"min-overflow"``: for capacities below ``M_P``, beam searches that minimize the live
  bytes above the capacity (divide and conquer's starting orders).

The two cheap schedules, as in COSMA's baselines:

* ``file_order``: the framework's order (the ONNX file's node order), what a compiler
  that does not reorder runs;
* ``memory_aware_schedule``: a list scheduler that, among the ready operators, runs the
  one that keeps the live bytes lowest. It stands in for COSMA's "MPMF" schedule (the
  exact minimum-peak order) until an exact scheduler exists, and gives the baselines'
  estimate of ``M_P``.

Both return tuples of operator names in a topological order. "Live" follows
``cosma.core.analysis.live_intervals``: a managed tensor is live from its first use (or the
step producing it) to its last use, so a weight or graph input becomes live at the
first operator that reads it.
"""

from __future__ import annotations

import heapq
import time
from dataclasses import dataclass
from typing import Callable, Sequence

from cosma.core.analysis import is_topological
from cosma.core.errors import ModelError, UsageError
from cosma.core.ir import Bytes, OpName, Problem, TensorName


def file_order(problem: Problem) -> tuple[OpName, ...]:
    """The operators in the order the graph lists them (the framework's order)."""
    return tuple(op.name for op in problem.graph.operators)


def memory_aware_schedule(problem: Problem) -> tuple[OpName, ...]:
    """A greedy list schedule that keeps live bytes low.

    At each step, among the ready operators (every producer of their inputs already
    run), pick the one with the smallest net change of live bytes: bytes it makes live
    (its outputs, and inputs or weights read for the first time) minus bytes it frees
    (inputs it is the last reader of, and outputs nobody reads). Ties go to the one
    making fewer bytes live during its own step (a lower transient peak), then to file
    order, so a chain runs exactly in file order.

    Greedy, not optimal: an operator that frees a large tensor only after its siblings
    ran looks no better than them until then. The exact minimum-peak order comes from
    the exact scheduler; this one is what a memory-aware compiler pass does in one sweep.
    """
    graph = problem.graph
    footprint = {t: problem.footprint(t) for t in problem.managed_tensors}
    # Readers still to run, per managed tensor (an operator reads a tensor at most once).
    readers_left: dict[TensorName, int] = {t: len(graph.consumers[t]) for t in footprint}
    live: set[TensorName] = set()
    # Operators still waiting for at least one producer.
    waiting_on = {op.name: len(graph.predecessors(op.name)) for op in graph.operators}
    successors: dict[OpName, list[OpName]] = {op.name: [] for op in graph.operators}
    for op in graph.operators:
        for pred in graph.predecessors(op.name):
            successors[pred].append(op.name)
    ready = {name for name, n in waiting_on.items() if n == 0}

    def score(name: OpName) -> tuple[Bytes, Bytes, int]:
        op = graph.operators[graph.op_index[name]]
        made = freed = 0
        for t in op.inputs:
            if t not in footprint:
                continue
            if t not in live:
                made += footprint[t]
            if readers_left[t] == 1:
                freed += footprint[t]
        for t in op.outputs:
            if t not in footprint:
                continue
            made += footprint[t]
            if readers_left[t] == 0:
                freed += footprint[t]
        return made - freed, made, graph.op_index[name]

    # The ready operators in a heap by score. A score depends only on the operator's own
    # tensors (live yet? read by it last?), which change only when another reader of them
    # runs: those readers are re-scored (stale heap entries are skipped), so a step costs
    # its neighbours, not a scan of every ready operator (thousands on a RandWire stage).
    readers: dict[TensorName, list[OpName]] = {t: list(graph.consumers[t]) for t in footprint}
    scores = {name: score(name) for name in ready}
    heap = [(key, name) for name, key in scores.items()]
    heapq.heapify(heap)
    order: list[OpName] = []
    while heap:
        key, name = heapq.heappop(heap)
        if scores.get(name) != key:
            continue
        del scores[name]
        ready.remove(name)
        order.append(name)
        op = graph.operators[graph.op_index[name]]
        touched: set[OpName] = set()
        for t in op.inputs:
            if t in footprint:
                readers_left[t] -= 1
                if readers_left[t] == 0:
                    live.discard(t)
                else:
                    if t not in live or readers_left[t] == 1:  # a score reading t changes
                        touched.update(readers[t])
                    live.add(t)
        for t in op.outputs:
            if t in footprint and readers_left[t] > 0:
                live.add(t)
        for other in touched:
            if other in scores:
                scores[other] = score(other)
                heapq.heappush(heap, (scores[other], other))
        for succ in successors[name]:
            waiting_on[succ] -= 1
            if waiting_on[succ] == 0:
                ready.add(succ)
                scores[succ] = score(succ)
                heapq.heappush(heap, (scores[succ], succ))
    if len(order) != len(graph.operators):
        raise ModelError(f"graph {graph.name!r} has a cycle: no topological order exists")
    return tuple(order)


# Named schedules the baselines combine with allocation policies.
SCHEDULES: dict[str, Callable[[Problem], tuple[OpName, ...]]] = {
    "file": file_order,
    "memory": memory_aware_schedule,
}


ORDER_KINDS = ("file", "memory-aware", "min-peak", "min-overflow")
CHEAP_ORDERS = ("file", "memory-aware")  # no search: what the game samples with
PEAK_ORDERS = ("file", "memory-aware", "min-peak")  # what ``M_P`` and the exact solver start from

# Min-overflow beam searches: (fraction of the capacity the beam aims under, beam width).
# Aiming under the capacity leaves room for fragmentation; narrow and wide beams find
# different orders. Most promising first.
OVERFLOW_PORTFOLIO = ((1.0, 32), (0.9, 8), (1.0, 8), (0.75, 32), (0.5, 8), (0.9, 32), (0.75, 8), (0.5, 32))


@dataclass(frozen=True)
class Order:
    """One candidate operator order and where it came from."""

    source: str  # which scheduler found it, e.g. "memory-minimizing scheduler"
    schedule: tuple[OpName, ...]  # a topological order of every operator
    proven_min_peak: bool = False  # True: no order has a lower peak live bytes


def candidate_orders(
    problem: Problem,
    kinds: Sequence[str] = PEAK_ORDERS,
    time_limit: float | None = 10.0,
    *,
    min_peak_share: float = 1.0,
    prove_min_peak: bool = True,
) -> list[Order]:
    """The orders of the given ``kinds`` (see the module docstring), cheapest first,
    each a topological order, found within about ``time_limit`` seconds.

    ``min_peak_share``: the share of the time the min-peak search may take (the
    min-overflow portfolio gets what is left); ``prove_min_peak``: when the min-peak
    search does not prove its answer, also run the exact MPMF model.
    """
    unknown = [k for k in kinds if k not in ORDER_KINDS]
    if unknown or not kinds:
        raise UsageError(f"unknown order kind(s) {unknown}: use {', '.join(ORDER_KINDS)}")
    started = time.monotonic()

    def left() -> float | None:
        return None if time_limit is None else max(0.1, time_limit - (time.monotonic() - started))

    out: list[Order] = []
    if "file" in kinds:
        out.append(Order("file order", file_order(problem)))
    if "memory-aware" in kinds:
        out.append(Order("memory-aware list scheduler", memory_aware_schedule(problem)))
    if "min-peak" in kinds:
        from cosma.schedules.minpeak import min_peak_schedule

        share = None if time_limit is None else time_limit * min_peak_share
        schedule, _, proven = min_peak_schedule(problem, time_limit=share)
        out.append(Order("memory-minimizing scheduler", tuple(schedule), bool(proven)))
        # The exact model only when time is left: after a search that used the whole limit
        # (graphs of thousands of operators) it could only build a model and return the hint.
        if prove_min_peak and not proven and (time_limit is None or time.monotonic() - started < time_limit):
            from cosma.schedules.mpmf import min_peak

            result = min_peak(problem, time_limit=left())
            out.append(Order("exact MPMF (CP-SAT)", tuple(result.schedule), bool(result.proven)))
    if "min-overflow" in kinds:
        from cosma.schedules.minpeak import schedule_min_overflow

        cap = problem.capacity // problem.alignment * problem.alignment
        for i, (fraction, width) in enumerate(OVERFLOW_PORTFOLIO):
            rest = None if time_limit is None else time_limit - (time.monotonic() - started)
            if rest is not None and rest <= 0 and i > 0:
                break
            share = None if rest is None else max(0.0, rest) / (len(OVERFLOW_PORTFOLIO) - i)
            schedule = schedule_min_overflow(problem, int(cap * fraction), time_limit=share, beam_width=width)
            out.append(Order(f"min-overflow({fraction:g}, {width})", tuple(schedule)))
    return [order for order in out if is_topological(problem, order.schedule)]


def distinct(orders: Sequence[Order]) -> list[Order]:
    """The orders without repeats (the first source of each schedule is kept)."""
    seen: set[tuple[OpName, ...]] = set()
    out = []
    for order in orders:
        if order.schedule not in seen:
            seen.add(order.schedule)
            out.append(order)
    return out


# ----- neighbouring orders: the moves of the local search over orders -----


def neighbours(problem: Problem) -> tuple[dict[OpName, tuple[OpName, ...]], dict[OpName, list[OpName]]]:
    """Each operator's predecessors and successors (the operators whose outputs it reads, and
    those that read its outputs): what ``pull_earlier`` and ``push_later`` drag along."""
    graph = problem.graph
    preds = {op.name: graph.predecessors(op.name) for op in graph.operators}
    succs: dict[OpName, list[OpName]] = {op.name: [] for op in graph.operators}
    for o, ps in preds.items():
        for q in ps:
            succs[q].append(o)
    return preds, succs


def _reach(start: OpName, inside: set[OpName], edges: dict[OpName, Sequence[OpName]]) -> set[OpName]:
    """The operators of ``inside`` reachable from ``start`` along ``edges`` without leaving ``inside``."""
    found: set[OpName] = set()
    stack = [start]
    while stack:
        for q in edges[stack.pop()]:
            if q in inside and q not in found:
                found.add(q)
                stack.append(q)
    return found


def pull_earlier(schedule: Sequence[OpName], i: int, j: int, preds: dict[OpName, Sequence[OpName]]) -> list[OpName]:
    """``schedule`` with the operator at step ``i`` moved to step ``j < i``, its ancestors
    among steps ``[j, i)`` dragged along ahead of it (in their order), the other operators
    of that stretch after them (in theirs). Topological whenever ``schedule`` is: an
    operator left behind is no ancestor of anything moved (it would be an ancestor of
    ``schedule[i]``). Moving one operator alone rarely changes what must be evicted in
    branchy graphs; moving a whole branch does (it finishes that branch before the rest)."""
    stretch = schedule[j:i]
    ancestors = _reach(schedule[i], set(stretch), preds)
    moved = [o for o in stretch if o in ancestors]
    rest = [o for o in stretch if o not in ancestors]
    return [*schedule[:j], *moved, schedule[i], *rest, *schedule[i + 1 :]]


def push_later(schedule: Sequence[OpName], i: int, k: int, succs: dict[OpName, Sequence[OpName]]) -> list[OpName]:
    """The mirror of ``pull_earlier``: the operator at step ``i`` moved to step ``k > i``,
    its descendants among steps ``(i, k]`` dragged along behind it."""
    stretch = schedule[i + 1 : k + 1]
    descendants = _reach(schedule[i], set(stretch), succs)
    moved = [o for o in stretch if o in descendants]
    rest = [o for o in stretch if o not in descendants]
    return [*schedule[:i], *rest, schedule[i], *moved, *schedule[k + 1 :]]


__all__ = [
    "file_order",
    "memory_aware_schedule",
    "SCHEDULES",
    "ORDER_KINDS",
    "CHEAP_ORDERS",
    "PEAK_ORDERS",
    "OVERFLOW_PORTFOLIO",
    "Order",
    "candidate_orders",
    "distinct",
    "neighbours",
    "pull_earlier",
    "push_later",
]
