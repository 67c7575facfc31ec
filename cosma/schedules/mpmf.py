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

import heapq
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


def _bits(mask: int) -> list[int]:
    """The set bits of ``mask``, ascending, in time proportional to their number."""
    out = []
    while mask:
        low = mask & -mask
        out.append(low.bit_length() - 1)
        mask ^= low
    return out


def _successors(preds: list[int]) -> list[list[int]]:
    out: list[list[int]] = [[] for _ in preds]
    for o, mask in enumerate(preds):
        for p in _bits(mask):
            out[p].append(o)
    return out


def _advance(ready: tuple[int, ...], succ: list[list[int]], preds: list[int], new_mask: int, o: int) -> tuple[int, ...]:
    """The operators ready after ``new_mask = mask | 1 << o``, given those ready after
    ``mask`` (ascending, as a scan of every operator lists them)."""
    added = [s for s in succ[o] if preds[s] & new_mask == preds[s]]
    rest = [k for k in ready if k != o]
    return tuple(sorted(rest + added)) if added else tuple(rest)


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
    succ = _successors(preds)
    # layer: mask -> (peak so far, live bytes after, operators ready); the ready tuples are
    # kept up to date per state, so a state costs its ready operators, not a scan of all.
    layer: dict[int, tuple[int, int, tuple[int, ...]]] = {0: (0, 0, tuple(o for o in range(n) if not preds[o]))}
    parents: list[dict[int, tuple[int, int]]] = []
    total = 1
    for _ in range(n):
        nxt: dict[int, tuple[int, int, tuple[int, ...]]] = {}
        back: dict[int, tuple[int, int]] = {}
        for count, (mask, (peak, live, ready)) in enumerate(layer.items()):
            if deadline is not None and count % 64 == 63 and time.perf_counter() > deadline:
                return None
            for o in ready:
                new_mask = mask | 1 << o
                load, after = live, live
                for t in operands[o]:
                    if touch[t] & mask == 0:  # starts now
                        load += fp[t]
                        after += fp[t]
                    if touch[t] & new_mask == touch[t]:  # its last touch is now
                        after -= fp[t]
                value = max(peak, load)
                if value >= upper:
                    continue
                old = nxt.get(new_mask)
                if old is None or value < old[0]:
                    nxt[new_mask] = (value, after, ready)
                    back[new_mask] = (mask, o)
        nxt = {m: (v, a, _advance(r, succ, preds, m, back[m][1])) for m, (v, a, r) in nxt.items()}
        total += len(nxt)
        if total > max_states or (deadline is not None and time.perf_counter() > deadline):
            return None
        if not nxt:
            return None, upper
        parents.append(back)
        layer = nxt
    ((full, (peak, _, _)),) = layer.items()
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
    succ = _successors(preds)
    users: list[list[int]] = [_bits(mask) for mask in touch]
    left = [len(u) for u in users]  # operators still to touch each tensor

    def delta(o: int) -> tuple[int, int]:
        """Load and live-after of ``o`` less the live bytes now: they depend only on its
        tensors, so a heap of the ready operators re-keys only the users of what ran."""
        load = after = 0
        for t in operands[o]:
            if left[t] == len(users[t]):  # untouched: starts now
                load += fp[t]
                after += fp[t]
            if left[t] == 1:  # its last touch is now
                after -= fp[t]
        return load, after

    keys = {o: delta(o) for o in range(n) if not preds[o]}
    heap = [(*key, o) for o, key in keys.items()]
    heapq.heapify(heap)
    done, order = 0, []
    while heap:
        load, after, o = heapq.heappop(heap)
        if keys.get(o) != (load, after):
            continue
        del keys[o]
        done |= 1 << o
        order.append(graph.operators[o].name)
        touched = set()
        for t in operands[o]:
            if left[t] == len(users[t]) or left[t] == 2:  # first touch, or one toucher left after this
                touched.update(users[t])
            left[t] -= 1
        for k in touched:
            if k in keys:
                keys[k] = delta(k)
                heapq.heappush(heap, (*keys[k], k))
        for k in succ[o]:
            if k not in keys and preds[k] & done == preds[k]:
                keys[k] = delta(k)
                heapq.heappush(heap, (*keys[k], k))
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
        for p in _bits(preds[k]):
            model.add(pos[p] < pos[k])
    intervals, demands = [], []
    for t, mask in enumerate(touch):
        users = [pos[k] for k in _bits(mask)]
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
