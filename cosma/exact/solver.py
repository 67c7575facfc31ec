"""The exact solver ("exact"): proven-optimal operator order, tensor replacement and allocation.

For one operator order (COSMA's FS mode), in the terms of ``cosma.exact.model``: decide per
gap between two uses of a tensor whether it stays resident (keep) or is evicted, and
give every residency an offset. The solve is a decomposition that settles almost
every instance without ever searching offsets and keep bits together:

1. **presolve**: gaps that can never be kept (their box does not fit beside a step's
   operands) are evicted; step constraints that cannot bind are dropped;
2. **relaxation** (CP-SAT, no addresses): per step, kept footprints fit the capacity.
   Its optimum is a proven lower bound;
3. **packing check**: the relaxation's residencies have fixed lifetimes; if they pack
   (best fit, then an exact packer), the plan meets the bound: optimal;
4. otherwise the keep set (and every superset: a packing of a superset packs the set)
   can be cut off with a no-good and the relaxation re-solved (``nogood_rounds``; off
   by default: proving that a keep set does not pack is slow, and the joint model
   settles the fragmented instances we measured faster);
5. **joint model** (CP-SAT): keep bits and offsets under no-overlap-2D with the step
   rows as a redundant cumulative, the bound from steps 2-4 as an objective floor,
   and the best plan so far as a hint.

The incumbent is always a valid plan: the evict-everything plan (valid at any
capacity >= M_R), improved by the ``best-greedy`` baseline (asked for only when the
relaxation did not settle the instance) and by every solution found. A time limit or
Ctrl-C returns it with status TIMEOUT.

Without a given schedule, every mode first solves each candidate order (file,
memory-aware, minimum-peak) and keeps the best; an order whose relaxation bound cannot
beat the best so far is cut short. Then (``schedule_mode``):

* ``free`` (default): the order-aware search of ``cosma.exact.joint`` starts from that
  plan: its no-address model over every order either proves nothing is cheaper or
  proposes a better order, solved exactly as above, until the bound over every order
  meets the plan (OPTIMAL) or time runs out (the bound over every order is reported);
* ``fixed``: only the bound over every order is computed (``order_bound``);
* ``enumerate``: every topological order is solved, where there are few enough (a
  reference for small graphs).

Under ``objective="latency"`` the bytes-optimal plan, retimed by the prefetch pass, warm-starts
the latency-optimal model for its order (``cosma.exact.latency``; see ``_solve_latency`` for
what is then proven).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

from ortools.sat.python import cp_model

from cosma.core.analysis import is_topological
from cosma.core.clock import Clock
from cosma.core.cost import evaluate
from cosma.core.cpsat import solve_interruptibly
from cosma.core.errors import UsageError
from cosma.core.interface import RunOptions, SolveResult, Status, register
from cosma.core.ir import OpName, Plan, Problem
from cosma.exact.model import RELAXATION_RATE, FixedInstance, build_joint, build_relaxation, mirror
from cosma.packing.boxes import pack_boxes
from cosma.schedules.orders import PEAK_ORDERS, candidate_orders, distinct


@dataclass(frozen=True)
class ExactParams:
    """Switches of the exact solver; every default is the fastest proven-exact setting."""

    # "free": optimal over every operator order (the order-aware model of cosma.exact.joint closes
    # the gap left by the candidate orders); "fixed": optimal for the best candidate order, with
    # the bound over every order; "enumerate": every topological order solved (a reference for small graphs)
    schedule_mode: str = "free"
    relaxation: bool = True  # solve the no-address relaxation first and try to pack its answer
    nogood_rounds: int = 0  # relaxation re-solves with no-good cuts before the joint model (packing proofs are slow)
    joint: bool = True  # fall back to the joint keep+offset CP-SAT model (off: stop with a bound)
    symmetry_breaking: bool = True  # joint model: fix the mirror symmetry of offsets
    warm_start: bool = True  # start from the best-greedy baseline plan when it is registered
    use_packer: bool = True  # packing check: call cosma.packing.exact when present (else CP-SAT)
    pack_time_limit: float = 2.0  # seconds one packing check may take (at most a quarter of the time left);
    # past it the joint model takes over, which settles fragmented instances faster than packing proofs
    max_free_orders: int = 2000  # enumerate mode: at most this many topological orders
    candidates_share: float = 0.5  # free mode: share of the time the candidate orders may use (the rest closes the gap)
    order_bound_time: float = 10.0  # fixed mode: seconds for the bound over every order (at most half the time left)
    order_search_time: float = 120.0  # free mode without a time limit: seconds the search over orders may take
    schedule_time_limit: float = 2.0  # fixed mode, no schedule given: seconds to find the candidate orders
    solver_params: str = ""  # CP-SAT parameters in protobuf text format, e.g. "log_search_progress:true"
    dump_model: str = ""  # write the last CP-SAT model built here (text proto), "" for none
    # objective="latency": share of the time limit for the bytes-optimal plan that warm-starts the
    # latency model (cosma.exact.latency), which has the rest
    bytes_share: float = 0.5
    relaxation_rate: float = RELAXATION_RATE  # terms a second (cosma.exact.model): larger is not started


SCHEDULE_MODES = ("free", "fixed", "enumerate")


@dataclass
class FixedOutcome:
    """The answer for one schedule."""

    status: Status
    plan: Plan
    objective: int  # non-compulsory bytes of ``plan``
    bound: int  # proven lower bound for this schedule
    stats: dict[str, Any] = field(default_factory=dict)
    message: str = ""


class _Incumbent:
    """The best plan for one schedule so far, kept as keep bits + per-use offsets."""

    def __init__(self, inst: FixedInstance):
        self.inst = inst
        self.keep, self.offsets = inst.evict_all()
        self.cost = inst.cost(self.keep)
        self.source = "evict-all"

    def offer(self, keep: Sequence[bool], offsets: Sequence[Sequence[int]], source: str) -> bool:
        cost = self.inst.cost(keep)
        if cost < self.cost:
            self.keep, self.offsets, self.cost, self.source = list(keep), [list(r) for r in offsets], cost, source
            return True
        return False

    def plan(self) -> Plan:
        return self.inst.plan_from_uses(self.keep, self.offsets)


def _new_solver(
    params: ExactParams, options: RunOptions, clock: Clock, linearization_level: int = 1
) -> cp_model.CpSolver:
    """A CP-SAT solver on the time left, with the user's parameters merged last."""
    solver = cp_model.CpSolver()
    solver.parameters.num_workers = max(1, options.threads)
    solver.parameters.random_seed = options.seed
    solver.parameters.linearization_level = linearization_level
    left = clock.left()
    if left is not None:
        solver.parameters.max_time_in_seconds = max(0.01, left)
    if params.solver_params and not solver.parameters.merge_text_format(params.solver_params):
        raise UsageError(f"bad CP-SAT parameters {params.solver_params!r} (protobuf text format, e.g. 'num_workers:2')")
    return solver


def _dump(params: ExactParams, model: cp_model.CpModel) -> None:
    if params.dump_model:
        Path(params.dump_model).write_text(str(model.Proto()))


class _Progress(cp_model.CpSolverSolutionCallback):
    """Keeps every improving joint solution and prints a live line for each."""

    def __init__(self, inst: FixedInstance, joint, incumbent: _Incumbent, options: RunOptions, clock: Clock):
        super().__init__()
        self.inst, self.joint, self.incumbent, self.options, self.clock = inst, joint, incumbent, options, clock

    def on_solution_callback(self) -> None:
        keep = [bool(self.value(k)) for k in self.joint.keep]
        offsets = [[self.value(o) for o in row] for row in self.joint.offsets]
        if self.incumbent.offer(keep, offsets, "joint"):
            bound = int(self.best_objective_bound)
            cost = self.incumbent.cost
            self.options.report(incumbent=cost)
            gap = 0.0 if cost == 0 else (cost - bound) / cost
            self.options.say(f"exact: incumbent {cost} bound {bound} gap {gap:.1%} {self.clock.elapsed():.2f}s")


def _warm_start(problem: Problem, schedule: tuple[OpName, ...], clock: Clock) -> Plan | None:
    """The best-greedy baseline's plan for this schedule."""
    from cosma.core.interface import run

    return run(problem, "best-greedy", options=RunOptions(schedule=schedule, time_limit=clock.left())).plan


def solve_fixed(
    problem: Problem,
    schedule: Sequence[OpName],
    params: ExactParams,
    options: RunOptions,
    clock: Clock,
    cutoff: int | None = None,
) -> FixedOutcome:
    """The exact answer for one operator order (see the module docstring).

    ``cutoff``: stop as soon as the bound proves this order cannot go below it (free
    mode); the outcome is then FEASIBLE with its bound.
    """
    schedule = tuple(schedule)
    inst = FixedInstance.build(problem, schedule)
    incumbent = _Incumbent(inst)
    stats: dict[str, Any] = {
        "tensors": len(inst.chains),
        "gaps": len(inst.gaps),
        "steps": len(schedule),
        "rounds": 0,
        "phase": "relaxation",
    }
    stats["terms"] = inst.terms
    left = clock.left()
    # A relaxation that cannot be built in the time left is not started (nor the joint model,
    # larger still): the answer is then the warm start, not proven.
    too_large = left is not None and inst.terms > params.relaxation_rate * left
    forced = set() if too_large else set(inst.forced_evictions())
    stats["forced_evictions"] = len(forced)
    bound = 0

    def warm_start() -> None:
        """Offer the best-greedy plan (called only when the relaxation did not settle it)."""
        plan = _warm_start(problem, schedule, clock) if params.warm_start else None
        canon = inst.canonical(plan) if plan is not None else None
        if canon is not None:
            incumbent.offer(*canon, source="best-greedy")
            stats["warm_start_cost"] = inst.cost(canon[0])

    say = options.say

    def done(status: Status, message: str) -> FixedOutcome:
        stats["seconds"] = round(clock.elapsed(), 4)
        stats["incumbent_source"] = incumbent.source
        return FixedOutcome(status, incumbent.plan(), incumbent.cost, bound, stats, message)

    try:
        # Steps 2-4: relaxation, packing check, no-good cuts.
        cuts: list[list[int]] = []
        hint: list[bool] | None = None
        while params.relaxation and not too_large:
            model, keep_vars, objective = build_relaxation(inst, forced, cuts, hint)
            _dump(params, model)
            # Full LP linearization: on these knapsack rows it proves 5-50x faster than the default.
            solver = _new_solver(params, options, clock, linearization_level=2)
            status = solve_interruptibly(solver, model)
            if status == cp_model.INFEASIBLE:  # the cuts removed every keep set: the bound is exact
                bound = incumbent.cost
                break
            if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
                break
            bound = max(bound, int(solver.best_objective_bound))
            keep = [bool(solver.value(k)) for k in keep_vars]
            relaxed = int(solver.objective_value)
            stats["relaxation_bound"] = stats.get("relaxation_bound", bound)
            say(
                f"exact: relaxation round {stats['rounds']}: bound {bound}, candidate {relaxed}, {clock.elapsed():.2f}s"
            )
            if incumbent.cost <= bound or (cutoff is not None and bound >= cutoff):
                break
            blocks = inst.blocks(keep)
            left = clock.left()
            pack_limit = params.pack_time_limit if left is None else max(0.05, min(params.pack_time_limit, left / 4))
            outcome = pack_boxes(inst.boxes(blocks), inst.capacity, pack_limit, options.threads, params.use_packer)
            stats["pack_method"] = outcome.how
            if outcome.status is Status.OPTIMAL:
                offsets_per_use = [[0] * len(c.uses) for c in inst.chains]
                for (ci, a, b), off in zip(blocks, outcome.offsets or []):
                    for i in range(a, b + 1):
                        offsets_per_use[ci][i] = off
                incumbent.offer(keep, offsets_per_use, "relaxation+packing")
                if status == cp_model.OPTIMAL and relaxed == incumbent.cost:
                    bound = max(bound, relaxed)
                break
            if outcome.status is Status.TIMEOUT or stats["rounds"] >= params.nogood_rounds:
                hint = keep
                break
            # The keep set does not pack, nor does any superset of it: cut them all off.
            cuts.append([g for g, k in enumerate(keep) if k and g not in forced])
            stats["rounds"] += 1
            hint = keep
            if clock.expired():
                break

        if incumbent.cost <= bound:
            return done(Status.OPTIMAL, "optimal for the fixed schedule")
        if cutoff is not None and bound >= cutoff:
            return done(Status.FEASIBLE, "pruned: this order cannot beat the incumbent")
        warm_start()
        if incumbent.cost <= bound:
            return done(Status.OPTIMAL, "optimal for the fixed schedule")
        if too_large:
            stats["phase"] = "too large"
            return done(Status.TIMEOUT, f"the relaxation ({inst.terms:,} terms) is too large for the time left")
        if clock.expired() or not params.joint:
            return done(Status.TIMEOUT if clock.expired() else Status.FEASIBLE, "stopped before the joint model")

        # Step 5: the joint model, floored at the bound, hinted with the incumbent.
        stats["phase"] = "joint"
        hint_offsets = incumbent.offsets
        big = max(range(len(inst.chains)), key=lambda ci: inst.chains[ci].units)
        if params.symmetry_breaking and 2 * hint_offsets[big][0] > inst.capacity - inst.chains[big].units:
            hint_offsets = mirror(inst, hint_offsets)
        model, joint = build_joint(inst, forced, bound, (incumbent.keep, hint_offsets), params.symmetry_breaking)
        model.add(joint.objective <= incumbent.cost)  # only improvements (the incumbent proves the rest)
        _dump(params, model)
        solver = _new_solver(params, options, clock)
        callback = _Progress(inst, joint, incumbent, options, clock)
        status = solve_interruptibly(solver, model, callback)
        if status == cp_model.OPTIMAL:
            bound = incumbent.cost
        elif status == cp_model.INFEASIBLE:
            bound = incumbent.cost  # nothing cheaper than the incumbent exists
        else:
            bound = max(bound, int(solver.best_objective_bound))
        stats["joint_status"] = solver.status_name(status)
        if incumbent.cost <= bound:
            return done(Status.OPTIMAL, "optimal for the fixed schedule")
        return done(Status.TIMEOUT, f"time limit: best plan {incumbent.cost} B, bound {bound} B")
    except KeyboardInterrupt:
        return done(Status.TIMEOUT, "interrupted: best plan so far")


# ----- schedules -----


def candidate_schedules(problem: Problem, clock: Clock, budget: float = 2.0) -> list[tuple[str, tuple[OpName, ...]]]:
    """``(source, schedule)``: file order, the memory-aware list order and the minimum-peak
    (MPMF) order, without repeats, found within ``budget`` seconds (a quarter of the time left at most)."""
    left = clock.left()
    limit = budget if left is None else max(0.1, min(budget, left / 4))
    return [(order.source, order.schedule) for order in distinct(candidate_orders(problem, PEAK_ORDERS, limit))]


def topological_orders(problem: Problem, limit: int) -> tuple[list[tuple[OpName, ...]], bool]:
    """Up to ``limit`` topological orders (depth first, file order first); the flag
    says whether that is all of them. Iterative, so a long chain costs O(n) per order."""
    graph = problem.graph
    n = len(graph.operators)
    succ: list[list[int]] = [[] for _ in range(n)]
    indeg = [0] * n
    for i, op in enumerate(graph.operators):
        for p in graph.predecessors(op.name):
            succ[graph.op_index[p]].append(i)
            indeg[i] += 1
    ready = {i for i in range(n) if indeg[i] == 0}
    prefix: list[int] = []
    orders: list[tuple[OpName, ...]] = []

    def apply(o: int) -> None:
        ready.discard(o)
        prefix.append(o)
        for s in succ[o]:
            indeg[s] -= 1
            if indeg[s] == 0:
                ready.add(s)

    def undo(o: int) -> None:
        for s in succ[o]:
            if indeg[s] == 0:
                ready.discard(s)
            indeg[s] += 1
        prefix.pop()
        ready.add(o)

    stack: list[list] = [[sorted(ready), 0, None]]  # frames: [candidates, next position, chosen]
    while stack and len(orders) <= limit:
        frame = stack[-1]
        if frame[2] is not None:
            undo(frame[2])
            frame[2] = None
        if frame[1] == len(frame[0]):
            stack.pop()
            continue
        o = frame[0][frame[1]]
        frame[1] += 1
        apply(o)
        frame[2] = o
        if len(prefix) == n:
            orders.append(tuple(graph.operators[i].name for i in prefix))
        else:
            stack.append([sorted(ready), 0, None])
    return orders[:limit], len(orders) <= limit


# ----- the registered solver -----


@register("exact", "order, allocation and replacement proven optimal over every order (CP-SAT)", ExactParams)
def solve_exact(problem: Problem, params: ExactParams, options: RunOptions) -> SolveResult:
    """The bytes-optimal plan; under ``objective="latency"`` see ``_solve_latency``."""
    if problem.objective == "latency":
        return _solve_latency(problem, params, options)
    return _solve_bytes(problem, params, options)


def _solve_latency(problem: Problem, params: ExactParams, options: RunOptions) -> SolveResult:
    """Under ``objective="latency"``: the bytes-optimal plan (``params.bytes_share`` of the time),
    retimed by the prefetch pass, is the warm start of the latency-optimal model for its order
    (``cosma.exact.latency``), so the answer is never slower than it.

    What is proven: with a given schedule, the model's bound for that order (OPTIMAL when it is
    met). Without one, a fixed-order optimum says nothing about other orders: the bound is
    ``order_free_bound`` (every operator's roofline with its fixed DMA, plus the compulsory loads
    and the byte bound over every order placed in the compute slack), OPTIMAL only when the plan
    meets it; the fixed-order status and bound are in ``stats["latency"]``."""
    from cosma.core.prefetch import moved_loads, prefetch
    from cosma.exact.latency import (
        LatencyParams,
        LatencyScale,
        compulsory_loads,
        latency_bound_cycles,
        order_free_bound,
        solve_latency_fixed,
    )

    clock = Clock(options.time_limit)
    left = clock.left()
    share = None if left is None else min(1.0, params.bytes_share) * left
    result = _solve_bytes(replace(problem, objective="bytes"), params, replace(options, time_limit=share))
    bytes_bound = result.bound or 0
    result.stats["bytes_bound"] = bytes_bound
    result.bound = None
    if result.plan is None:
        result.status = Status.TIMEOUT if result.status is Status.OPTIMAL else result.status
        return result
    warm = prefetch(problem, result.plan)
    result.stats["prefetched_loads"] = moved_loads(result.plan, warm)
    lat_params = LatencyParams(
        relaxation=params.relaxation,
        joint=params.joint,
        pack_time_limit=params.pack_time_limit,
        solver_params=params.solver_params,
    )
    outcome = solve_latency_fixed(
        problem, warm.schedule, [warm, *_latency_warm_starts(problem, warm.schedule, clock)], lat_params, options, clock
    )
    result.plan = outcome.plan
    result.stats["latency"] = dict(outcome.stats, status=outcome.status.value, bound=outcome.bound)
    scale = LatencyScale.of(problem)
    free = order_free_bound(problem, compulsory_loads(problem) + bytes_bound, scale)
    free_bound = latency_bound_cycles(free, scale, len(warm.schedule))
    latency = evaluate(problem, outcome.plan).latency_cycles
    result.seconds = clock.elapsed()
    if options.schedule is not None:
        result.bound = min(latency, max(outcome.bound, free_bound))
        proven = outcome.status is Status.OPTIMAL or result.bound == latency
        where = "for the fixed schedule"
    else:
        result.bound = min(latency, free_bound)
        proven = result.bound == latency
        where = f"over every schedule; for its schedule: {outcome.status.value}, bound {outcome.bound:,} cycles"
    if proven:
        result.status, result.message = Status.OPTIMAL, f"latency-optimal ({where})"
    else:
        timed_out = clock.expired() or (options.schedule is not None and outcome.status is Status.TIMEOUT)
        result.status = Status.TIMEOUT if timed_out else Status.FEASIBLE
        result.message = f"latency {latency:,} cycles, bound {result.bound:,} ({where}; {outcome.message})"
    return result


def _latency_warm_starts(problem: Problem, schedule: tuple[OpName, ...], clock: Clock) -> list[Plan]:
    """xla-msa's and best-greedy's plans for ``schedule`` under ``objective="latency"`` (both retime
    their loads), when registered: cheap incumbents that are sometimes faster than the retimed
    bytes-optimal plan."""
    from cosma.core.interface import run, solver_names

    plans = []
    for name in ("xla-msa", "best-greedy"):
        left = clock.left()
        if name not in solver_names() or (left is not None and left < 1.0):
            continue
        limit = None if left is None else left / 10
        plan = run(problem, name, options=RunOptions(schedule=schedule, time_limit=limit)).plan
        if plan is not None:
            plans.append(plan)
    return plans


def _solve_bytes(problem: Problem, params: ExactParams, options: RunOptions) -> SolveResult:
    """The bytes-optimal plan (see the module docstring)."""
    if params.schedule_mode not in SCHEDULE_MODES:
        raise UsageError(f"schedule_mode must be one of {', '.join(SCHEDULE_MODES)}, got {params.schedule_mode!r}")
    clock = Clock(options.time_limit)
    if options.schedule is not None and not is_topological(problem, options.schedule):
        raise UsageError("the given schedule is not a topological order of the graph's operators")
    if options.schedule is not None:
        return _solve_fixed_best(problem, params, options, clock)
    if params.schedule_mode == "enumerate":
        return _solve_enumerate(problem, params, options, clock)
    share = 1.0 if params.schedule_mode == "fixed" else params.candidates_share
    left = clock.left()
    result = _solve_fixed_best(problem, params, options, Clock(None if left is None else share * left))
    if result.plan is None:
        return result
    return _over_every_order(problem, result, params, options, clock)


def _over_every_order(
    problem: Problem, result: SolveResult, params: ExactParams, options: RunOptions, clock: Clock
) -> SolveResult:
    """The best candidate order's answer, made a statement about every order: its bound is
    replaced by one valid over every schedule (``cosma.exact.joint``), and in free mode the
    order-aware search tries to close the gap with better orders."""
    from cosma.exact.joint import order_bound, solve_joint

    cost = _cost_of(problem, result.plan)
    fixed_bound = result.bound
    result.stats["fixed_schedule_bound"] = fixed_bound
    result.stats["best_candidate_objective"] = cost
    started = time.perf_counter()
    left = clock.left()
    if cost == 0:
        bound, how = 0, "zero traffic"
    elif params.schedule_mode == "fixed":
        limit = params.order_bound_time if left is None else max(0.05, min(params.order_bound_time, left / 2))
        found = order_bound(problem, limit, options.threads, options.seed, upper=cost)
        bound, how = found.bound, found.how
    else:
        joint = solve_joint(
            problem, params.order_search_time if left is None else max(0.05, left), options.threads, options.seed,
            say=options.say, progress=options.report, start=(result.plan, fixed_bound),
        )  # fmt: skip
        if joint.cost is not None and joint.cost < cost:
            result.plan, cost = joint.plan, joint.cost
            result.stats["schedule_source"] = joint.stats.get("best_source", "order model")
        bound, how = joint.bound, joint.how
        result.stats["joint"] = {k: v for k, v in joint.stats.items() if not isinstance(v, dict)}
    result.bound = min(cost, bound)
    result.stats["schedule_mode"] = params.schedule_mode
    result.stats["free_saving_bytes"] = result.stats["best_candidate_objective"] - cost
    result.stats["order_bound_how"] = how
    result.stats["order_bound_seconds"] = round(time.perf_counter() - started, 3)
    result.seconds = clock.elapsed()
    if cost <= result.bound:
        result.status, result.message = Status.OPTIMAL, f"optimal over every schedule ({how})"
    else:
        result.status = Status.TIMEOUT if clock.expired() else Status.FEASIBLE
        result.message = f"{result.message}; bound over every schedule {result.bound} B ({how})"
    return result


def _result(outcome: FixedOutcome, clock: Clock, **extra: Any) -> SolveResult:
    stats = dict(outcome.stats, **extra)
    return SolveResult(
        outcome.status, outcome.plan, bound=outcome.bound, seconds=clock.elapsed(), stats=stats, message=outcome.message
    )


def _solve_fixed_best(problem: Problem, params: ExactParams, options: RunOptions, clock: Clock) -> SolveResult:
    """Fixed mode: the given schedule, or the best of the candidate schedules."""
    if options.schedule is not None:
        outcome = solve_fixed(problem, options.schedule, params, options, clock)
        return _result(outcome, clock, schedule_mode="fixed", schedule_source="given")
    candidates = candidate_schedules(problem, clock, params.schedule_time_limit)
    best: tuple[str, FixedOutcome] | None = None
    per_schedule = {}
    for i, (name, sched) in enumerate(candidates):
        # Give each remaining candidate an equal share of the remaining time.
        left = clock.left()
        sub = Clock(None if left is None else max(0.05, left / (len(candidates) - i)))
        # Orders whose bound cannot beat the best so far are cut short (status FEASIBLE: pruned).
        outcome = solve_fixed(problem, sched, params, options, sub, cutoff=best[1].objective if best else None)
        pruned = best is not None and outcome.status is Status.FEASIBLE and outcome.bound >= best[1].objective
        per_schedule[name] = {
            "status": "pruned" if pruned else outcome.status.value,
            "objective": outcome.objective,
            "bound": outcome.bound,
        }
        if best is None or outcome.objective < best[1].objective:
            best = (name, outcome)
        if best[1].objective == 0:
            break
        if clock.expired():
            break
    assert best is not None
    name, outcome = best
    outcome.message = f"{outcome.message} (schedule: {name}, the best of {len(per_schedule)} candidate orders)"
    return _result(outcome, clock, schedule_mode="fixed", schedule_source=name, candidates=per_schedule)


def _solve_enumerate(problem: Problem, params: ExactParams, options: RunOptions, clock: Clock) -> SolveResult:
    """Enumerate mode: minimum over every topological order, when there are few enough."""
    # Zero is the floor: if some candidate order needs no traffic, nothing beats it.
    fixed = _solve_fixed_best(problem, params, options, clock)
    if fixed.status is Status.OPTIMAL and fixed.bound == 0 or fixed.plan is None:
        fixed.stats["schedule_mode"] = "enumerate"
        if fixed.status is Status.OPTIMAL:
            fixed.message = "optimal over all schedules (zero non-compulsory bytes)"
        return fixed
    orders, complete = topological_orders(problem, params.max_free_orders)
    if not complete:
        fixed.status = Status.FEASIBLE if fixed.status is Status.OPTIMAL else fixed.status
        fixed.bound = 0
        fixed.message = (
            f"free schedule not tractable (more than {params.max_free_orders} topological orders): "
            f"best candidate order, {fixed.message}"
        )
        fixed.stats["schedule_mode"] = "enumerate-fallback"
        return fixed
    best_plan, best_cost = fixed.plan, _cost_of(problem, fixed.plan)
    fixed_cost = best_cost
    all_proven = True
    explored = 0
    try:
        for order in orders:
            if clock.expired():
                all_proven = False
                break
            # No warm start per order: the cutoff from the best order so far prunes faster.
            outcome = solve_fixed(problem, order, replace(params, warm_start=False), options, clock, cutoff=best_cost)
            explored += 1
            if outcome.objective < best_cost:
                best_plan, best_cost = outcome.plan, outcome.objective
            if outcome.status not in (Status.OPTIMAL, Status.FEASIBLE):  # FEASIBLE here = pruned by its bound
                all_proven = False
    except KeyboardInterrupt:
        all_proven = False
    status = Status.OPTIMAL if all_proven and explored == len(orders) else Status.TIMEOUT
    message = (
        f"optimal over all {len(orders)} schedules" if status is Status.OPTIMAL else f"stopped after {explored} orders"
    )
    return SolveResult(
        status,
        best_plan,
        bound=best_cost if status is Status.OPTIMAL else 0,
        seconds=clock.elapsed(),
        stats={
            "schedule_mode": "enumerate",
            "orders": len(orders),
            "explored": explored,
            "best_fixed_objective": fixed_cost,
            "free_saving_bytes": fixed_cost - best_cost,
        },
        message=message,
    )


def _cost_of(problem: Problem, plan: Plan) -> int:
    from cosma.core.cost import evaluate

    return evaluate(problem, plan).non_compulsory_bytes


__all__ = ["ExactParams", "FixedOutcome", "solve_fixed", "solve_exact", "candidate_schedules", "topological_orders"]
