"""Order-aware exact search: a lower bound over EVERY topological order, and the search
over orders that closes it (tracker issue #17).

``cosma.exact.solver`` is optimal for one operator order at a time. Here the order is a
variable too, in a step-indexed CP-SAT model whose only relaxation is fragmentation:

* **order**: ``x[o, t]`` = operator ``o`` runs at step ``t``, for ``t`` in its ASAP/ALAP
  window (``|ancestors|`` .. ``n - 1 - |descendants|``: every topological order puts it
  there); one operator per step, one step per operator, precedence;
* **residency**: ``r[a, t]`` = managed tensor ``a`` is resident at step ``t``, only
  inside the window where ``a`` can be alive (first possible touch .. last possible
  touch); forced where an operator using or producing it runs, forbidden before its
  first touch and after its last (a dead tensor gains nothing: forcing it out is sound).
  A tensor touched by one operator only (most weights, graph outputs nobody reads) needs
  no variable: it is resident exactly when that operator runs;
* **capacity** (no addresses): per step, the resident footprints fit the scratchpad;
* **objective**: the exact byte accounting of ``cosma.core.cost``: every residency start after
  the first is a reload of ``size`` bytes; an activation with a reload pays one spill of
  ``size`` bytes. (Footprints are what take room, sizes are what is charged.)

Every valid plan, in whatever order, maps onto a solution of this model of no higher
cost (trim residencies to the alive window, merge adjacent ones), so its optimum, and
CP-SAT's ``best_objective_bound`` at a time limit, is a lower bound on non-compulsory
bytes over every order (``order_bound``). For one fixed order the model is exactly
``cosma.exact.model``'s relaxation (a partial keep never beats evict-after-use plus
reload-before-use), so when the order it picks packs, the bound is met.

``solve_joint`` closes the gap: candidate orders solved exactly give an incumbent
``U``; the model is re-solved with ``objective <= U - 1``: infeasible proves ``U``
optimal over every order; otherwise its order is solved exactly (``cosma.exact.solver``, with
addresses) and, if fragmentation makes it cost more than the relaxation said, cut off
by a no-good, and so on. Large graphs (NAS cells) are bounded by a decomposition:
consecutive chunks of a topological order, each tensor's cost charged in one chunk only,
each chunk's model solved alone; the sum is a valid bound (see ``chunked_bound``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

from ortools.sat.python import cp_model

from cosma.core.clock import Clock
from cosma.core.cpsat import solve_interruptibly
from cosma.core.ir import (
    Graph,
    Operator,
    OpName,
    Plan,
    Problem,
    Tensor,
    TensorKind,
    TensorName,
)
from cosma.core.window import window_problem


@dataclass(frozen=True)
class JointParams:
    """Switches of the order-aware model and search; defaults are the measured-fastest valid setting."""

    max_window_vars: int = 60_000  # above this many x+r booleans the whole-graph model is skipped for chunks
    chunk_ops: int = 40  # operators per chunk in the decomposition bound
    nogood_rounds: int = 20  # solve_joint: relaxation orders tried (and cut off) before giving up on closing
    linearization_level: int = 2  # CP-SAT: full LP relaxation (helps the capacity rows)
    candidate_time: float = 2.0  # seconds for the candidate orders (cosma.exact.solver.candidate_schedules)
    cumulative: bool = False  # add the kept-whole-or-reloaded cumulative to the step model (measured: slower on ViT;
    # the cheap stage below carries it instead)
    cheap_time: float = 2.0  # seconds for the cheap positions-only relaxation first (0: skip it)
    use_free_bound: bool = True  # also take cosma.exact.bounds.schedule_free_bound (cheap, valid) into the max
    # Booleans the step model's build handles per second (measured: 21k in about 5 s on 2 busy
    # cores); with less time left than its build needs, the model is skipped (its build in
    # Python cannot be interrupted) and the cheaper bounds stand.
    build_rate: float = 4000.0


@dataclass
class BoundResult:
    """A lower bound on non-compulsory bytes valid over every topological order."""

    bound: int  # proven lower bound (bytes)
    relaxation_optimal: bool  # the bound is the relaxation's optimum (not a time-limit bound)
    order: tuple[OpName, ...] | None  # the relaxation's best order (None: none found / chunked)
    objective: int | None  # the relaxation's value for ``order``
    seconds: float
    how: str = ""  # which argument gave the bound: "model", "chunks", "single order", ...
    stats: dict[str, Any] = field(default_factory=dict)


@dataclass
class JointResult:
    """The best valid plan over orders, with its bound over every order."""

    plan: Plan | None
    cost: int | None  # non-compulsory bytes of ``plan`` (cosma.core.cost.evaluate)
    bound: int  # valid over every topological order
    proven: bool  # cost == bound
    seconds: float
    how: str = ""
    stats: dict[str, Any] = field(default_factory=dict)


# ----- data: windows -----


@dataclass
class OrderInstance:
    """The data of the order-aware model: operator windows and tensor touch sets."""

    problem: Problem
    ops: list[Operator]
    preds: list[list[int]]  # operator indices read from
    asap: list[int]
    alap: list[int]
    capacity: int  # alignment units
    touch: dict[TensorName, list[int]]  # managed tensor -> operators that must have it resident
    units: dict[TensorName, int]
    charge: dict[TensorName, bool]  # False: this tensor's traffic is charged elsewhere (chunks)

    @classmethod
    def build(cls, problem: Problem, charge: dict[TensorName, bool] | None = None) -> OrderInstance:
        graph = problem.graph
        ops = list(graph.operators)
        n = len(ops)
        index = {op.name: i for i, op in enumerate(ops)}
        preds = [[index[p] for p in graph.predecessors(op.name)] for op in ops]
        succs: list[list[int]] = [[] for _ in range(n)]
        for i, ps in enumerate(preds):
            for p in ps:
                succs[p].append(i)
        topo = _kahn(preds, succs)
        anc = [0] * n
        for i in topo:
            for p in preds[i]:
                anc[i] |= anc[p] | (1 << p)
        desc = [0] * n
        for i in reversed(topo):
            for s in succs[i]:
                desc[i] |= desc[s] | (1 << s)
        asap = [anc[i].bit_count() for i in range(n)]
        alap = [n - 1 - desc[i].bit_count() for i in range(n)]
        touch: dict[TensorName, list[int]] = {}
        for i, op in enumerate(ops):
            for a in problem.operands(op):
                touch.setdefault(a, []).append(i)
        units = {a: problem.footprint(a) // problem.alignment for a in touch}
        charge = {a: True for a in touch} if charge is None else {a: charge.get(a, True) for a in touch}
        return cls(
            problem,
            ops,
            preds,
            asap,
            alap,
            problem.capacity // problem.alignment,
            touch,
            units,
            charge,
        )

    @property
    def n(self) -> int:
        return len(self.ops)

    def window(self, a: TensorName) -> range:
        ops = self.touch[a]
        return range(min(self.asap[o] for o in ops), max(self.alap[o] for o in ops) + 1)

    def single_order(self) -> bool:
        return all(lo == hi for lo, hi in zip(self.asap, self.alap))

    def size_estimate(self) -> int:
        """Booleans the model would have (x plus r), to decide between whole and chunks."""
        xs = sum(hi - lo + 1 for lo, hi in zip(self.asap, self.alap))
        rs = sum(len(self.window(a)) for a, ops in self.touch.items() if len(ops) > 1)
        return xs + rs


def _kahn(preds: list[list[int]], succs: list[list[int]]) -> list[int]:
    indeg = [len(set(p)) for p in preds]
    ready = [i for i, d in enumerate(indeg) if d == 0]
    out: list[int] = []
    seen_edge: set[tuple[int, int]] = set()
    while ready:
        i = ready.pop()
        out.append(i)
        for s in succs[i]:
            if (i, s) in seen_edge:
                continue
            seen_edge.add((i, s))
            indeg[s] -= 1
            if indeg[s] == 0:
                ready.append(s)
    return out


# ----- the model -----


@dataclass
class OrderModel:
    model: cp_model.CpModel
    x: dict[tuple[int, int], Any]  # (op, step) -> bool var or 0/1 constant
    objective: cp_model.LinearExpr
    free_x: list[Any]  # the x that are variables (for no-goods)


def build_order_model(
    inst: OrderInstance,
    upper: int | None = None,
    nogoods: Sequence[Sequence[int]] = (),
    hint: Sequence[int] | None = None,
    cumulative: bool = True,
    resident_hint: Callable[[TensorName, int], bool] | None = None,
) -> OrderModel:
    """The order-aware no-address model (see the module docstring).

    ``upper``: only solutions of cost <= upper (infeasible then proves the bound upper + 1);
    ``nogoods``: orders (operator index per step) to exclude; ``hint``: an order to start from,
    and ``resident_hint(tensor, step)`` its residencies (a whole solution to start from: with the
    order alone CP-SAT may not even find the order's own cost).
    """
    model = cp_model.CpModel()
    n, graph = inst.n, inst.problem.graph

    # Variables: the order. Constants where the window is one step (chains, single orders).
    x: dict[tuple[int, int], Any] = {}
    by_step: list[list[int]] = [[] for _ in range(n)]
    free_x = []
    for o in range(n):
        lo, hi = inst.asap[o], inst.alap[o]
        for t in range(lo, hi + 1):
            if lo == hi:
                x[o, t] = 1
            else:
                x[o, t] = model.new_bool_var(f"x_{o}_{t}")
                free_x.append(x[o, t])
            by_step[t].append(o)
        if lo < hi:
            model.add_exactly_one(x[o, t] for t in range(lo, hi + 1))
    for t in range(n):
        if len(by_step[t]) > 1:
            model.add_exactly_one(x[o, t] for o in by_step[t])

    def done_by(o: int, t: int) -> Any:
        """1 when operator ``o`` has run at a step <= t."""
        lo, hi = inst.asap[o], inst.alap[o]
        if t >= hi:
            return 1
        if t < lo:
            return 0
        return sum(x[o, s] for s in range(lo, t + 1))

    def not_before(o: int, t: int) -> Any:
        """1 when operator ``o`` runs at a step >= t."""
        return 1 - done_by(o, t - 1) if t > 0 else 1

    # Precedence, in its strong (time-indexed) form: o done by t => each predecessor done by t - 1.
    for o in range(n):
        for p in set(inst.preds[o]):
            for t in range(inst.asap[o], inst.alap[o]):
                lhs, rhs = done_by(o, t), done_by(p, t - 1)
                if isinstance(lhs, int) and isinstance(rhs, int):
                    continue
                model.add(lhs <= rhs)

    pos = []
    for o in range(n):
        lo, hi = inst.asap[o], inst.alap[o]
        if lo == hi:
            pos.append(lo)
        else:
            pos.append(model.new_int_var(lo, hi, f"pos_{o}"))
            model.add(pos[o] == sum(t * x[o, t] for t in range(lo, hi + 1)))

    evicted: dict[TensorName, Any] = {}
    # Residency: variables only for tensors touched by more than one operator.
    load: list[list[tuple[int, Any]]] = [[] for _ in range(n)]  # per step: (units, 0/1 expr)
    terms: list[Any] = []
    for a, ops in inst.touch.items():
        units = inst.units[a]
        if len(ops) == 1:
            o = ops[0]
            for t in range(inst.asap[o], inst.alap[o] + 1):
                load[t].append((units, x[o, t]))
            continue
        tensor = graph.tensors[a]
        w = inst.window(a)
        r = {t: model.new_bool_var(f"r_{a}_{t}") for t in w}
        if resident_hint is not None:
            for t in w:
                model.add_hint(r[t], resident_hint(a, t))
        for t in w:
            load[t].append((units, r[t]))
            # Resident where a toucher runs.
            for o in ops:
                if inst.asap[o] <= t <= inst.alap[o]:
                    if isinstance(x[o, t], int):
                        model.add(r[t] == 1)
                    else:
                        model.add_implication(x[o, t], r[t])
            # Dead before its first touch and after its last (sound: keeping it gains nothing).
            before = [done_by(o, t) for o in ops]
            after = [not_before(o, t) for o in ops]
            if not any(isinstance(e, int) and e == 1 for e in before):
                model.add(r[t] <= sum(before))
            if not any(isinstance(e, int) and e == 1 for e in after):
                model.add(r[t] <= sum(after))
        if not inst.charge[a]:
            if cumulative:
                evicted[a] = model.new_bool_var(f"ev_{a}")  # charged elsewhere: free to evict
            continue
        # Starts: a residency begins at t when resident at t and not at t - 1.
        starts = []
        for t in w:
            st = model.new_bool_var(f"s_{a}_{t}")
            prev = r.get(t - 1, 0)
            model.add(st >= r[t] - prev)
            starts.append((t, st))
        if cumulative:
            # ev = reloaded at least once; otherwise one start, so resident first touch .. last.
            ev = evicted[a] = model.new_bool_var(f"ev_{a}")
            model.add(sum(st for _, st in starts) - 1 >= ev)
            model.add(sum(st for _, st in starts) - 1 <= len(w) * ev)
        size = tensor.size
        terms.append(size * (sum(st for _, st in starts) - 1))  # the first start is compulsory
        if tensor.kind is TensorKind.ACTIVATION:
            # One spill when reloaded: a start that is not the producer's step.
            p = graph.op_index[graph.producer[a]]
            spill = model.new_bool_var(f"sp_{a}")
            for t, st in starts:
                xp = x.get((p, t), 0)
                if isinstance(xp, int) and xp == 1:
                    continue
                model.add(spill >= st - xp)
            terms.append(size * spill)

    # Capacity per step: footprints without addresses (fragmentation relaxed).
    for t in range(n):
        row = load[t]
        if sum(u for u, _ in row) <= inst.capacity:
            continue
        model.add(sum(u * e for u, e in row) <= inst.capacity)

    if cumulative:
        _add_cumulative(model, inst, pos, evicted)

    objective = sum(terms) if terms else cp_model.LinearExpr.constant(0)
    if upper is not None:
        model.add(objective <= upper)
    for order in nogoods:
        lits = [x[o, t] for t, o in enumerate(order) if not isinstance(x[o, t], int)]
        if lits:
            model.add_bool_or([lit.Not() for lit in lits])
    if hint is not None:
        for t, o in enumerate(hint):
            for s in range(inst.asap[o], inst.alap[o] + 1):
                if not isinstance(x[o, s], int):
                    model.add_hint(x[o, s], s == t)
    model.minimize(objective)
    return OrderModel(model, x, objective, free_x)


def _add_cumulative(
    model: cp_model.CpModel, inst: OrderInstance, pos: list[Any], evicted: dict[TensorName, Any]
) -> None:
    """Redundant (valid) global view of capacity: each operator is a unit interval at its
    position whose demand is its operands not kept whole; each tensor never reloaded
    (``not ev``) is kept whole, an interval from its first touch to its last. Interval
    reasoning over positions prunes orders far better than the per-step rows alone
    (the "kept whole or reloaded" relaxation of the issue, linked to the exact model)."""
    graph = inst.problem.graph
    intervals, demands = [], []
    for o in range(inst.n):
        fixed = 0
        varying = []
        for a in inst.problem.operands(inst.ops[o]):
            if a in evicted:
                varying.append((inst.units[a], evicted[a]))
            else:
                fixed += inst.units[a]
        intervals.append(model.new_fixed_size_interval_var(pos[o], 1, f"op_{o}"))
        if varying:
            top = fixed + sum(u for u, _ in varying)
            d = model.new_int_var(fixed, top, f"d_{o}")
            model.add(d == fixed + sum(u * e for u, e in varying))
            demands.append(d)
        else:
            demands.append(fixed)
    horizon = inst.n
    for a, ev in evicted.items():
        ops = inst.touch[a]
        tensor = graph.tensors[a]
        producer = graph.producer.get(a)
        if producer is not None and tensor.kind is not TensorKind.INPUT and graph.op_index[producer] in ops:
            start = pos[graph.op_index[producer]]
        else:
            start = model.new_int_var(0, horizon, f"ks_{a}")
            model.add_min_equality(start, [pos[o] for o in ops])
        end = model.new_int_var(0, horizon, f"ke_{a}")
        model.add_max_equality(end, [pos[o] + 1 for o in ops])
        size = model.new_int_var(0, horizon, f"kz_{a}")
        intervals.append(model.new_optional_interval_var(start, size, end, ev.Not(), f"keep_{a}"))
        demands.append(inst.units[a])
    model.add_cumulative(intervals, demands, inst.capacity)


def build_cheap_model(inst: OrderInstance, upper: int | None = None) -> tuple[cp_model.CpModel, Any]:
    """The cheaper relaxation: positions only, each multi-touch tensor either kept whole
    (an interval from its first touch to its last in the one cumulative) or reloaded at
    least once (one reload, plus one spill for an activation). A relaxation of the
    step-indexed model (a partial keep is priced as a reload and takes room only at its
    uses), so its optimum is a bound over every order too; it proves some cells in a
    fraction of the time but is weak where partial keeps matter."""
    model = cp_model.CpModel()
    graph = inst.problem.graph
    pos: list[Any] = []
    for o in range(inst.n):
        lo, hi = inst.asap[o], inst.alap[o]
        pos.append(lo if lo == hi else model.new_int_var(lo, hi, f"pos_{o}"))
    model.add_all_different(pos)
    for o in range(inst.n):
        for p in set(inst.preds[o]):
            if not (isinstance(pos[p], int) and isinstance(pos[o], int)):
                model.add(pos[p] + 1 <= pos[o])
    evicted: dict[TensorName, Any] = {}
    terms = []
    for a, ops in inst.touch.items():
        if len(ops) < 2:
            continue
        ev = evicted[a] = model.new_bool_var(f"ev_{a}")
        if inst.charge[a]:
            tensor = graph.tensors[a]
            terms.append(tensor.size * (2 if tensor.kind is TensorKind.ACTIVATION else 1) * ev)
    _add_cumulative(model, inst, pos, evicted)
    objective = sum(terms) if terms else cp_model.LinearExpr.constant(0)
    if upper is not None:
        model.add(objective <= upper)
    model.minimize(objective)
    return model, objective


def _solve_cheap(
    inst: OrderInstance, time_limit: float | None, threads: int, seed: int, upper: int | None = None
) -> _ModelOutcome:
    model, _ = build_cheap_model(inst, upper)
    solver = _solver(time_limit, threads, seed, JointParams(linearization_level=1))
    status = solve_interruptibly(solver, model)
    if status == cp_model.INFEASIBLE:
        return _ModelOutcome("infeasible", (upper + 1) if upper is not None else 0, None, None)
    if status == cp_model.OPTIMAL:
        return _ModelOutcome("optimal", round(solver.objective_value), None, round(solver.objective_value))
    return _ModelOutcome("unknown", max(0, _ceil(solver.best_objective_bound)), None, None)


def _solver(time_limit: float | None, threads: int, seed: int, params: JointParams) -> cp_model.CpSolver:
    solver = cp_model.CpSolver()
    solver.parameters.num_workers = max(1, threads)
    solver.parameters.random_seed = seed
    solver.parameters.linearization_level = params.linearization_level
    if time_limit is not None:
        solver.parameters.max_time_in_seconds = max(0.01, time_limit)
    return solver


def _extract_order(inst: OrderInstance, om: OrderModel, solver: cp_model.CpSolver) -> tuple[int, ...]:
    step = [0] * inst.n
    for (o, t), v in om.x.items():
        if (v == 1) if isinstance(v, int) else solver.boolean_value(v):
            step[o] = t
    return tuple(sorted(range(inst.n), key=lambda o: step[o]))


@dataclass
class _ModelOutcome:
    status: str  # "optimal", "infeasible", "feasible", "unknown"
    bound: int  # valid lower bound on the model (upper + 1 when infeasible)
    order: tuple[int, ...] | None
    objective: int | None


def _solve_model(
    inst: OrderInstance,
    time_limit: float | None,
    threads: int,
    seed: int,
    params: JointParams,
    upper: int | None = None,
    nogoods: Sequence[Sequence[int]] = (),
    hint: Sequence[int] | None = None,
    resident_hint: Callable[[TensorName, int], bool] | None = None,
) -> _ModelOutcome:
    started = time.perf_counter()
    om = build_order_model(inst, upper, nogoods, hint, params.cumulative, resident_hint)
    # Building a large model takes seconds in Python: charge it to the time limit.
    left = None if time_limit is None else time_limit - (time.perf_counter() - started)
    if left is not None and left <= 0:
        return _ModelOutcome("unknown", 0, None, None)
    solver = _solver(left, threads, seed, params)
    status = solve_interruptibly(solver, om.model)
    if status == cp_model.INFEASIBLE:
        # Nothing at or below ``upper`` among the orders not cut off.
        return _ModelOutcome("infeasible", (upper + 1) if upper is not None else 0, None, None)
    if status in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        order = _extract_order(inst, om, solver)
        value = round(solver.objective_value)
        bound = value if status == cp_model.OPTIMAL else max(0, _ceil(solver.best_objective_bound))
        return _ModelOutcome("optimal" if status == cp_model.OPTIMAL else "feasible", bound, order, value)
    return _ModelOutcome("unknown", max(0, _ceil(solver.best_objective_bound)), None, None)


def _ceil(v: float) -> int:
    # CP-SAT's bound on an integer objective is integral up to float noise.
    return math.ceil(v) if abs(v - round(v)) > 1e-6 else round(v)


# ----- chunks: a decomposition bound for graphs too large for one model -----


def chunked_bound(
    problem: Problem,
    time_limit: float,
    threads: int = 1,
    seed: int = 0,
    params: JointParams = JointParams(),
) -> int:
    """A lower bound over every order from consecutive chunks of one topological order.

    Project any valid plan onto a chunk's operators (in their relative order, a
    topological order of the chunk): capacity holds at each of those steps, and every
    residency start of a tensor there, after its first, is a start in the whole plan
    (the tensor was absent at some step in between). Charging each tensor in exactly one
    chunk (its producer's, else its first reader's) makes the sum of chunk bounds a
    bound: a whole-plan reload is counted at most once, in the chunk that owns it.
    Tensors produced outside a chunk enter it as inputs (first residency free). Each chunk's
    bound is the larger of its positions-only relaxation (``build_cheap_model``) and its step
    model's; chunks whose tensors all fit at once are skipped (bound 0), the others solved
    the most crowded first.
    """
    clock = Clock(time_limit)
    inst = OrderInstance.build(problem)
    # Chunks from a topological order sorted by ASAP (then file index): stable and tight.
    order = sorted(range(inst.n), key=lambda o: (inst.asap[o], inst.alap[o], o))
    chunks = [order[i : i + params.chunk_ops] for i in range(0, inst.n, params.chunk_ops)]
    owner: dict[TensorName, int] = {}
    for ci, chunk in enumerate(chunks):
        for o in chunk:
            for a in problem.operands(inst.ops[o]):
                owner.setdefault(a, ci)
    # (The chunks follow a topological order, so a producer's chunk is its tensor's first.)
    subs = []
    for ci, chunk in enumerate(chunks):
        if clock.expired(0.01):
            break  # the chunks not built add 0
        ops = [inst.ops[o] for o in sorted(chunk, key=lambda o: o)]
        sub = window_problem(
            problem, (op.name for op in ops), leaving_as_outputs=False, name=f"{problem.graph.name}[chunk]"
        )
        # A chunk whose tensors all fit at once never evicts: its bound is 0, and the time
        # goes to the crowded chunks, the most crowded first (what is left when the time runs
        # out adds 0, which the sum allows).
        crowding = sum(sub.footprint(a) for a in sub.managed_tensors) - sub.capacity
        if crowding > 0:
            subs.append((crowding, ci, sub))
    subs = [(ci, sub) for _, ci, sub in sorted(subs, key=lambda item: (-item[0], item[1]))]
    total = 0
    for k, (ci, sub) in enumerate(subs):
        if clock.expired(0.01):
            break
        charge = {a: owner.get(a) == ci for a in sub.managed_tensors}
        sub_inst = OrderInstance.build(sub, charge)
        left = _left(clock, 0.0)
        share = max(0.05, left / (len(subs) - k))
        # The positions-only relaxation first, with half (at least half a second: its presolve
        # alone takes a third). On a NAS stem it proves in a third of a second what the step
        # model does not reach in ten (pnasnet5large at M_H: the stem's 2.6 MB tensor spilled
        # and reloaded, 5.2 MB, where the step model's bound stays 0); the step model can only
        # add to it.
        started = clock.elapsed()
        cheap = _solve_cheap(sub_inst, max(share / 2, min(0.5, _left(clock, 0.0))), threads, seed)
        out = _solve_model(sub_inst, max(0.05, share - (clock.elapsed() - started)), threads, seed, params)
        total += max(cheap.bound, out.bound)
    return total


def _can_build(inst: OrderInstance, clock: Clock, params: JointParams) -> bool:
    """Whether the step model can be built (and given a moment to solve) in the time left."""
    left = clock.left()
    return left is None or inst.size_estimate() / params.build_rate < 0.5 * left


def _left(clock: Clock, unlimited: float) -> float:
    """Seconds left on ``clock`` (never below 0.05), or ``unlimited`` when it has no limit."""
    left = clock.left()
    return unlimited if left is None else max(0.05, left)


# ----- the bound over every order -----


def order_bound(
    problem: Problem,
    time_limit: float | None = 10.0,
    threads: int = 1,
    seed: int = 0,
    params: JointParams = JointParams(),
    upper: int | None = None,
) -> BoundResult:
    """A lower bound on non-compulsory bytes over every topological order; always valid,
    also at the time limit (CP-SAT's best objective bound, or the chunked bound).

    ``upper``: the cost of a known plan; when the model proves nothing cheaper exists the
    bound is ``upper`` (``relaxation_optimal`` is then False: the relaxation's own optimum
    was not computed, only that it is >= upper).
    """
    clock = Clock(time_limit)
    inst = OrderInstance.build(problem)
    stats: dict[str, Any] = {"ops": inst.n, "booleans": inst.size_estimate()}
    free, free_how = 0, "schedule_free_bound"
    if params.use_free_bound:
        from cosma.exact.bounds import cheap_order_bounds

        free, free_how, parts = cheap_order_bounds(problem, min(3.0, max(0.1, _left(clock, 10.0) / 2)))
        stats.update(parts)
    if inst.size_estimate() > params.max_window_vars:
        b = chunked_bound(problem, _left(clock, 10.0), threads, seed, params)
        stats["chunked_bound"] = b
        how = "chunks" if b >= free else free_how
        return BoundResult(max(b, free), False, None, None, clock.elapsed(), how, stats)
    cheap = 0
    if params.cheap_time > 0:
        left = clock.left()
        limit = params.cheap_time if left is None else min(params.cheap_time, left / 4)
        c = _solve_cheap(inst, limit, threads, seed, upper=None if upper is None else upper - 1)
        cheap = c.bound
        stats["cheap_bound"] = cheap
        if upper is not None and cheap >= upper:
            return BoundResult(upper, False, None, None, clock.elapsed(), "cheap relaxation", stats)
    if not _can_build(inst, clock, params):
        stats["model_status"] = "skipped: no time to build it"
        how = "cheap relaxation" if cheap >= free else free_how
        return BoundResult(max(free, cheap), False, None, None, clock.elapsed(), how, stats)
    out = _solve_model(inst, clock.left(), threads, seed, params, upper=None if upper is None else upper - 1)
    stats["model_status"] = out.status
    order = None if out.order is None else tuple(inst.ops[o].name for o in out.order)
    bound = max(out.bound, free, cheap)
    if out.status == "infeasible" and upper is not None:
        bound = max(bound, upper)
    how = "model" if out.bound >= max(free, cheap) else ("cheap relaxation" if cheap >= free else free_how)
    return BoundResult(
        bound,
        out.status == "optimal",
        order,
        out.objective,
        clock.elapsed(),
        how,
        stats,
    )


# ----- a window of an order, re-ordered in context -----

SOURCE, SINK = "__resident_before__", "__resident_after__"  # the window's boundary operators


@dataclass
class WindowReorder:
    """What ``reorder_window`` found: the whole order with the window re-ordered."""

    schedule: tuple[OpName, ...]  # the whole order (the window's part re-ordered, or as it was)
    status: str  # the window model's: "optimal", "feasible", "unknown", ...
    objective: int | None  # the window model's cost of the order found (None: none found)


def window_in_context(
    problem: Problem,
    schedule: Sequence[OpName],
    a: int,
    b: int,
    resident_before: Collection[TensorName],
    resident_after: Collection[TensorName],
) -> Problem:
    """The problem of the steps ``[a, b)`` of ``schedule`` with the rest of the plan as context.

    The window's operators, plus two boundary operators fixed at its ends: ``SOURCE`` produces
    the tensors resident when the window starts (``resident_before``, e.g. an incumbent's
    residents across the cut at ``a``), ``SINK`` reads those resident when it ends
    (``resident_after``). A tensor the source produces is an activation: evicting it in the
    window costs its spill and a reload, as it would in the whole plan; one the sink reads
    must be back by the end or pay its reload. Other tensors from outside enter as inputs
    (their load is the whole plan's anyway) and activations read after the window without
    being resident at its end leave as outputs (their store likewise). The window problem's
    cost is then, up to a constant, what the whole plan's relaxation pays inside the window.
    """
    graph = problem.graph
    window = tuple(schedule[a:b])
    names = set(window)
    before, after = list(dict.fromkeys(resident_before)), list(dict.fromkeys(resident_after))
    produced_before = set(before)
    # The window's own problem (``cosma.core.window``) gives every tensor it touches its kind;
    # the boundary operators change two: what the source produces is an activation, and so is
    # an activation the window produces for the sink rather than for DRAM.
    inner = window_problem(problem, window).graph
    tensors = dict(inner.tensors)
    for name in (*before, *after):
        t = graph.tensors[name]
        produced_inside = graph.producer.get(name) in names
        if name in produced_before or (produced_inside and t.kind is TensorKind.ACTIVATION):
            kind = TensorKind.ACTIVATION
        elif name in tensors:
            continue
        else:  # resident across the window, untouched by it
            kind = t.kind if t.kind in (TensorKind.INPUT, TensorKind.WEIGHT) else TensorKind.INPUT
        tensors[name] = Tensor(name, t.size, kind, t.shape, t.dtype_bytes)
    ops = (
        Operator(SOURCE, "Boundary", (), tuple(before)),
        *(inner.operators[inner.op_index[name]] for name in window),  # in the schedule's order
        Operator(SINK, "Boundary", tuple(after), ()),
    )
    sub = Graph(f"{graph.name}[{a}:{b}]", tensors, ops)
    return Problem(sub, problem.capacity, problem.hardware, problem.weights_counted, problem.objective)


def reorder_window(
    problem: Problem,
    plan: Plan,
    a: int,
    b: int,
    time_limit: float,
    margin: int = 0,
    threads: int = 1,
    seed: int = 0,
    params: JointParams = JointParams(),
) -> WindowReorder:
    """The order of the steps ``[a, b)`` of ``plan``'s schedule that the order model finds
    cheapest with the rest of ``plan`` as context, started from ``plan`` itself (its order and
    residencies); the rest of the schedule stays. A large-neighbourhood move over orders: the
    caller scores the new order in full.

    The model (``window_in_context``) covers the steps ``[a - margin, b + margin)``: the
    operators of the margins keep their steps, but what is resident there is decided anew,
    so a tensor evicted across the window, with both its uses in the margins, can be kept
    if the new order makes room for it (without margins the window sees no such tensor)."""
    schedule = plan.schedule
    lo, hi = max(0, a - margin), min(len(schedule), b + margin)
    before = [r.tensor for r in plan.residencies if r.start < lo < r.end]
    after = [r.tensor for r in plan.residencies if r.start < hi < r.end]
    sub = window_in_context(problem, schedule, lo, hi, before, after)
    inst = OrderInstance.build(sub)
    last = inst.n - 1
    # The boundary operators at the ends, the margins' operators at their steps, the window's
    # between (step t of the model is step lo + t - 1 of the schedule).
    first, end = a - lo + 1, b - lo
    for o in range(inst.n):
        if o == 0 or o == last or not first <= o <= end:
            inst.asap[o] = inst.alap[o] = o
        else:
            inst.asap[o], inst.alap[o] = max(first, inst.asap[o]), min(end, inst.alap[o])
    covered: dict[TensorName, list[tuple[int, int]]] = {}
    for r in plan.residencies:
        covered.setdefault(r.tensor, []).append((r.start, r.end))
    at_ends = {0: set(before), last: set(after)}

    def resident(tensor: TensorName, t: int) -> bool:
        if t in at_ends:
            return tensor in at_ends[t]
        return any(start <= lo + t - 1 < end for start, end in covered.get(tensor, ()))

    out = _solve_model(inst, time_limit, threads, seed, params, hint=tuple(range(inst.n)), resident_hint=resident)
    if out.order is None or out.order == tuple(range(inst.n)):
        return WindowReorder(tuple(schedule), out.status, out.objective)
    middle = tuple(inst.ops[o].name for o in out.order[1:-1])
    return WindowReorder((*schedule[:lo], *middle, *schedule[hi:]), out.status, out.objective)


# ----- the search over orders -----


def _fixed_plan(
    problem: Problem,
    order: Sequence[OpName],
    time_limit: float | None,
    threads: int,
    seed: int,
):
    """The exact fixed-order answer through the registry (validated, scored)."""
    from cosma.core.interface import RunOptions, run

    return run(
        problem,
        "exact",
        options=RunOptions(schedule=tuple(order), time_limit=time_limit, threads=threads, seed=seed),
    )


def solve_joint(
    problem: Problem,
    time_limit: float | None = 60.0,
    threads: int = 1,
    seed: int = 0,
    params: JointParams = JointParams(),
    say=lambda line: None,
    start: tuple[Plan, int | None] | None = None,
    progress=lambda incumbent, bound: None,
) -> JointResult:
    """The best valid plan over orders, with a bound valid over every order.

    1. candidate orders (file, memory-aware, MPMF), each solved exactly: incumbent ``U``;
       cost 0 or a single topological order settles it;
    2. the order model with ``objective <= U - 1``: infeasible proves ``U``; else its
       order is solved exactly; if that meets the model's optimum it is optimal over every
       order; else the order is cut off (no-good) and the model re-solved.
    Every plan comes from ``cosma.exact.solver`` through ``cosma.core.interface.run`` (validated).

    ``progress(incumbent, bound)`` hears of every better plan and bound (bytes).
    ``start``: a valid plan already found (and its proven bound for its own order, or
    None): step 1 is skipped and the search starts from it.
    """
    from cosma.core.cost import evaluate
    from cosma.core.validator import validate
    from cosma.exact.solver import candidate_schedules

    clock = Clock(time_limit)
    stats: dict[str, Any] = {"orders_solved": 0, "rounds": 0}
    best_plan: Plan | None = None
    best_cost: int | None = None
    bound = 0

    def offer(order: Sequence[OpName], source: str) -> None:
        result = _fixed_plan(problem, order, clock.left(), threads, seed)
        stats["orders_solved"] += 1
        if result.plan is not None:
            offer_plan(result.plan, result.bound, source)

    def offer_plan(plan: Plan, fixed_bound: int | None, source: str) -> None:
        nonlocal best_plan, best_cost, bound
        if inst.single_order() and fixed_bound is not None:
            # One topological order: the fixed-order proof is the proof over every order.
            bound = max(bound, fixed_bound)
        assert not validate(problem, plan), "cosma.exact.solver returned an invalid plan"
        cost = evaluate(problem, plan).non_compulsory_bytes
        say(f"joint: {source}: {cost} B (fixed-order bound {fixed_bound}) {clock.elapsed():.2f}s")
        if best_cost is None or cost < best_cost:
            best_plan, best_cost = plan, cost
            stats["best_source"] = source
            progress(cost, None)

    def done(how: str) -> JointResult:
        proven = best_cost is not None and bound >= best_cost
        return JointResult(
            best_plan,
            best_cost,
            min(bound, best_cost) if best_cost is not None else bound,
            proven,
            clock.elapsed(),
            how,
            stats,
        )

    inst = OrderInstance.build(problem)
    if start is not None:
        offer_plan(start[0], start[1], "start")
    cands = [] if start is not None else candidate_schedules(problem, Clock(clock.left()), params.candidate_time)
    for name, sched in cands:
        offer(sched, name)
        if best_cost == 0:
            bound = 0
            return done("a candidate order needs no traffic")
        if clock.expired(0.01):
            break
    if best_cost is None:
        return done("no plan")
    if inst.single_order():
        return done("single topological order")

    free = 0
    if params.use_free_bound:
        from cosma.exact.bounds import cheap_order_bounds

        free, free_how, parts = cheap_order_bounds(problem, min(3.0, max(0.1, _left(clock, 10.0) / 2)))
        stats.update(parts)
        bound = max(bound, min(free, best_cost))
        progress(None, bound)
        if bound >= best_cost:
            return done(free_how)

    if inst.size_estimate() > params.max_window_vars:
        bound = max(
            bound,
            min(
                best_cost,
                chunked_bound(problem, _left(clock, 10.0), threads, seed, params),
            ),
        )
        return done("chunks")

    if params.cheap_time > 0 and not clock.expired(0.01):
        # The cheap relaxation first: when it proves nothing beats the incumbent, done.
        left = clock.left()
        out = _solve_cheap(
            inst,
            params.cheap_time if left is None else min(params.cheap_time, left / 4),
            threads,
            seed,
            upper=best_cost - 1,
        )
        say(f"joint: cheap relaxation: {out.status}, bound {out.bound}")
        bound = max(bound, min(best_cost, out.bound))
        progress(None, bound)
        if bound >= best_cost:
            return done("cheap relaxation: nothing cheaper over any order")

    index = {op.name: i for i, op in enumerate(inst.ops)}
    nogoods: list[tuple[int, ...]] = []
    hint = tuple(index[name] for name in best_plan.schedule)
    seen: set[tuple[int, ...]] = set()
    while not clock.expired(0.01) and stats["rounds"] <= params.nogood_rounds and _can_build(inst, clock, params):
        stats["rounds"] += 1
        out = _solve_model(
            inst,
            clock.left(),
            threads,
            seed,
            params,
            upper=best_cost - 1,
            nogoods=nogoods,
            hint=hint,
        )
        say(f"joint: model round {stats['rounds']}: {out.status}, bound {out.bound}, value {out.objective}")
        # Orders cut off so far were solved exactly and cost >= best_cost; the rest cost >= out.bound.
        bound = max(bound, min(best_cost, out.bound))
        progress(None, bound)
        if out.status == "infeasible" or bound >= best_cost:
            bound = best_cost
            return done("model: nothing cheaper over any order")
        if out.order is None:
            return done("time limit in the order model")
        if out.order in seen:
            return done("order repeated")
        seen.add(out.order)
        order_names = tuple(inst.ops[o].name for o in out.order)
        offer(order_names, f"model order {stats['rounds']}")
        if best_cost <= bound:
            return done("model order meets the bound")
        nogoods.append(out.order)
    return done("round limit" if stats["rounds"] > params.nogood_rounds else "time limit")


__all__ = [
    "BoundResult",
    "JointParams",
    "JointResult",
    "OrderInstance",
    "OrderModel",
    "build_order_model",
    "chunked_bound",
    "order_bound",
    "solve_joint",
]
