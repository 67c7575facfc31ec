"""The greedy baselines, registered by name behind the one solver interface.

COSMA compares against what compilers do today: a schedule ({file order, memory-aware
order}) x TFLite's best-fit arena x a replacement policy ({Belady, greedy}), run online
along the schedule (``solvers.online``). Registered here:

=====================  ===========================  ========
name                   schedule                     eviction
=====================  ===========================  ========
file-bestfit-belady    file (framework) order       Belady
file-bestfit-greedy    file (framework) order       greedy
mem-bestfit-belady     memory-aware list schedule   Belady
mem-bestfit-greedy     memory-aware list schedule   greedy
file-bestfit-lru       file (framework) order       LRU (reference)
best-greedy            the best of the four COSMA baselines on each instance
=====================  ===========================  ========

``RunOptions.schedule``, when given, replaces the baseline's own order. Below ``M_R``
no plan exists: the result is ``INFEASIBLE`` with a message naming ``M_R`` and the
largest operator. Otherwise a plan always exists (the allocator evicts more, never
fails); it is ``OPTIMAL`` only when it moves no non-compulsory byte (0 is a proven
lower bound), else ``FEASIBLE``. One baseline takes milliseconds (DenseNet-121: about
0.02 s), so only ``best-greedy`` looks at the time limit, between candidates.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from cosma.core.analysis import is_topological, peak_live_bytes
from cosma.core.cost import evaluate
from cosma.core.errors import UsageError
from cosma.core.interface import RunOptions, SolveResult, Status, bytes_bound_only, register
from cosma.core.ir import OpName, Problem
from cosma.core.prefetch import moved_loads, prefetch, prefetch_wanted
from cosma.schedules.orders import SCHEDULES
from solvers.online import ArenaParams, Policy, allocate

# name -> (schedule name in cosma.schedules.orders.SCHEDULES, eviction policy)
BASELINES: dict[str, tuple[str, Policy]] = {
    "file-bestfit-belady": ("file", Policy.BELADY),
    "file-bestfit-greedy": ("file", Policy.GREEDY),
    "mem-bestfit-belady": ("memory", Policy.BELADY),
    "mem-bestfit-greedy": ("memory", Policy.GREEDY),
    "file-bestfit-lru": ("file", Policy.LRU),
}

# The four baselines of COSMA's evaluation, the candidates of "best-greedy".
COSMA_BASELINES = ("file-bestfit-belady", "file-bestfit-greedy", "mem-bestfit-belady", "mem-bestfit-greedy")


@dataclass(frozen=True)
class BestGreedyParams:
    """Switches of ``best-greedy``: which baselines it tries and how they allocate."""

    # Comma-separated baseline names tried on each instance (the lowest traffic wins,
    # then the lowest latency, then the earlier name).
    candidates: str = ",".join(COSMA_BASELINES)
    # Passed to every candidate: see ``solvers.online.ArenaParams``.
    place_largest_first: bool = True
    # Passed to every candidate: see ``solvers.online.ArenaParams``.
    lazy_eviction: bool = True
    # Passed to every candidate: see ``solvers.online.ArenaParams``.
    side_aware_fit: bool = True
    # Retime every candidate's loads (``cosma.core.prefetch``) before comparing them: "auto" =
    # on when the problem's objective is "latency", else off; "on"; "off".
    prefetch: str = "auto"


def _schedule(problem: Problem, schedule_name: str, options: RunOptions) -> tuple[tuple[OpName, ...], str]:
    if options.schedule is None:
        return SCHEDULES[schedule_name](problem), schedule_name
    if not is_topological(problem, options.schedule):
        raise UsageError("the given schedule is not a topological order of the graph's operators")
    return tuple(options.schedule), "given"


def solve_baseline(
    problem: Problem,
    name: str,
    params: ArenaParams,
    options: RunOptions,
    retime: bool = False,
    deadline: float | None = None,
) -> SolveResult:
    """Run the baseline ``name`` (a key of ``BASELINES``) on ``problem``; ``retime``: then
    start its loads earlier where that hides them (``cosma.core.prefetch``). Its ``OPTIMAL``
    (no non-compulsory byte) is a statement in bytes: withdrawn under ``objective="latency"``.
    ``deadline`` (a ``time.perf_counter()`` instant; default: the time limit from now): past
    it the allocator keeps only the operands resident for the rest of the schedule
    (``TIMEOUT``, still a valid plan)."""
    start = time.perf_counter()
    if deadline is None and options.time_limit is not None:
        deadline = start + options.time_limit
    schedule_name, policy = BASELINES[name]
    schedule, source = _schedule(problem, schedule_name, options)
    online = allocate(problem, schedule, policy, params, deadline)
    plan = prefetch(problem, online.plan) if retime else online.plan
    cost = evaluate(problem, plan)
    seconds = time.perf_counter() - start
    options.say(
        f"{name}: {cost.non_compulsory_bytes} non-compulsory bytes, {online.evictions} evictions,"
        f" {online.relocations} relocations, {seconds:.3f} s"
    )
    optimal = cost.non_compulsory_bytes == 0
    cut = online.stopped_at is not None and not optimal
    result = SolveResult(
        Status.OPTIMAL if optimal else Status.TIMEOUT if cut else Status.FEASIBLE,
        plan,
        bound=0 if optimal else None,
        message=f"time limit reached at step {online.stopped_at} of {len(schedule)}: operands only from there"
        if cut
        else "",
        seconds=seconds,
        stats={
            "schedule": source,
            "policy": policy.value,
            "peak_live_bytes": peak_live_bytes(problem, schedule),
            "non_compulsory_bytes": cost.non_compulsory_bytes,
            "latency_cycles": cost.latency_cycles,
            "evictions": online.evictions,
            "evicted_bytes": online.evicted_bytes,
            "relocations": online.relocations,
            "fallback_steps": online.fallback_steps,
            "stopped_at_step": online.stopped_at,
            **({"prefetched_loads": moved_loads(online.plan, plan)} if retime else {}),
        },
    )
    return bytes_bound_only(problem, result)


def _register_baseline(name: str, description: str) -> None:
    @register(name, description, ArenaParams)
    def solve(problem: Problem, params: ArenaParams, options: RunOptions) -> SolveResult:
        return solve_baseline(problem, name, params, options)


_register_baseline("file-bestfit-belady", "COSMA baseline: file order, best-fit arena, Belady eviction")
_register_baseline("file-bestfit-greedy", "COSMA baseline: file order, best-fit arena, cheapest-gap greedy eviction")
_register_baseline("mem-bestfit-belady", "COSMA baseline: memory-aware order, best-fit arena, Belady eviction")
_register_baseline(
    "mem-bestfit-greedy", "COSMA baseline: memory-aware order, best-fit arena, cheapest-gap greedy eviction"
)
_register_baseline("file-bestfit-lru", "reference: file order, best-fit arena, LRU eviction")


@register("best-greedy", "the best of the four COSMA greedy baselines on each instance", BestGreedyParams)
def solve_best_greedy(problem: Problem, params: BestGreedyParams, options: RunOptions) -> SolveResult:
    """Run each candidate baseline, keep the best in the problem's objective (bytes then
    latency, or latency then bytes); stats name the winner. With ``prefetch`` each
    candidate's loads are retimed before the comparison.

    With a given schedule the file and memory-aware variants coincide, so each
    (schedule, policy) pair runs once. Stops trying candidates at the time limit
    (``TIMEOUT`` with the best plan so far)."""
    names = [n.strip() for n in params.candidates.split(",") if n.strip()]
    unknown = [n for n in names if n not in BASELINES]
    if unknown or not names:
        raise UsageError(f"best-greedy: unknown candidates {unknown}; known: {', '.join(BASELINES)}")
    start = time.perf_counter()
    arena = ArenaParams(
        place_largest_first=params.place_largest_first,
        lazy_eviction=params.lazy_eviction,
        side_aware_fit=params.side_aware_fit,
    )
    retime = prefetch_wanted(params.prefetch, problem)
    best: tuple[tuple[int, int, int], str, SolveResult] | None = None
    tried: dict[str, int] = {}
    seen: set[tuple[str, Policy]] = set()
    stopped = False
    for rank, name in enumerate(names):
        schedule_name, policy = BASELINES[name]
        variant = ("given" if options.schedule is not None else schedule_name, policy)
        if variant in seen:
            continue
        if best is not None and options.time_limit is not None and time.perf_counter() - start > options.time_limit:
            stopped = True
            break
        seen.add(variant)
        deadline = None if options.time_limit is None else start + options.time_limit
        result = solve_baseline(problem, name, arena, options, retime, deadline)
        traffic, latency = result.stats["non_compulsory_bytes"], result.stats["latency_cycles"]
        tried[name] = traffic
        key = (traffic, latency, rank) if problem.objective == "bytes" else (latency, traffic, rank)
        if best is None or key < best[0]:
            best = (key, name, result)
    assert best is not None
    _, winner, result = best
    result.stats = {"winner": winner, "tried": tried, **result.stats}
    if stopped:
        result.status = Status.TIMEOUT
        result.message = f"time limit reached after {len(tried)} of {len(names)} candidates"
    result.seconds = time.perf_counter() - start
    return result


@dataclass(frozen=True)
class TfliteBestGreedyParams(BestGreedyParams):
    """``best-greedy`` with TFLite's literal best-fit placement (a block at the low end of its gap)."""

    # Off: the placement COSMA's paper compared against (see ``solvers.online.ArenaParams``).
    side_aware_fit: bool = False


@register(
    "best-greedy-tflite",
    "the best of the four COSMA baselines with TFLite's literal best-fit placement (the paper's reference)",
    TfliteBestGreedyParams,
)
def solve_best_greedy_tflite(problem: Problem, params: TfliteBestGreedyParams, options: RunOptions) -> SolveResult:
    """Same search as ``best-greedy``; only the default placement differs."""
    return solve_best_greedy(problem, params, options)


__all__ = [
    "BASELINES",
    "COSMA_BASELINES",
    "BestGreedyParams",
    "TfliteBestGreedyParams",
    "solve_baseline",
    "solve_best_greedy",
]
