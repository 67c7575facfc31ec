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
* ``chain_bound``: over every operator order, the cuts of a path of operators chosen
  together (nested downsets), each tensor's reloads counted along the path;
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
    left = None if clock is None else clock.left()
    return _proven_bound(m, time_limit if left is None else min(time_limit, left))


def _proven_bound(m: cp_model.CpModel, seconds: float, linearization_level: int | None = None) -> Bytes:
    """The minimization ``m``'s optimum, or CP-SAT's proven bound on it (rounded up) when
    ``seconds`` (at least 0.05) run out first; 0 if it is infeasible. One worker, and Ctrl-C
    left to the caller."""
    solver = cp_model.CpSolver()
    solver.parameters.max_time_in_seconds = max(seconds, 0.05)
    solver.parameters.num_workers = 1
    if linearization_level is not None:
        solver.parameters.linearization_level = linearization_level
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

    The memory-minimizing scheduler's pieces (``cosma.schedules.minpeak.piece_peak_bounds``)
    come with a proven lower bound ``P`` on the peak live bytes of their steps in every
    order (``cosma.core.analysis``: a tensor is live from its first use to its last), its
    time on the most crowded pieces. At most the capacity is resident, so live tensors with
    footprints adding up to ``P - capacity`` are out of the scratchpad at such a step. None
    is an operand there, so each has a member (producer or user) before the step and one
    after it: a tensor with a single member is never among them, and neither is one with
    no member in the piece unless it has members on both sides of it. Each of them costs a
    reload of its size before its next use, and an activation also its spill (once, and
    these are distinct tensors). The cheapest such set (``_cheapest_cover``) costs at least
    as much; the largest over the pieces is returned."""
    from cosma.schedules.minpeak import piece_peak_bounds

    pieces = piece_peak_bounds(problem, time_limit, above=problem.capacity)
    if all(lower <= problem.capacity for _, lower in pieces):
        return 0
    graph = problem.graph
    piece_of = {name: k for k, (ops, _) in enumerate(pieces) for name in ops}
    members: dict[TensorName, list[int]] = {t: [] for t in problem.managed_tensors}
    for op in graph.operators:
        for t in problem.operands(op):
            members[t].append(piece_of[op.name])
    best = 0
    for k, (_, lower) in enumerate(pieces):
        if lower <= problem.capacity:
            continue
        items = []
        for t, at in members.items():
            if len(at) > 1 and (k in at or min(at) < k < max(at)):
                tensor = graph.tensors[t]
                items.append((problem.footprint(t), tensor.size * (2 if tensor.kind is TensorKind.ACTIVATION else 1)))
        best = max(best, _cheapest_cover(items, lower - problem.capacity, problem.alignment))
    return best


def _cheapest_cover(items: Sequence[tuple[Bytes, Bytes]], excess: Bytes, alignment: int = 1) -> Bytes:
    """The least total cost of items ``(footprint, cost)`` whose footprints add up to at
    least ``excess``: a covering knapsack, exact by dynamic programming over the footprints
    in units of their greatest common divisor (a multiple of the alignment), or, where that
    table would be too large, its fractional relaxation (cheapest cost per byte first),
    which is never above it. Every item's cost when even all of them fall short."""
    if excess <= 0:
        return 0
    if sum(f for f, _ in items) < excess:
        return sum(c for _, c in items)
    unit = math.gcd(alignment, *(f for f, _ in items))
    need = -(-excess // unit)  # a sum of multiples of ``unit`` covers ``excess`` iff it covers this
    if need * len(items) <= 20_000_000:
        import numpy as np

        cost = np.full(need + 1, np.iinfo(np.int64).max // 4, dtype=np.int64)  # cost[j]: covering j units
        cost[0] = 0
        for footprint, c in items:
            w = footprint // unit
            shifted = np.empty_like(cost)
            shifted[: min(w, need + 1)] = c  # covers j <= w alone
            if w <= need:
                shifted[w:] = cost[: need + 1 - w] + c
            np.minimum(cost, shifted, out=cost)
        return int(cost[need])
    total, left = 0.0, excess
    for footprint, c in sorted(items, key=lambda item: item[1] / item[0]):
        take = min(footprint, left)
        total += c / footprint * take
        left -= take
        if left <= 0:
            break
    return math.floor(total + 1e-9)


class _OrderCuts:
    """The DAG as bitmasks over a topological order, and the least live footprint any order
    can have while an operator runs: a minimum closure cut (one max-flow, OR-Tools), a
    tensor a node pair whose arc costs its footprint. Shared by ``cut_bound`` and
    ``chain_bound``; ``live`` is computed once per operator."""

    def __init__(self, problem: Problem) -> None:
        import numpy as np
        from ortools.graph.python import max_flow

        from cosma.schedules.minpeak import topological_order

        graph = problem.graph
        self.problem = problem
        self.order = order = topological_order(problem)
        self.n = n = len(order)
        pos = {name: i for i, name in enumerate(order)}
        self.preds = preds = [sorted({pos[p] for p in graph.predecessors(name)}) for name in order]
        self.anc, self.desc = anc, desc = [0] * n, [0] * n
        for i in range(n):
            for p in preds[i]:
                anc[i] |= anc[p] | (1 << p)
        for i in range(n - 1, -1, -1):
            for p in preds[i]:
                desc[p] |= desc[i] | (1 << i)
        self.members: dict[TensorName, list[int]] = {}
        self.operands: list[list[TensorName]] = [[] for _ in range(n)]
        for name in order:
            for t in problem.operands(graph.operators[graph.op_index[name]]):
                self.members.setdefault(t, []).append(pos[name])
                self.operands[pos[name]].append(t)
        shared = [t for t, ms in self.members.items() if len(ms) > 1]
        self._infinite = infinite = sum(problem.footprint(t) for t in self.members) + 1

        # Nodes: operators 0..n-1, a pair (2 t, 2 t + 1) per shared tensor after them, source, sink.
        self._flow = flow = max_flow.SimpleMaxFlow()
        self._source, self._sink = n + 2 * len(shared), n + 2 * len(shared) + 1
        for i in range(n):
            for p in preds[i]:
                flow.add_arc_with_capacity(i, p, infinite)  # i in D => its predecessor in D
        for k, t in enumerate(shared):
            a, b = n + 2 * k, n + 2 * k + 1
            flow.add_arc_with_capacity(a, b, problem.footprint(t))  # cut: a member in D, one outside
            for m in self.members[t]:
                flow.add_arc_with_capacity(m, a, infinite)
                flow.add_arc_with_capacity(b, m, infinite)
        first = flow.num_arcs()
        tails = np.array([self._source] * n + list(range(n)), dtype=np.int32)
        heads = np.array(list(range(n)) + [self._sink] * n, dtype=np.int32)
        flow.add_arcs_with_capacity(tails, heads, np.zeros(2 * n, dtype=np.int64))
        self._arcs = np.arange(first, first + 2 * n, dtype=np.int32)
        self._live: dict[int, Bytes] = {}

    def bits(self, mask: int):
        """The bitmask over operators as a boolean array (a Python loop per bit is quadratic)."""
        import numpy as np

        raw = np.frombuffer(mask.to_bytes((self.n + 7) // 8, "little"), dtype=np.uint8)
        return np.unpackbits(raw, bitorder="little")[: self.n].astype(bool)

    def live(self, i: int) -> Bytes | None:
        """The least footprint live while operator ``i`` runs, over every order: its
        operands and every tensor with a member (producer or user) run before it and one
        not yet run. None if the max-flow fails."""
        import numpy as np

        if i in self._live:
            return self._live[i]
        inside = self.anc[i] | (1 << i)
        forced_in, forced_out = self.bits(inside), self.bits(self.desc[i])
        caps = np.concatenate([forced_in, forced_out & ~forced_in]).astype(np.int64) * self._infinite
        self._flow.set_arcs_capacity(self._arcs, caps)
        if self._flow.solve(self._source, self._sink) != self._flow.OPTIMAL:
            return None
        live = self._flow.optimal_flow()
        # Operands the cut cannot have counted: every member is in D whatever D is.
        live += sum(self.problem.footprint(t) for t in set(self.operands[i]) if self.done_by(t, inside))
        self._live[i] = live
        return live

    def done_by(self, t: TensorName, mask: int) -> bool:
        return all((mask >> m) & 1 for m in self.members[t])

    def crowded(self) -> list[int]:
        """Operators, the largest footprint first (the likeliest to overflow)."""
        return sorted(range(self.n), key=lambda i: -operator_footprint(self.problem, self.order[i]))


def cut_bound(problem: Problem, time_limit: float = 2.0, cuts: _OrderCuts | None = None) -> Bytes:
    """A lower bound on non-compulsory bytes over every schedule, from minimum cuts.

    Whatever the order, when operator ``o`` runs the operators run so far form a downset
    ``D`` (closed under predecessors) holding ``o`` and its ancestors and none of its
    descendants, and every tensor with a member (producer or user) in ``D`` and one outside
    it is live then, as are ``o``'s operands. The least footprint of such tensors over
    those ``D`` is a minimum closure cut (``_OrderCuts.live``). Live bytes above the
    capacity at ``o``'s step are out of the scratchpad then; none is an operand of ``o``,
    each was touched before and is used after, so each costs a reload (and an activation
    its spill): the cheapest cover of the excess by such tensors, taken fractionally by
    cost per footprint byte, is the operator's bound, and the largest over operators (as
    many as ``time_limit`` allows, the most crowded first) is returned. Where
    ``schedule_free_bound`` sees only the tensors every order keeps live, this sees that
    some branch must be open."""
    clock = Clock(time_limit)
    cuts = cuts or _OrderCuts(problem)
    graph = problem.graph
    items = []
    for t in cuts.members:
        tensor = graph.tensors[t]
        cost = tensor.size * (2 if tensor.kind is TensorKind.ACTIVATION else 1)
        items.append((cost / problem.footprint(t), problem.footprint(t), t))
    items.sort(key=lambda item: item[0])
    best = 0.0
    for i in cuts.crowded():
        if clock.expired():
            break
        live = cuts.live(i)
        if live is None or live <= problem.capacity:
            continue
        excess = live - problem.capacity
        inside, own = cuts.anc[i] | (1 << i), set(cuts.operands[i])
        total = 0.0
        for ratio, footprint, t in items:
            # Certainly resident (an operand), dead (every member ran) or not yet touched: not evictable.
            if t in own or cuts.done_by(t, inside) or cuts.done_by(t, cuts.desc[i]):
                continue
            take = min(footprint, excess)
            total += ratio * take
            excess -= take
            if excess <= 0:
                break
        best = max(best, total)
    return math.floor(best + 1e-9)


def chain_bound(
    problem: Problem, time_limit: float = 2.0, cuts: _OrderCuts | None = None, max_booleans: int = 100_000
) -> Bytes:
    """A lower bound on non-compulsory bytes over every schedule: ``cut_bound``'s cuts at a
    chain of operators, chosen together, with reloads counted across the chain.

    ``cut_bound`` takes the largest excess over single operators, each with the downset
    that suits it. But operators on a path of the DAG run in that order in every
    schedule, so their downsets are nested, and a tensor out of the scratchpad at two of
    them needs two reloads if one of its users runs in between. The Transformer's decoder
    shows why it matters: at each layer's MLP the encoder output (or the keys and values
    computed from it) does not fit, and each later layer reads it again: five reloads,
    where any single operator proves one.

    The chain: a longest path through the operators whose least live footprint
    (``_OrderCuts.live``) overflows the capacity. The CP-SAT model, per chain operator
    ``c_j``: ``x[v, j]`` = floating operator ``v`` (neither ancestor nor descendant) has run
    (downsets closed under predecessors, nested along the chain); for every tensor ``t``
    not an operand of ``c_j`` that can be live there, ``live`` when a member ran and one
    has not, ``out[t, j] <= live``; capacity: ``c_j``'s operands plus the live tensors not
    out fit (footprints, no addresses). Cost, which every plan in every order pays at
    least: each *run* of consecutive outs of ``t`` with no member of ``t`` run in between
    ends in a reload of ``size`` before its next use (distinct runs, distinct reloads), and
    an activation ever out was spilled once. Every valid plan maps to a solution (its
    order's downsets; out = not resident) of no higher cost, so CP-SAT's proven bound is
    valid at any time limit. 0 when nothing overflows or the model would exceed
    ``max_booleans``."""
    import numpy as np

    clock = Clock(time_limit)
    cuts = cuts or _OrderCuts(problem)
    graph = problem.graph
    a = problem.alignment
    cap = problem.capacity // a
    n, anc, desc = cuts.n, cuts.anc, cuts.desc
    binding = [False] * n
    for i in cuts.crowded():
        if clock.expired():
            break
        live = cuts.live(i)
        binding[i] = live is not None and live > problem.capacity
    # The path through the most binding operators (a path's operators are totally ordered).
    count, back = [0] * n, [-1] * n
    for i in range(n):
        p = max(cuts.preds[i], key=lambda q: count[q], default=-1)
        count[i], back[i] = binding[i] + (count[p] if p >= 0 else 0), p
    if not any(binding):
        return 0
    i, chain = max(range(n), key=lambda q: count[q]), []
    while i >= 0:
        if binding[i]:
            chain.append(i)
        i = back[i]
    chain.reverse()
    everything = (1 << n) - 1
    masks = [everything & ~anc[c] & ~desc[c] & ~(1 << c) for c in chain]  # the floating operators
    if sum(mask.bit_count() for mask in masks) > max_booleans:
        return 0
    floating = [[int(v) for v in np.flatnonzero(cuts.bits(mask))] for mask in masks]
    shared = {t: ms for t, ms in cuts.members.items() if len(ms) > 1}

    m = cp_model.CpModel()
    ran: list[dict[int, cp_model.IntVar]] = []

    def has_run(v: int, j: int):
        """``x[v, j]``: a constant for ``c_j``'s ancestors (1), itself and descendants (0)."""
        c = chain[j]
        if (anc[c] >> v) & 1:
            return 1
        if v == c or (desc[c] >> v) & 1:
            return 0
        return ran[j][v]

    for j, c in enumerate(chain):
        if clock.expired():
            return 0
        ran.append({v: m.NewBoolVar(f"x{v}_{j}") for v in floating[j]})
        for v, x in ran[j].items():
            for p in cuts.preds[v]:
                if p in ran[j]:
                    m.AddImplication(x, ran[j][p])
        for v, x in ran[j - 1].items() if j else ():  # nested downsets
            if v in ran[j]:
                m.AddImplication(x, ran[j][v])
            elif not (anc[c] >> v) & 1:  # c_j itself or a descendant: not run at c_{j-1} either
                m.Add(x == 0)
    out: dict[tuple[TensorName, int], cp_model.IntVar] = {}
    for j, c in enumerate(chain):
        if clock.expired():
            return 0
        row = []
        own = set(cuts.operands[c])
        for t, ms in shared.items():
            if t in own:
                continue
            xs = [has_run(u, j) for u in ms]
            known = [x for x in xs if isinstance(x, int)]  # CP-SAT variables cannot be compared
            if len(known) == len(xs) and len(set(known)) == 1:
                continue  # dead, or not touched yet, in every order
            some_ran = 1 if 1 in known else m.NewBoolVar("")
            some_left = 1 if 0 in known else m.NewBoolVar("")
            for x in xs:
                if not isinstance(x, int):
                    if not isinstance(some_ran, int):
                        m.AddImplication(x, some_ran)
                    if not isinstance(some_left, int):
                        m.AddBoolOr([x, some_left])
            live = 1 if isinstance(some_ran, int) and isinstance(some_left, int) else m.NewBoolVar("")
            if not isinstance(live, int):
                m.Add(live >= some_ran + some_left - 1)
            out[t, j] = o = m.NewBoolVar("")
            if not isinstance(live, int):
                m.AddImplication(o, live)
            row.append(problem.footprint(t) // a * (live - o))
        if row:
            m.Add(sum(row) <= cap - operator_footprint(problem, cuts.order[c]) // a)
    terms = []
    for t, ms in shared.items():
        size = graph.tensors[t].size
        at = [j for j in range(len(chain)) if (t, j) in out]
        for j, k in zip(at, at[1:]):
            # A run of absences ends at c_j: t is back (or dead) at c_k, or a member runs in between.
            ends = m.NewBoolVar("")
            m.Add(ends >= out[t, j] - out[t, k])
            for u in ms:
                before, after = has_run(u, j), has_run(u, k)
                if isinstance(before, int) and isinstance(after, int):
                    if after - before == 1:
                        m.AddImplication(out[t, j], ends)
                else:
                    m.Add(ends >= out[t, j] + after - before - 1)
            terms.append(size * ends)
        if at:
            terms.append(size * out[t, at[-1]])  # the last run ends too: t is used after c_j
        if graph.tensors[t].kind is TensorKind.ACTIVATION and at:
            spilled = m.NewBoolVar("")
            for j in at:
                m.AddImplication(out[t, j], spilled)
            terms.append(size * spilled)
    if not terms:
        return 0
    m.Minimize(sum(terms))
    return _proven_bound(m, clock.left() or 0.0, linearization_level=2)


def cheap_order_bounds(problem: Problem, time_limit: float = 3.0) -> tuple[Bytes, str, dict[str, Bytes]]:
    """The cheap bounds over every order (no order model): ``(the largest, its name, each
    by name)``, within about ``time_limit`` seconds: ``schedule_free_bound``, ``cut_bound``
    and ``chain_bound`` (sharing one set of cuts; each stops when done: under a second on
    most graphs) with a sixth, a third and a third of it, then ``peak_bound``'s scheduler
    with what is left."""
    clock = Clock(time_limit)
    parts = {"schedule_free_bound": schedule_free_bound(problem, max(0.05, time_limit / 6))}
    # Each later part gets its share of what the clock has left (the builds before it are not
    # interruptible: on a 20k-operator stack they take a second), and none once it is spent.
    parts.update({"cut bound": 0, "chain bound": 0, "peak bound": 0})
    if clock.left() > 0.1:
        cuts = _OrderCuts(problem)
        if clock.left() > 0.1:
            parts["cut bound"] = cut_bound(problem, min(time_limit / 3, clock.left() / 2), cuts)
        if clock.left() > 0.1:
            parts["chain bound"] = chain_bound(problem, min(time_limit / 3, clock.left() / 2), cuts)
    if clock.left() > 0.1:
        parts["peak bound"] = peak_bound(problem, clock.left())
    how = max(parts, key=lambda k: parts[k])
    return parts[how], how, parts


__all__ = [
    "fixed_schedule_bound",
    "schedule_free_bound",
    "peak_bound",
    "cut_bound",
    "chain_bound",
    "cheap_order_bounds",
]
