"""Exact minimum peak footprint over schedules (COSMA's MPMF mode): ``M_P``.

No spills, no addresses: choose the operator order that minimizes the largest sum of
live footprints at any step, where a managed tensor is live from the first to the last
step that touches it (its producer or first reader, to its last reader).

Two exact methods:

* **dynamic programming over executed sets** (downsets of the DAG). After a set ``S``
  of operators has run, the live tensors depend on ``S`` alone, and so does the load at
  the step running the next operator ``o``. So ``best(S + o) = min over o of
  max(best(S), load(S, o))`` is exact. DNN graphs are mostly chains with short
  branches, so they have few downsets: ResNets and DenseNets solve in well under a
  second. Partial orders whose peak already reaches the best order known (file order
  or a greedy one) are dropped, which is exact and keeps parallel branches in check.
  The search stops past ``max_states`` states;
* **CP-SAT** otherwise: operator positions (all different, precedence), one interval
  per tensor from its first to its last touching position, a cumulative whose
  capacity is the peak to minimize; hinted with the best order known.
"""

from __future__ import annotations

import time
from typing import NamedTuple, Sequence

from ortools.sat.python import cp_model

from cosma.core.analysis import operator_footprint, peak_live_bytes
from cosma.core.cpsat import solve_interruptibly
from cosma.core.ir import OpName, Problem


class MinPeak(NamedTuple):
    schedule: tuple[OpName, ...]  # an order reaching ``peak``
    peak: int  # its peak live bytes (footprints)
    proven: bool  # True: no order has a lower peak
    bound: int  # proven lower bound on the minimum peak (== peak when proven)


def min_peak(problem: Problem, time_limit: float | None = None, max_states: int = 300_000, threads: int = 1) -> MinPeak:
    """The minimum peak live bytes over all topological orders (see the module docstring)."""
    start = time.perf_counter()
    graph = problem.graph
    if not graph.operators:
        return MinPeak((), 0, True, 0)
    floor = max(operator_footprint(problem, op.name) for op in graph.operators)
    # The best of file order and a greedy order: an upper bound the DP must beat.
    hints = [tuple(op.name for op in graph.operators), _greedy_order(problem)]
    hint = min(hints, key=lambda s: peak_live_bytes(problem, s))
    upper = peak_live_bytes(problem, hint)
    if upper == floor:  # no order goes below the largest operator
        return MinPeak(hint, upper, True, upper)
    dp = _dp_min_peak(problem, max_states, None if time_limit is None else start + time_limit, upper)
    if dp is not None:
        order, peak = dp
        if order is None:  # no order beats the hint: the hint is optimal
            return MinPeak(hint, upper, True, upper)
        return MinPeak(order, peak, True, peak)
    # Too many downsets even below the upper bound: CP-SAT, hinted with the best order known.
    left = None if time_limit is None else max(0.05, time_limit - (time.perf_counter() - start))
    return _cpsat_min_peak(problem, hint, floor, left, threads)


def _masks(problem: Problem) -> tuple[list[int], list[int], list[list[int]], list[int]]:
    """Per managed tensor: footprint and the mask of operators touching it; per operator:
    its operand tensors and the mask of operators it depends on."""
    graph = problem.graph
    index = {t: i for i, t in enumerate(problem.managed_tensors)}
    fp = [problem.footprint(t) for t in problem.managed_tensors]
    touch = [0] * len(fp)
    operands: list[list[int]] = []
    preds = []
    for k, op in enumerate(graph.operators):
        mine = [index[t] for t in problem.operands(op)]
        operands.append(mine)
        for t in mine:
            touch[t] |= 1 << k
        mask = 0
        for p in graph.predecessors(op.name):
            mask |= 1 << graph.op_index[p]
        preds.append(mask)
    return fp, touch, operands, preds


def _dp_min_peak(
    problem: Problem, max_states: int, deadline: float | None, upper: int
) -> tuple[tuple[OpName, ...] | None, int] | None:
    """The DP of the module docstring, keeping only partial orders whose peak so far is
    below ``upper`` (branch and bound: a state at or above it cannot lead to a better
    order). Returns ``(order, peak)``; ``(None, upper)`` when nothing beats ``upper``;
    None when it gave up (state or time limit)."""
    graph = problem.graph
    n = len(graph.operators)
    fp, touch, operands, preds = _masks(problem)
    # layer: mask -> (peak so far, live bytes after, parent mask, operator run last)
    layer: dict[int, tuple[int, int]] = {0: (0, 0)}
    parents: list[dict[int, tuple[int, int]]] = []
    total = 1
    for _ in range(n):
        nxt: dict[int, tuple[int, int]] = {}
        back: dict[int, tuple[int, int]] = {}
        for mask, (peak, live) in layer.items():
            for o in range(n):
                if mask >> o & 1 or preds[o] & ~mask:
                    continue
                new_mask = mask | 1 << o
                load, after = live, live
                for t in operands[o]:
                    if touch[t] & mask == 0:  # starts now
                        load += fp[t]
                        after += fp[t]
                    if touch[t] & ~new_mask == 0:  # its last touch is now
                        after -= fp[t]
                value = max(peak, load)
                if value >= upper:
                    continue
                old = nxt.get(new_mask)
                if old is None or value < old[0]:
                    nxt[new_mask] = (value, after)
                    back[new_mask] = (mask, o)
        total += len(nxt)
        if total > max_states or (deadline is not None and time.perf_counter() > deadline):
            return None
        if not nxt:
            return None, upper
        parents.append(back)
        layer = nxt
    ((full, (peak, _)),) = layer.items()
    order = []
    mask = full
    for back in reversed(parents):
        mask, o = back[mask]
        order.append(graph.operators[o].name)
    return tuple(reversed(order)), peak


def _greedy_order(problem: Problem) -> tuple[OpName, ...]:
    """A list schedule that runs, among ready operators, the one leaving the least live."""
    graph = problem.graph
    n = len(graph.operators)
    fp, touch, operands, preds = _masks(problem)
    done, live, order = 0, 0, []
    for _ in range(n):
        best = None
        for o in range(n):
            if done >> o & 1 or preds[o] & ~done:
                continue
            new = done | 1 << o
            load = after = live
            for t in operands[o]:
                if touch[t] & done == 0:
                    load += fp[t]
                    after += fp[t]
                if touch[t] & ~new == 0:
                    after -= fp[t]
            key = (load, after, o)
            if best is None or key < best[0]:
                best = (key, o, after)
        assert best is not None
        _, o, live = best
        done |= 1 << o
        order.append(graph.operators[o].name)
    return tuple(order)


def _cpsat_min_peak(
    problem: Problem, hint: Sequence[OpName], floor: int, time_limit: float | None, threads: int
) -> MinPeak:
    graph = problem.graph
    n = len(graph.operators)
    fp, touch, _, preds = _masks(problem)
    model = cp_model.CpModel()
    pos = [model.new_int_var(0, n - 1, f"pos_{k}") for k in range(n)]
    model.add_all_different(pos)
    for k in range(n):
        for p in range(n):
            if preds[k] >> p & 1:
                model.add(pos[p] < pos[k])
    intervals, demands = [], []
    for t, mask in enumerate(touch):
        users = [pos[k] for k in range(n) if mask >> k & 1]
        if not users:
            continue
        first = model.new_int_var(0, n - 1, f"first_{t}")
        last = model.new_int_var(1, n, f"end_{t}")
        model.add_min_equality(first, users)
        model.add_max_equality(last, [u + 1 for u in users])
        size = model.new_int_var(1, n, f"len_{t}")
        intervals.append(model.new_interval_var(first, size, last, f"live_{t}"))
        demands.append(fp[t])
    upper = peak_live_bytes(problem, hint)
    peak = model.new_int_var(floor, upper, "peak")
    model.add_cumulative(intervals, demands, peak)
    model.minimize(peak)
    for step, name in enumerate(hint):
        model.add_hint(pos[graph.op_index[name]], step)
    solver = cp_model.CpSolver()
    solver.parameters.num_workers = max(1, threads)
    if time_limit is not None:
        solver.parameters.max_time_in_seconds = time_limit
    try:
        status = solve_interruptibly(solver, model)
    except KeyboardInterrupt:
        return MinPeak(tuple(hint), upper, False, floor)
    if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return MinPeak(tuple(hint), upper, False, floor)
    order = tuple(sorted((op.name for op in graph.operators), key=lambda name: solver.value(pos[graph.op_index[name]])))
    value = peak_live_bytes(problem, order)  # recomputed by the shared analysis, never taken on trust
    bound = max(floor, int(solver.best_objective_bound))
    if value > upper:
        order, value = tuple(hint), upper
    return MinPeak(order, value, status == cp_model.OPTIMAL and value == bound, min(bound, value))


__all__ = ["MinPeak", "min_peak"]
