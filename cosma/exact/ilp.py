"""The paper-faithful COSMA ILP ("ilp"), in PuLP, solved by HiGHS (CBC as fallback).

This is the reference formulation, for small graphs and cross-checks only: its big-M
non-overlap gives an LP bound near zero and it stalls at a few hundred tensors (see
MISSION.md, "known traps"). The fast formulation is ``cosma.exact.solver``.

Per managed tensor ``a`` and step ``t`` (binaries unless said otherwise):

* ``x[o, t]``: operator ``o`` runs at step ``t`` (constants in fixed-schedule mode);
* ``C[a, t]``: ``a`` is created at ``t``: produced by the operator at ``t``, or, for a
  graph input or weight, loaded for the first time (compulsory, free);
* ``P[a, t]``: ``a`` is preserved: resident at ``t - 1`` and still at the same address;
* ``R[a, t]``: ``a`` is retrieved (reloaded) from DRAM just before ``t``;
* ``S[a, t]``: activation ``a`` is spilled (written to DRAM) after ``t``;
* ``addr[a, t]``: integer base address in alignment units; resident means
  ``res[a, t] = C + P + R = 1``;
* ``z[a, b, t]``: ``a`` lies below ``b`` at ``t`` (pairwise big-M non-overlap).

Objective: ``sum (S + R) * size``. The fixes for the known traps are marked "trap" in
``_build``: explicit zero state before step 0, one operator per step, the weights'
"loaded now" case in the operand rule (``C`` counts as resident), dead tensors forced
out (which is what makes pruning address pairs by lifetime sound), and tolerance
rounding with a re-check by the validator.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from dataclasses import dataclass, replace
from typing import Any, Sequence

import pulp

from cosma.core.analysis import is_topological, make_plan
from cosma.core.errors import UsageError
from cosma.core.interface import RunOptions, SolveResult, Status, register
from cosma.core.ir import OpName, Problem, Residency, TensorKind
from cosma.core.prefetch import bytes_then_prefetch
from cosma.core.validator import validate


@dataclass(frozen=True)
class IlpParams:
    """Settings of the paper-faithful ILP."""

    schedule_mode: str = "fixed"  # "fixed": RunOptions.schedule or file order; "free": op-to-step binaries
    backend: str = "highs"  # "highs" (highspy API, else HiGHS_CMD) or "cbc"
    prune_pairs: bool = True  # only pair tensors whose lifetimes can meet (sound: dead tensors are forced out)
    msg: bool = False  # print the MILP solver's log


@dataclass
class _Model:
    prob: pulp.LpProblem
    steps: int
    x: dict[tuple[int, int], Any]  # (op, step) -> binary or 0/1 constant
    create: dict[tuple[str, int], Any]
    preserve: dict[tuple[str, int], Any]
    retrieve: dict[tuple[str, int], Any]
    spill: dict[tuple[str, int], Any]
    addr: dict[tuple[str, int], Any]
    window: dict[str, range]  # steps at which a tensor may be resident


class _OutOfTime(Exception):
    """The time limit ran out while the MILP was being built."""


def _build(
    problem: Problem, schedule: Sequence[OpName] | None, prune_pairs: bool, deadline: float | None = None
) -> _Model:
    """The MILP; raises ``_OutOfTime`` past ``deadline`` (``time.perf_counter()``), checked once
    per tensor, so that building a large model never overruns the solve's time limit."""

    def check_time() -> None:
        if deadline is not None and time.perf_counter() > deadline:
            raise _OutOfTime

    graph = problem.graph
    n = len(graph.operators)
    align = problem.alignment
    cap = problem.capacity // align
    big_m = cap
    prob = pulp.LpProblem("cosma", pulp.LpMinimize)
    steps = range(n)

    # ----- variables -----
    if schedule is None:
        # COSMA's schedule variables, only inside each operator's ASAP/ALAP window (every
        # topological order puts it there; 0 elsewhere): same optimum, far fewer binaries.
        from cosma.exact.joint import OrderInstance

        order = OrderInstance.build(problem)
        x = {
            (o, t): pulp.LpVariable(f"x_{o}_{t}", cat="Binary") if order.asap[o] <= t <= order.alap[o] else 0
            for o in range(n)
            for t in steps
        }
    else:
        pos = {name: t for t, name in enumerate(schedule)}
        x = {(o, t): int(pos[op.name] == t) for o, op in enumerate(graph.operators) for t in steps}
    touching: dict[str, list[int]] = {a: [] for a in problem.managed_tensors}
    for o, op in enumerate(graph.operators):
        for a in problem.operands(op):
            touching[a].append(o)
    window: dict[str, range] = {}
    for a, ops in touching.items():
        if not ops:
            continue
        if schedule is None:  # from the first step a toucher can run to the last
            window[a] = range(min(order.asap[o] for o in ops), max(order.alap[o] for o in ops) + 1)
        else:
            ts = [x_t for o in ops for x_t in steps if x[o, x_t]]
            window[a] = range(min(ts), max(ts) + 1)
    var = pulp.LpVariable
    create = {(a, t): var(f"C_{i}_{t}", cat="Binary") for i, a in enumerate(window) for t in window[a]}
    preserve = {(a, t): var(f"P_{i}_{t}", cat="Binary") for i, a in enumerate(window) for t in window[a]}
    retrieve = {(a, t): var(f"R_{i}_{t}", cat="Binary") for i, a in enumerate(window) for t in window[a]}
    spill = {
        (a, t): var(f"S_{i}_{t}", cat="Binary")
        for i, a in enumerate(window)
        if graph.tensors[a].kind is TensorKind.ACTIVATION
        for t in window[a]
    }
    units = {a: problem.footprint(a) // align for a in window}
    addr = {
        (a, t): var(f"A_{i}_{t}", 0, cap - units[a], cat="Integer") for i, a in enumerate(window) for t in window[a]
    }

    def res(a: str, t: int) -> Any:
        if t not in window[a]:
            return 0
        return create[a, t] + preserve[a, t] + retrieve[a, t]

    # ----- constraints: the schedule -----
    if schedule is None:
        for o in range(n):
            prob += pulp.lpSum(x[o, t] for t in steps) == 1
        for t in steps:  # trap: nothing in the transcribed equations stops two operators sharing a step
            prob += pulp.lpSum(x[o, t] for o in range(n)) == 1
        for o, op in enumerate(graph.operators):
            for p in graph.predecessors(op.name):
                q = graph.op_index[p]
                prob += pulp.lpSum(t * x[q, t] for t in steps) + 1 <= pulp.lpSum(t * x[o, t] for t in steps)

    # ----- constraints: residency -----
    for a, w in window.items():
        check_time()
        kind = graph.tensors[a].kind
        producer = graph.producer.get(a)
        for t in w:
            prob += res(a, t) <= 1
            # trap: explicit zero state before step 0 (and before the window): nothing to preserve.
            if t - 1 in w:
                prob += preserve[a, t] <= res(a, t - 1)
                prob += addr[a, t] - addr[a, t - 1] <= big_m * (1 - preserve[a, t])
                prob += addr[a, t - 1] - addr[a, t] <= big_m * (1 - preserve[a, t])
            else:
                prob += preserve[a, t] == 0
            # A retrieve needs the tensor to exist already, and an activation's DRAM copy.
            prob += retrieve[a, t] <= pulp.lpSum(create[a, s] for s in w if s < t)
            if kind is TensorKind.ACTIVATION:
                prob += retrieve[a, t] <= pulp.lpSum(spill[a, s] for s in w if s < t)
                prob += spill[a, t] <= res(a, t)
            # trap: dead tensors forced out, and nothing resident before its first touch.
            prob += res(a, t) <= pulp.lpSum(x[o, s] for o in touching[a] for s in w if s >= t)
            prob += res(a, t) <= pulp.lpSum(x[o, s] for o in touching[a] for s in w if s <= t)
        if producer is not None:
            q = graph.op_index[producer]
            for t in w:
                prob += create[a, t] == x[q, t]
        else:  # graph input or weight: loaded once for free, at its first residency
            prob += pulp.lpSum(create[a, t] for t in w) == 1
        if kind is TensorKind.ACTIVATION:
            prob += pulp.lpSum(spill[a, t] for t in w) <= 1
    # Operands resident while their operator runs. trap: C counts, the weights' "loaded now" case.
    for o, op in enumerate(graph.operators):
        for a in problem.operands(op):
            for t in window[a]:
                prob += res(a, t) >= x[o, t]

    # ----- constraints: pairwise non-overlap (big-M) -----
    names = list(window)
    for i, a in enumerate(names):
        check_time()
        for j in range(i + 1, len(names)):
            b = names[j]
            common = [t for t in window[a] if t in window[b]] if prune_pairs else list(steps)
            for t in common:
                if t not in window[a] or t not in window[b]:
                    continue
                z = var(f"z_{i}_{j}_{t}", cat="Binary")
                both_out = 2 - res(a, t) - res(b, t)
                prob += addr[a, t] + units[a] <= addr[b, t] + big_m * (1 - z) + big_m * both_out
                prob += addr[b, t] + units[b] <= addr[a, t] + big_m * z + big_m * both_out

    # ----- objective -----
    prob += pulp.lpSum(graph.tensors[a].size * v for (a, _), v in spill.items()) + pulp.lpSum(
        graph.tensors[a].size * v for (a, _), v in retrieve.items()
    )
    return _Model(prob, n, x, create, preserve, retrieve, spill, addr, window)


@contextlib.contextmanager
def quiet_stdout(quiet: bool):
    """Send what native code writes to file descriptor 1 to /dev/null while ``quiet``."""
    if not quiet:
        yield
        return
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 1)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def _solver(params: IlpParams, options: RunOptions) -> Any:
    limit = options.time_limit
    if params.backend == "highs":
        try:
            return pulp.HiGHS(msg=params.msg, timeLimit=limit, threads=options.threads, gapRel=0.0, gapAbs=0.0)
        except Exception:  # noqa: BLE001 - highspy missing or broken: the command-line HiGHS
            if pulp.HiGHS_CMD().available():
                return pulp.HiGHS_CMD(msg=params.msg, timeLimit=limit, threads=options.threads)
    if params.backend not in ("highs", "cbc"):
        raise UsageError(f"backend must be highs or cbc, got {params.backend!r}")
    return pulp.PULP_CBC_CMD(msg=params.msg, timeLimit=limit, threads=options.threads, gapRel=0.0)


def _val(v: Any) -> float:
    return float(v) if isinstance(v, (int, float)) else float(v.value() or 0.0)


@register("ilp", "COSMA's paper-faithful ILP (PuLP + HiGHS/CBC): reference for small graphs", IlpParams)
@bytes_then_prefetch
def solve_ilp(problem: Problem, params: IlpParams, options: RunOptions) -> SolveResult:
    if params.schedule_mode not in ("fixed", "free"):
        raise UsageError(f"schedule_mode must be fixed or free, got {params.schedule_mode!r}")
    start = time.perf_counter()
    graph = problem.graph
    schedule: tuple[OpName, ...] | None = None
    fixed_order = params.schedule_mode == "fixed" or options.schedule is not None  # a given schedule is kept
    if fixed_order:
        schedule = options.schedule or tuple(op.name for op in graph.operators)
        if not is_topological(problem, schedule):
            raise UsageError("the given schedule is not a topological order of the graph's operators")
    deadline = None if options.time_limit is None else start + options.time_limit
    try:
        model = _build(problem, schedule, params.prune_pairs, deadline)
    except _OutOfTime:
        return SolveResult(
            Status.TIMEOUT, None, seconds=time.perf_counter() - start, message="time limit spent building the MILP"
        )
    stats: dict[str, Any] = {
        "schedule_mode": params.schedule_mode,
        "variables": len(model.prob.variables()),
        "constraints": len(model.prob.constraints),
    }
    if options.time_limit is not None:  # building the MILP is not interruptible: charge it to the budget
        left = options.time_limit - (time.perf_counter() - start)
        if left <= 0:
            return SolveResult(
                Status.TIMEOUT, None, seconds=time.perf_counter() - start, stats=stats,
                message="time limit spent building the MILP",
            )  # fmt: skip
        options = replace(options, time_limit=left)
    stats["backend"] = None
    try:
        with quiet_stdout(not params.msg):  # highspy prints a banner on stdout whatever msg says
            solver = _solver(params, options)
            stats["backend"] = solver.name
            model.prob.solve(solver)
    except KeyboardInterrupt:
        return SolveResult(
            Status.TIMEOUT, None, seconds=time.perf_counter() - start, stats=stats, message="interrupted"
        )
    status, sol = model.prob.status, model.prob.sol_status
    bound = None
    highs = getattr(model.prob, "solverModel", None)
    if highs is not None and hasattr(highs, "getInfo"):
        info = highs.getInfo()
        if getattr(info, "mip_dual_bound", None) is not None and abs(info.mip_dual_bound) < 1e30:
            bound = int(info.mip_dual_bound + 1e-6) if info.mip_dual_bound > 0 else 0
    seconds = time.perf_counter() - start
    if status == pulp.LpStatusInfeasible:
        return SolveResult(Status.INFEASIBLE, None, seconds=seconds, stats=stats, message="the MILP is infeasible")
    if sol not in (pulp.LpSolutionOptimal, pulp.LpSolutionIntegerFeasible):
        return SolveResult(
            Status.TIMEOUT, None, bound=bound, seconds=seconds, stats=stats, message="no solution in time"
        )

    # ----- extract: round (trap: tolerances x big-M), then let the validator re-check -----
    n = model.steps
    if schedule is None:
        schedule = tuple(graph.operators[o].name for t in range(n) for o in range(n) if _val(model.x[o, t]) > 0.5)
    residencies: list[Residency] = []
    align = problem.alignment
    for a, w in model.window.items():
        current: list[int] | None = None  # [start, offset]
        for t in w:
            here = _val(model.create[a, t]) + _val(model.preserve[a, t]) + _val(model.retrieve[a, t]) > 0.5
            kept = _val(model.preserve[a, t]) > 0.5
            if current is not None and (not here or not kept):
                residencies.append(Residency(a, current[0], t, current[1] * align))
                current = None
            if here and current is None:
                current = [t, round(_val(model.addr[a, t]))]
        if current is not None:
            residencies.append(Residency(a, current[0], w.stop, current[1] * align))
    plan = make_plan(problem, schedule, residencies)
    violations = validate(problem, plan)
    if violations:
        return SolveResult(
            Status.TIMEOUT,
            None,
            bound=bound,
            seconds=seconds,
            stats=stats,
            message=f"the MILP answer breaks a rule after rounding: {violations[0]}",
        )
    optimal = sol == pulp.LpSolutionOptimal
    objective = round(pulp.value(model.prob.objective) or 0)
    mode = "for the fixed schedule" if fixed_order else "over all schedules"
    if fixed_order and options.schedule is None and objective > 0:
        # File order was our choice, not the caller's: the proof covers that order only.
        stats["fixed_schedule_bound"] = objective if optimal else bound
        return SolveResult(
            Status.FEASIBLE if optimal else Status.TIMEOUT, plan, bound=0, seconds=seconds, stats=stats,
            message="optimal for file order only (the schedule was not fixed by the caller)",
        )  # fmt: skip
    return SolveResult(
        Status.OPTIMAL if optimal else Status.TIMEOUT,
        plan,
        bound=objective if optimal else bound,
        seconds=seconds,
        stats=stats,
        message=f"optimal {mode}" if optimal else "time limit: best MILP solution so far",
    )


__all__ = ["IlpParams", "solve_ilp", "quiet_stdout"]
