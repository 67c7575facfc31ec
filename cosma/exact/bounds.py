"""Lower bounds on non-compulsory bytes shared by the exact solvers: no-address
relaxations solved as knapsacks in CP-SAT, each returning a proven bound even when it
runs out of time.

* ``fixed_schedule_bound``: over plans with a given operator order (one evict decision per
  gap between consecutive uses);
* ``schedule_free_bound``: over every operator order (a tensor kept whole must span every
  operator the DAG places between two of its users);
* ``peak_bound``: over every operator order, from the minimum peak live bytes (what must
  be evicted at the busiest step of the best order);
* ``cut_bound``: over every operator order, from the least live bytes any order can have
  while each operator runs (a minimum closure cut per operator);
* ``cheap_order_bounds``: the three above, and which is largest.
"""

from __future__ import annotations

import math
from typing import Sequence

from ortools.sat.python import cp_model

from cosma.core.analysis import operator_footprint, use_steps
from cosma.core.clock import Clock
from cosma.core.ir import Bytes, OpName, Problem, TensorKind, TensorName


def _knapsack_bound(
    items: dict[str, tuple[int, Bytes]],
    rows: list[tuple[list[str], int]],
    time_limit: float,
    groups: Sequence[tuple[Bytes, list[str]]] = (),
    clock: Clock | None = None,
) -> Bytes:
    """min sum(cost_i * e_i) + sum(group cost * any e_i of the group) s.t. for each row,
    sum(units_i * (1 - e_i)) <= rhs over its items; ``items[i] = (units, cost)``, ``e_i``
    binary (evicted). Returns CP-SAT's proven bound, rounded up; 0 when ``clock`` runs out
    while the model is built."""
    m = cp_model.CpModel()
    rows = [(its, rhs) for its, rhs in rows if sum(items[i][0] for i in its) > rhs]
    if not rows:
        return 0
    used = sorted({i for its, _ in rows for i in its})
    evict = {i: m.NewBoolVar(i) for i in used}
    for its, rhs in rows:
        if _out_of_time(clock):
            return 0
        m.Add(sum(items[i][0] * (1 - evict[i]) for i in its) <= rhs)
    terms = [items[i][1] * evict[i] for i in used]
    for cost, its in groups:
        its = [i for i in its if i in evict]
        if its:
            any_evicted = m.NewBoolVar("")
            for i in its:
                m.AddImplication(evict[i], any_evicted)
            terms.append(cost * any_evicted)
    m.Minimize(sum(terms))
    solver = cp_model.CpSolver()
    left = None if clock is None else clock.left()
    solver.parameters.max_time_in_seconds = max(time_limit if left is None else min(time_limit, left), 0.05)
    solver.parameters.num_workers = 1
    solver.parameters.catch_sigint_signal = False
    status = solver.Solve(m)
    if status == cp_model.OPTIMAL:
        return round(solver.ObjectiveValue())
    if status in (cp_model.FEASIBLE, cp_model.UNKNOWN):
        return max(0, math.ceil(solver.BestObjectiveBound() - 1e-6))
    return 0


def fixed_schedule_bound(
    problem: Problem, schedule: Sequence[OpName], time_limit: float = 4.0, clock: Clock | None = None
) -> Bytes:
    """A lower bound on non-compulsory bytes over plans with this schedule.

    Relaxation: offsets ignored, and one eviction decision per *gap* between consecutive
    uses of a tensor: at each step, the operands plus every kept gap spanning the step
    fit the capacity. An evicted gap costs a reload; the first eviction of an activation
    also its spill, once.

    ``time_limit`` is CP-SAT's; ``clock``, when given, bounds the whole call: the model has
    one term per (gap, step inside it), tens of millions on a 5k-operator RandWire graph
    (a minute to build), so past the clock the build stops and the bound is 0."""
    graph = problem.graph
    a = problem.alignment
    n = len(schedule)
    spanning: list[list[str]] = [[] for _ in range(n)]
    items: dict[str, tuple[int, Bytes]] = {}
    groups: list[tuple[Bytes, list[str]]] = []
    for t, uses in use_steps(problem, schedule).items():
        if _out_of_time(clock):
            return 0
        size, keys = graph.tensors[t].size, []
        for j in range(len(uses) - 1):
            if uses[j + 1] - uses[j] > 1:  # a gap with no step inside never needs evicting
                key = f"{t}#{j}"
                keys.append(key)
                items[key] = (problem.footprint(t) // a, size)
                for s in range(uses[j] + 1, uses[j + 1]):
                    spanning[s].append(key)
        if graph.tensors[t].kind is TensorKind.ACTIVATION and keys:
            groups.append((size, keys))
    rows = [(spanning[s], problem.capacity // a - operator_footprint(problem, schedule[s]) // a) for s in range(n)]
    return _knapsack_bound(items, rows, time_limit, groups, clock)


def _out_of_time(clock: Clock | None) -> bool:
    return clock is not None and clock.expired()


def schedule_free_bound(problem: Problem, time_limit: float = 4.0) -> Bytes:
    """A lower bound on non-compulsory bytes over every schedule.

    If tensor ``t`` is never evicted it is resident from its first use to its last, so at
    every operator ``o`` that comes after one of its users and before another *in the DAG*
    (hence in every schedule) and does not use it. Per operator, those tensors plus its
    operands must fit; evicting ``t`` at least once costs a reload, plus a spill for an
    activation."""
    from cosma.schedules.minpeak import op_dag, topological_order

    graph = problem.graph
    order = topological_order(problem)
    pos = {name: i for i, name in enumerate(order)}
    dag = op_dag(problem)
    n = len(order)
    anc, desc = [0] * n, [0] * n
    for i, name in enumerate(order):
        for p in dag.predecessors(name):
            anc[i] |= anc[pos[p]] | (1 << pos[p])
    for i in range(n - 1, -1, -1):
        for s in dag.successors(order[i]):
            desc[i] |= desc[pos[s]] | (1 << pos[s])
    a = problem.alignment
    members: list[list[str]] = [[] for _ in range(n)]
    items: dict[str, tuple[int, Bytes]] = {}
    users: dict[TensorName, int] = {}
    for op in graph.operators:
        for t in problem.operands(op):
            users[t] = users.get(t, 0) | (1 << pos[op.name])
    for t, mask in users.items():
        after = before = 0
        m = mask
        while m:
            low = m & -m
            i = low.bit_length() - 1
            after |= desc[i]
            before |= anc[i]
            m ^= low
        between = after & before & ~mask
        if not between:
            continue
        tensor = graph.tensors[t]
        items[t] = (problem.footprint(t) // a, tensor.size * (2 if tensor.kind is TensorKind.ACTIVATION else 1))
        while between:
            low = between & -between
            members[low.bit_length() - 1].append(t)
            between ^= low
    cap_units = problem.capacity // a
    rows = [(members[i], cap_units - operator_footprint(problem, order[i]) // a) for i in range(n)]
    return _knapsack_bound(items, rows, time_limit)


def peak_bound(problem: Problem, time_limit: float = 2.0) -> Bytes:
    """A lower bound on non-compulsory bytes over every schedule, from the minimum peak.

    In every order some step has at least ``M_P`` bytes live (``cosma.core.analysis``: a
    tensor is live from its first use to its last), where ``M_P`` is the minimum over
    orders of the peak live bytes; here a proven lower bound on it (the memory-minimizing
    scheduler's). At most the capacity is resident, so live tensors with footprints adding
    up to the excess are out of the scratchpad at that step, and each of them is used later:
    a reload of its size, and for an activation a spill too (once, and these are distinct
    tensors). The cheapest way to free the excess, taking tensors fractionally in order of
    cost per footprint byte, costs at least as much."""
    from cosma.schedules.minpeak import schedule_min_peak

    lower = schedule_min_peak(problem, time_limit).lower_bound
    excess = lower - problem.capacity
    if excess <= 0:
        return 0
    graph = problem.graph
    items = []
    for t in problem.managed_tensors:
        size = graph.tensors[t].size
        cost = size * (2 if graph.tensors[t].kind is TensorKind.ACTIVATION else 1)
        items.append((cost / problem.footprint(t), problem.footprint(t)))
    total = 0.0
    for ratio, footprint in sorted(items):
        take = min(footprint, excess)
        total += ratio * take
        excess -= take
        if excess <= 0:
            break
    return math.floor(total + 1e-9)


def cut_bound(problem: Problem, time_limit: float = 2.0) -> Bytes:
    """A lower bound on non-compulsory bytes over every schedule, from minimum cuts.

    Whatever the order, when operator ``o`` runs the operators run so far form a downset
    ``D`` (closed under predecessors) holding ``o`` and its ancestors and none of its
    descendants, and every tensor with a member (producer or user) in ``D`` and one outside
    it is live then, as are ``o``'s operands. The least footprint of such tensors over
    those ``D`` is a minimum closure cut: one max-flow per operator (OR-Tools), a tensor a
    node pair whose arc costs its footprint. Live bytes above the capacity at ``o``'s step
    are out of the scratchpad then; none is an operand of ``o``, each was touched before
    and is used after, so each costs a reload (and an activation its spill): the cheapest
    cover of the excess by such tensors, taken fractionally by cost per footprint byte,
    is the operator's bound, and the largest over operators (as many as ``time_limit``
    allows, the most crowded first) is returned. Where ``schedule_free_bound`` sees only
    the tensors every order keeps live, this sees that some branch must be open."""
    import numpy as np
    from ortools.graph.python import max_flow

    from cosma.schedules.minpeak import topological_order

    clock = Clock(time_limit)
    graph = problem.graph
    order = topological_order(problem)
    n = len(order)
    pos = {name: i for i, name in enumerate(order)}
    preds = [[pos[p] for p in graph.predecessors(name)] for name in order]
    anc, desc = [0] * n, [0] * n
    for i in range(n):
        for p in preds[i]:
            anc[i] |= anc[p] | (1 << p)
    for i in range(n - 1, -1, -1):
        for p in preds[i]:
            desc[p] |= desc[i] | (1 << i)
    members: dict[TensorName, list[int]] = {}
    operands: list[list[TensorName]] = [[] for _ in range(n)]
    for name in order:
        for t in problem.operands(graph.operators[graph.op_index[name]]):
            members.setdefault(t, []).append(pos[name])
            operands[pos[name]].append(t)
    shared = [t for t, ms in members.items() if len(ms) > 1 and problem.footprint(t) > 0]
    infinite = sum(problem.footprint(t) for t in members) + 1

    # Nodes: operators 0..n-1, a pair (2 t, 2 t + 1) per shared tensor after them, source, sink.
    flow = max_flow.SimpleMaxFlow()
    source, sink = n + 2 * len(shared), n + 2 * len(shared) + 1
    for i in range(n):
        for p in preds[i]:
            flow.add_arc_with_capacity(i, p, infinite)  # i in D => its predecessor in D
    for k, t in enumerate(shared):
        a, b = n + 2 * k, n + 2 * k + 1
        flow.add_arc_with_capacity(a, b, problem.footprint(t))  # cut: a member in D, one outside
        for m in members[t]:
            flow.add_arc_with_capacity(m, a, infinite)
            flow.add_arc_with_capacity(b, m, infinite)
    first = flow.num_arcs()
    tails = np.array([source] * n + list(range(n)), dtype=np.int32)
    heads = np.array(list(range(n)) + [sink] * n, dtype=np.int32)
    flow.add_arcs_with_capacity(tails, heads, np.zeros(2 * n, dtype=np.int64))
    arcs = np.arange(first, first + 2 * n, dtype=np.int32)

    def bits(mask: int) -> np.ndarray:
        """The bitmask over operators as a boolean array (a Python loop per bit is quadratic)."""
        raw = np.frombuffer(mask.to_bytes((n + 7) // 8, "little"), dtype=np.uint8)
        return np.unpackbits(raw, bitorder="little")[:n].astype(bool)

    items = []
    for t in members:
        tensor = graph.tensors[t]
        if problem.footprint(t) > 0:
            cost = tensor.size * (2 if tensor.kind is TensorKind.ACTIVATION else 1)
            items.append((cost / problem.footprint(t), problem.footprint(t), t))
    items.sort(key=lambda item: item[0])
    crowded = sorted(range(n), key=lambda i: -operator_footprint(problem, order[i]))
    best = 0.0
    for i in crowded:
        if clock.expired():
            break
        inside = anc[i] | (1 << i)
        forced_in, forced_out = bits(inside), bits(desc[i])
        caps = np.concatenate([forced_in, forced_out & ~forced_in]).astype(np.int64) * infinite
        flow.set_arcs_capacity(arcs, caps)
        if flow.solve(source, sink) != flow.OPTIMAL:
            continue
        live = flow.optimal_flow()
        # Operands the cut cannot have counted: every member is in D whatever D is.
        own = set(operands[i])
        live += sum(problem.footprint(t) for t in own if all((inside >> m) & 1 for m in members[t]))
        excess = live - problem.capacity
        if excess <= 0:
            continue
        total = 0.0
        for ratio, footprint, t in items:
            ms = members[t]
            # Certainly resident (an operand), dead (every member ran) or not yet touched: not evictable.
            if t in own or all((inside >> m) & 1 for m in ms) or all((desc[i] >> m) & 1 for m in ms):
                continue
            take = min(footprint, excess)
            total += ratio * take
            excess -= take
            if excess <= 0:
                break
        best = max(best, total)
    return math.floor(best + 1e-9)


def cheap_order_bounds(problem: Problem, time_limit: float = 3.0) -> tuple[Bytes, str, dict[str, Bytes]]:
    """The cheap bounds over every order (no order model): ``(the largest, its name, each
    by name)``, within about ``time_limit`` seconds: ``schedule_free_bound`` and ``cut_bound``
    (each stops when done: under a second on NAS graphs) first, with a sixth and a half of
    it, then ``peak_bound``'s scheduler with what is left."""
    clock = Clock(time_limit)
    parts = {"schedule_free_bound": schedule_free_bound(problem, max(0.05, time_limit / 6))}
    parts["cut bound"] = cut_bound(problem, max(0.05, time_limit / 2))
    parts["peak bound"] = peak_bound(problem, max(0.05, clock.left()))
    how = max(parts, key=lambda k: parts[k])
    return parts[how], how, parts


__all__ = ["fixed_schedule_bound", "schedule_free_bound", "peak_bound", "cut_bound", "cheap_order_bounds"]
