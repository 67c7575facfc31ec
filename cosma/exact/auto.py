"""The ``auto`` solver: the exact answer when it comes cheaply, divide and conquer otherwise.

1. ``exact`` runs first with part of the budget (``exact_fraction``), unless the schedule
   is too long for it to have a chance (``exact_max_steps``: at NAS scale a joint CP-SAT
   model finds no plan at all in a minute): the candidate orders, then the order-aware
   model of ``cosma.exact.joint`` closing the gap over every order. If it proves
   optimality over every schedule, that is the answer, returned at once.
2. Otherwise ``dnc`` gets the rest of the budget, starting from the exact solver's best
   plan (and, inside dnc, from ``best-greedy``'s), and stops as soon as a plan meets the
   exact solver's bound over every schedule.
3. The answer is never worse than ``best-greedy``: its plan is compared last.

The bound is the best of the sub-solvers' bounds, each valid over every schedule (or for
the schedule the caller fixed). On a long solve a line (incumbent, bound over every
schedule, gap, seconds) goes to stderr every ``progress_every`` seconds; the
sub-solvers' own lines are not printed.

Under ``objective="latency"``, where the exact solver has a chance (as in step 1), ``auto``
is the exact solver with the whole budget (its latency model, which proves latency bounds;
``cosma.exact.solver``), never slower than ``best-greedy``; elsewhere it solves for bytes
and retimes the plan's loads (``bytes_then_prefetch``: no bound in cycles).

``stats["path"]`` says which answer was returned ("exact", "dnc" or "best-greedy") and
``stats["why"]`` why; the sub-solvers' figures are kept under ``stats["exact"]`` and
``stats["dnc"]``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

from cosma.core.interface import Heartbeat, RunOptions, SolveResult, Status, register, run
from cosma.core.ir import Problem
from cosma.core.prefetch import bytes_then_prefetch
from cosma.exact.dnc import DncParams, dnc_search


@dataclass(frozen=True)
class AutoParams:
    """How ``auto`` splits its budget between the exact solver and divide and conquer."""

    exact_fraction: float = 0.3  # share of the time limit the exact solver may use (0: skip it)
    # ... on a chain-like graph past exact_max_steps (a transformer stack): there the exact solver
    # is the one that proves, and its fixed phases (candidate orders, order bounds) take seconds
    chain_exact_fraction: float = 0.7
    exact_time: float = 60.0  # exact solver's time when there is no time limit
    exact_max_steps: int = 400  # skip the exact solver on longer schedules (go straight to dnc) ...
    # ... unless the graph is chain-like: each operator's ASAP/ALAP window spans at most this
    # many steps on average (a 5k-operator transformer stack: 6; a 1k-node RandWire: 1,900)
    chain_window: float = 8.0
    dnc_time: float = 120.0  # dnc's time when there is no time limit
    # Seconds per operator that each solver's fixed phases (candidate orders, order bounds, warm
    # starts, validation) take before it can improve on best-greedy (measured on transformer
    # stacks: exact about 9 s at 20k operators, 2.5 s at 5k; dnc about half): with less time than
    # that, the solver is not started and best-greedy, which stops at its deadline, answers.
    exact_seconds_per_op: float = 5e-4
    dnc_seconds_per_op: float = 2.5e-4
    progress_every: float = 5.0  # seconds between progress lines on stderr (with --quiet: none)


@register("auto", "exact when it proves optimality in part of the budget, else divide and conquer", AutoParams)
def solve_auto(problem: Problem, params: AutoParams, options: RunOptions) -> SolveResult:
    if problem.objective == "latency" and params.exact_fraction > 0 and _exact_has_a_chance(problem, params):
        return _latency_by_exact(problem, options)
    return _solve_bytes(problem, params, options)


def _latency_by_exact(problem: Problem, options: RunOptions) -> SolveResult:
    """Under ``objective="latency"``, where the exact solver has a chance: its latency model
    (``cosma.exact.latency``, warm-started by its bytes-optimal plan retimed) with the whole
    budget, so the answer carries a latency bound; never slower than ``best-greedy``'s plan
    (retimed too), which is returned, with the exact bound, when it is faster."""
    started = time.monotonic()
    exact = run(problem, "exact", options=options)
    left = None if options.time_limit is None else max(0.1, options.time_limit - (time.monotonic() - started))
    greedy = run(problem, "best-greedy", options=replace(options, time_limit=left))
    best, path = exact, "exact"
    if greedy.cost is not None and (exact.cost is None or greedy.cost.key("latency") < exact.cost.key("latency")):
        best, path = greedy, "best-greedy"
        best.bound = exact.bound
        best.status = Status.FEASIBLE if exact.bound is None or exact.bound < greedy.objective else Status.OPTIMAL
    best.stats = {"path": path, "why": "objective latency: the exact solver's latency model", **best.stats}
    best.seconds = time.monotonic() - started
    return best


@bytes_then_prefetch
def _solve_bytes(problem: Problem, params: AutoParams, options: RunOptions) -> SolveResult:
    what = "bound" if options.schedule is not None else "bound over every schedule"
    with Heartbeat(options.say, "auto", params.progress_every if options.verbose else 0, what) as beat:
        # The sub-solvers report their progress to the heartbeat instead of printing it.
        quiet = replace(options, verbose=False, log=None, progress=beat.update)
        return _solve_auto(problem, params, quiet, beat)


def _solve_auto(problem: Problem, params: AutoParams, options: RunOptions, beat: Heartbeat) -> SolveResult:
    started = time.monotonic()
    stats: dict = {}

    def left() -> float | None:
        return None if options.time_limit is None else max(0.1, options.time_limit - (time.monotonic() - started))

    exact = best = None
    path = ""
    bounds = [0]  # lower bounds valid for the problem as posed
    steps = len(problem.graph.operators)
    fraction = params.exact_fraction if steps <= params.exact_max_steps else params.chain_exact_fraction
    limit = params.exact_time if options.time_limit is None else fraction * options.time_limit
    if params.exact_fraction <= 0:
        why = "exact_fraction = 0: no budget for the exact solver"
    elif limit < params.exact_seconds_per_op * steps:
        why = f"{limit:.1f}s is too little for the exact solver on {steps} operators"
    elif not _exact_has_a_chance(problem, params):
        why = f"{steps} steps > exact_max_steps = {params.exact_max_steps}, and not chain-like"
    else:
        exact = run(problem, "exact", options=replace(options, time_limit=limit))
        beat.update(exact.objective, exact.bound)
        stats["exact"] = {
            "status": exact.status.value,
            "objective": exact.objective,
            "bound": exact.bound,
            "seconds": round(exact.seconds, 3),
        }
        if exact.status is Status.INFEASIBLE:
            exact.stats = {"path": "exact", "why": "infeasible", **stats}
            return exact
        why = f"exact stopped {exact.status.value} after {exact.seconds:.2f}s without proof"
        if exact.status is Status.OPTIMAL:
            best, path, why = exact, "exact", f"exact proved optimality in {exact.seconds:.2f}s"
    dnc_left = left()
    if best is not None:
        pass  # proven by exact
    elif dnc_left is not None and dnc_left < params.dnc_seconds_per_op * steps:
        why += f"; {dnc_left:.1f}s left is too little for divide and conquer"
        if exact is not None and exact.plan is not None:
            best, path = exact, "exact"
            bounds.append(exact.bound or 0)
    else:
        starts = [] if exact is None or exact.plan is None else [(exact.plan, "exact")]
        dnc_options = replace(options, time_limit=params.dnc_time if options.time_limit is None else left())
        floor = 0 if exact is None or exact.bound is None else exact.bound
        result = dnc_search(problem, DncParams(), dnc_options, starts, floor)
        beat.update(result.objective, result.bound)
        if result.plan is not None:
            result = _scored(problem, result)
        stats["dnc"] = {k: v for k, v in result.stats.items() if not isinstance(v, dict)}
        best, path = result, "dnc"
        bounds.append(result.bound or 0)
        if exact is not None and exact.bound is not None:
            bounds.append(exact.bound)  # over every order, or for the schedule the caller fixed
        if (
            exact is not None
            and exact.objective is not None
            and (best.objective is None or exact.objective < best.objective)
        ):
            best, path = exact, "exact"
            why += "; its plan beat dnc's"

    # Never worse than the best greedy baseline. When dnc ran, it started from best-greedy's
    # plan (same problem, same schedule) and never returns worse: running it again here only
    # costs time, seconds on NAS graphs.
    dnc_greedy = stats.get("dnc", {}).get("best_greedy_bytes")
    if dnc_greedy is not None:
        stats["best_greedy_bytes"] = dnc_greedy
    else:
        greedy = run(problem, "best-greedy", options=replace(options, time_limit=left()))
        stats["best_greedy_bytes"] = greedy.objective
        if best is None or best.plan is None:
            best, path = greedy, "best-greedy"
        elif greedy.objective is not None and (best.objective is None or greedy.objective < best.objective):
            best, path = greedy, "best-greedy"
            why += "; best-greedy was better"
    if path != "exact" or best.status is not Status.OPTIMAL:
        # dnc's bound holds for the problem as posed, whichever plan is returned.
        best.bound = min(max(bounds), best.objective) if best.objective is not None else max(bounds)
        if best.objective is not None and best.objective <= best.bound:
            best.status = Status.OPTIMAL
        elif best.status is Status.OPTIMAL:
            best.status = Status.FEASIBLE
    best.stats = {"path": path, "why": why, **stats}
    best.seconds = time.monotonic() - started
    return best


def _exact_has_a_chance(problem: Problem, params: AutoParams) -> bool:
    """Short schedules, or chain-like ones (at NAS scale a joint CP-SAT model finds no plan at all in a minute)."""
    return len(problem.graph.operators) <= params.exact_max_steps or _mean_window(problem) <= params.chain_window


def _mean_window(problem: Problem) -> float:
    """Average width of the operators' ASAP/ALAP windows (1: a single topological order)."""
    from cosma.exact.joint import OrderInstance

    inst = OrderInstance.build(problem)
    return sum(hi - lo + 1 for lo, hi in zip(inst.asap, inst.alap)) / max(1, inst.n)


def _scored(problem: Problem, result: SolveResult) -> SolveResult:
    """Fill ``cost`` the way ``cosma.core.interface.run`` does, so results can be compared here."""
    from cosma.core.cost import evaluate
    from cosma.core.validator import check

    check(problem, result.plan)
    result.cost = evaluate(problem, result.plan)
    return result


__all__ = ["AutoParams", "solve_auto"]
