"""Exact allocation: offsets for buffers with fixed lifetimes, or a proof that none fit.

The problem (``cosma.packing.PackingProblem``) is a rectangle packing with fixed
x-positions: every buffer is alive over a half-open time interval ``[lower, upper)``
and needs ``size`` contiguous bytes at one aligned offset; two buffers alive at the
same time must not share a byte; everything stays below ``capacity``. It is NP-hard in
general; the instances compilers produce mostly yield to a well-pruned search (see
``results/packing.md`` for MiniMalloc's "challenging" set, where the peak load equals
the capacity).

``pack`` tries, cheapest first, and stops at the first answer:

1. **Bounds.** A buffer larger than the capacity, or a time where the live bytes
   exceed it (``max_load``), proves infeasibility at once.
2. **The caller's hint**, when it already is a valid packing.
3. **Greedy best-fit** (TFLite's arena planner: by size, by area, by lifetime), which
   settles most instances that have some slack.
4. **Hole-filling depth-first search** (ours, in the family of MiniMalloc, Moffitt,
   ASPLOS'23, written in Python + numpy). Gravity turns any packing into one where
   every buffer sits at 0 or on top of a buffer alive at the same time, so only such
   packings are searched. Every unplaced buffer carries a lower bound on its offset; a
   time *section*'s floor is the least bound among its unplaced buffers. Each node
   takes one hole, the floor of a section at the bottom of a *well*, and branches on
   which buffer fills it, or that none does (then its buffers are lifted onto their
   unplaced neighbours and the space below becomes waste). The branches are disjoint
   and complete, so an exhausted tree is a proof. Pruning and speed:

   * *section inference* (MiniMalloc's): everything unplaced in a section stacks above
     its floor, so ``floor + unplaced bytes > capacity`` is a dead end; where the load
     equals the capacity no waste is allowed at all;
   * *units*: offsets of a gravity packing are sums of sizes, so the search counts in
     the gcd of the sizes (1 KiB on the MiniMalloc set), never byte by byte;
   * *dynamic decomposition* (MiniMalloc's): once no unplaced buffer crosses a section
     boundary the two sides are independent and are solved one after the other;
   * *restarts*: several strategies (buffer order x hole rule) round robin under a
     doubling node limit, with short runs of randomly jittered orders in between, the
     usual cure for heavy-tailed search times.

5. **CP-SAT** (``method="cpsat"``, or, in ``"auto"``, racing the search in a thread
   from the start: first answer wins, the other is stopped): time intervals fixed,
   offsets as variables under one no-overlap-2D, plus a redundant 1-D no-overlap per
   maximal time section and exact-tiling clauses in full sections, identical buffers
   ordered. The two are complementary: on MiniMalloc's set the search packs I, which
   CP-SAT does not within a minute, and CP-SAT packs E, which the search does not (K
   falls to either). It also cross-checks the search in the tests.

Every packing returned has been through ``cosma.packing.check_packing``.

Alignment is handled exactly by working in units of the alignment: a buffer of
``size`` bytes takes ``ceil(size / alignment)`` units (no two aligned buffers can share
the unit one of them ends in), and its highest allowed offset is
``floor((capacity - size) / alignment)`` units, so a buffer may end in the partial unit
at the top of an unaligned capacity.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from itertools import pairwise
from typing import Any

import numpy as np

from cosma.core.errors import UsageError
from cosma.core.interface import Status
from cosma.packing.problem import BufferId, PackingProblem, PackResult, best_fit, check_packing

# ---------------------------------------------------------------------------------
# Public types


@dataclass(frozen=True)
class PackParams:
    """How ``pack`` and ``minimize_height`` search. The defaults are the fast path;
    every switch exists so the tests and the benchmark can measure what it buys."""

    # "auto": greedy, then the hole-filling search racing CP-SAT (first answer wins);
    # "search": greedy then the search only; "cpsat": greedy then CP-SAT only.
    method: str = "auto"
    # In "auto", run CP-SAT in a thread alongside the search (its C++ solve releases the
    # GIL, so the two really run in parallel); off: the search alone. The two are
    # complementary on MiniMalloc's set: the search packs I, CP-SAT packs E.
    use_cpsat_fallback: bool = True
    # Try the greedy best-fit packings before any search.
    greedy_first: bool = True
    # Prune when a section's floor plus its unplaced bytes exceeds the capacity.
    section_inference: bool = True
    # Solve parts of time that no unplaced buffer spans independently of each other.
    dynamic_decomposition: bool = True
    # Search strategies, restarted round robin under a node limit that doubles each
    # round (the cure for heavy-tailed search times); one strategy: a single run without
    # limit. Each is "ORDER/HOLE". ORDER ranks the buffers tried at a hole, letters most
    # significant first, all descending except L: T = largest load among the buffer's
    # sections, W = lifetime width, A = area (size x width), Z = size, L = lower.
    # HOLE picks the hole: low = lowest floor (tightest section among equals), count =
    # lowest floor with fewest candidates, tight = the well holding the tightest
    # section, left = the leftmost well.
    strategies: tuple[str, ...] = (
        "TWA/low",
        "TWA/tight",
        "ZWA/count",
        "TAW/count",
        "ZWA/low",
        "WAT/tight",
        "TAW/tight",
        "ZWA/left",
    )
    # After each round of strategies, spend as many nodes again on short runs of
    # randomly jittered orders (seeded by ``seed``): they find packings the fixed orders
    # miss on MiniMalloc's hardest instances.
    random_restarts: bool = True
    # Node limit of each randomized run.
    random_limit: int = 2000
    # Nodes spent on randomized runs per node given to the fixed strategies in a round.
    random_share: float = 16.0
    # Spread of the jitter: each ranking key is scaled by exp(jitter * N(0, 1)).
    jitter: float = 0.5
    # CP-SAT workers (this machine has 2 cores shared with others). Racing the search
    # in "auto", CP-SAT gets one worker fewer (at least one): the search takes a core.
    cpsat_workers: int = 2
    # CP-SAT: order the offsets of buffers with identical lifetime and size.
    cpsat_symmetry_breaking: bool = True
    # CP-SAT: a redundant one-dimensional no-overlap on the offsets of the buffers of
    # each maximal time section (a clique of the interval graph); the no-overlap-2D
    # propagators alone reason about such a stack much more weakly. Needed for E.
    cpsat_section_no_overlap: bool = True
    # CP-SAT: in a section whose load equals the capacity the buffers tile the space
    # exactly, so each sits at 0 or right on top of another, and ends at the top or
    # right under another: both stated as clauses (a strong propagator for full stacks).
    cpsat_tight_support: bool = True
    # CP-SAT: hint the best greedy packing (too high, or it would have been returned).
    cpsat_greedy_hint: bool = False
    # Seed of the randomized restarts and of CP-SAT, for reproducible runs.
    seed: int = 0


def pack(
    problem: PackingProblem,
    params: PackParams = PackParams(),
    time_limit: float | None = None,
    hint: Mapping[BufferId, int] | None = None,
) -> PackResult:
    """Find offsets that pack ``problem`` within its capacity, or prove that none exist.

    ``time_limit`` is in seconds of wall time (None: until an answer). ``hint`` is a
    candidate packing (offsets in bytes): returned as is when valid, else given to
    CP-SAT as a starting point. Raises ``UsageError`` only for a malformed problem.
    """
    start = time.perf_counter()
    deadline = None if time_limit is None else start + time_limit
    inst = _Instance(problem)
    result = _pack(inst, params, deadline, hint)
    result.seconds = time.perf_counter() - start
    if result.offsets is not None:
        errors = check_packing(problem, result.offsets)
        if errors:  # a bug in this module, never something to hand on
            raise AssertionError(f"packer produced an invalid packing: {errors[:3]}")
    return result


def minimize_height(
    problem: PackingProblem, params: PackParams = PackParams(), time_limit: float | None = None
) -> PackResult:
    """The packing of least height, with ``problem.capacity`` as an upper limit.

    Bisects the height between the max-load lower bound and the best greedy height,
    each probe a ``pack`` call on the time left. OPTIMAL when the height is proven
    minimal; FEASIBLE (with ``bound``) when time ran out first; INFEASIBLE when nothing
    fits below the capacity. For the smallest height regardless of any scratchpad,
    pass a capacity at least the sum of the sizes.
    """
    start = time.perf_counter()
    deadline = None if time_limit is None else start + time_limit
    inst = _Instance(problem)
    first = _pack(inst, params, deadline, None)
    if first.status is not Status.OPTIMAL:
        first.seconds = time.perf_counter() - start
        return first
    best = first.offsets
    assert best is not None
    lo = max(inst.bound_bytes, 0)  # every packing is at least this high
    hi = first.height or 0  # a packing this high exists
    probes = 0
    stopped = ""
    while lo < hi:
        mid = (lo + hi) // 2
        probes += 1
        trial = _pack(_Instance(replace(problem, capacity=mid)), params, deadline, None)
        if trial.status is Status.OPTIMAL:
            assert trial.offsets is not None and trial.height is not None
            best, hi = trial.offsets, trial.height
        elif trial.status is Status.INFEASIBLE:
            lo = mid + 1
        else:
            stopped = trial.message
            break
    status = Status.OPTIMAL if lo >= hi else Status.FEASIBLE
    result = PackResult(
        status,
        dict(best),
        _height(problem, best),
        time.perf_counter() - start,
        {"probes": probes, "method": "bisection"},
        stopped,
        bound=min(lo, hi),
    )
    errors = check_packing(problem, best)
    if errors:
        raise AssertionError(f"packer produced an invalid packing: {errors[:3]}")
    return result


# ---------------------------------------------------------------------------------
# The instance, in units of the alignment, with its time sections


class _Instance:
    """The problem in arrays: sizes and caps in alignment units, time cut into sections.

    A *section* is a maximal time interval over which the set of live buffers does not
    change; buffer ``b`` is alive in sections ``lo[b] <= s < hi[b]``. Only the order of
    lifetime events matters to packing, so sections replace times everywhere.
    """

    def __init__(self, problem: PackingProblem):
        _check_problem(problem)
        self.problem = problem
        self.ids = [b.id for b in problem.buffers]
        a = problem.alignment
        sizes = np.array([b.size for b in problem.buffers], dtype=np.int64)
        units = -(-sizes // a)  # ceil(size / a)
        # Highest top (offset + units) each buffer may reach: floor((C - size) / a) + units.
        caps = (problem.capacity - sizes) // a + units
        # Pushed down by gravity, every buffer sits at 0 or on a neighbour, so offsets are
        # sums of sizes: multiples of their gcd. Counting in that unit loses no packing and
        # makes every step of the search (and CP-SAT's domains) that much coarser.
        g = int(np.gcd.reduce(units)) if len(units) else 1
        self.scale = a * g  # bytes per unit
        self.units = units // g
        self.caps = caps // g
        self.cap = int(self.caps.max()) if len(sizes) else 0  # for section sums
        times = sorted({t for b in problem.buffers for t in (b.lower, b.upper)})
        index = {t: i for i, t in enumerate(times)}
        self.lo = np.array([index[b.lower] for b in problem.buffers], dtype=np.int64)
        self.hi = np.array([index[b.upper] for b in problem.buffers], dtype=np.int64)
        self.sections = max(len(times) - 1, 0)
        self.times = times
        # Load per section (units) through a difference array.
        delta = np.zeros(self.sections + 1, dtype=np.int64)
        np.add.at(delta, self.lo, self.units)
        np.add.at(delta, self.hi, -self.units)
        self.load = np.cumsum(delta)[: self.sections]
        # Buffers alive at the same time as each buffer (sections overlap).
        n = len(sizes)
        if n:
            overlap = (self.lo[:, None] < self.hi[None, :]) & (self.lo[None, :] < self.hi[:, None])
            np.fill_diagonal(overlap, False)
            self.neighbours = [np.flatnonzero(row) for row in overlap]
        else:
            self.neighbours = []
        # Members of each section, for the unallocated floor.
        self.members = [[] for _ in range(self.sections)]
        for b in range(n):
            for s in range(int(self.lo[b]), int(self.hi[b])):
                self.members[s].append(b)
        # The same in CSR form: section s holds member_ids[member_ptr[s]:member_ptr[s + 1]].
        self.member_ptr = np.zeros(self.sections + 1, dtype=np.int64)
        self.member_ptr[1:] = np.cumsum([len(m) for m in self.members])
        self.member_ids = np.array([b for m in self.members for b in m], dtype=np.int64)

    @property
    def bound_bytes(self) -> int:
        """The max load of the sizes: no packing is lower than this."""
        return self.problem.max_load()

    def to_offsets(self, units: np.ndarray) -> dict[BufferId, int]:
        return {bid: int(u) * self.scale for bid, u in zip(self.ids, units)}


def _check_problem(problem: PackingProblem) -> None:
    if problem.alignment < 1:
        raise UsageError(f"alignment must be at least 1, got {problem.alignment}")
    if problem.capacity < 0:
        raise UsageError(f"capacity must not be negative, got {problem.capacity}")
    seen: set[BufferId] = set()
    for b in problem.buffers:
        if b.id in seen:
            raise UsageError(f"buffer id {b.id!r} appears twice")
        seen.add(b.id)
        if b.size <= 0 or b.lower >= b.upper:
            raise UsageError(f"buffer {b.id} has an empty lifetime [{b.lower}, {b.upper}) or size {b.size}")


def _height(problem: PackingProblem, offsets: Mapping[BufferId, int]) -> int:
    return max((offsets[b.id] + b.size for b in problem.buffers), default=0)


# ---------------------------------------------------------------------------------
# The pipeline


def _pack(
    inst: _Instance, params: PackParams, deadline: float | None, hint: Mapping[BufferId, int] | None
) -> PackResult:
    if params.method not in ("auto", "search", "cpsat"):
        raise UsageError(f"unknown packing method {params.method!r}; known: auto, search, cpsat")
    _parse_strategies(params.strategies)  # a typo is reported even when greedy settles it
    problem = inst.problem
    stats: dict[str, Any] = {"buffers": len(problem.buffers), "max_load": inst.bound_bytes}
    bound = inst.bound_bytes
    if not problem.buffers:
        return PackResult(Status.OPTIMAL, {}, 0, stats={**stats, "method": "empty"}, bound=0)

    # 1. Bounds that prove infeasibility at once.
    too_big = np.flatnonzero(inst.units > inst.caps)
    if too_big.size:
        b = problem.buffers[int(too_big[0])]
        return PackResult(
            Status.INFEASIBLE,
            None,
            None,
            stats={**stats, "method": "bound"},
            bound=bound,
            message=f"buffer {b.id} needs {b.size} bytes, more than the capacity {problem.capacity}",
        )
    peak = int(np.argmax(inst.load))
    if int(inst.load[peak]) > inst.cap:
        return PackResult(
            Status.INFEASIBLE,
            None,
            None,
            stats={**stats, "method": "bound"},
            bound=bound,
            message=(
                f"at time {inst.times[peak]} the live buffers need {int(inst.load[peak]) * inst.scale} bytes"
                f"{' of aligned footprints' if problem.alignment > 1 else ''},"
                f" more than the capacity {problem.capacity}"
            ),
        )

    # 2. The caller's packing, when it is one.
    if hint is not None and set(hint) >= set(inst.ids) and not check_packing(problem, hint):
        offsets = {bid: int(hint[bid]) for bid in inst.ids}
        return PackResult(
            Status.OPTIMAL, offsets, _height(problem, offsets), stats={**stats, "method": "hint"}, bound=bound
        )

    # 3. Greedy best-fit (also CP-SAT's hint).
    greedy_units = None
    if params.greedy_first or params.method == "cpsat":
        greedy_units, greedy_order = _best_greedy(inst)
        top = int(np.max(greedy_units + inst.units))
        stats["greedy_height"] = top * inst.scale
        if params.greedy_first and np.all(greedy_units + inst.units <= inst.caps):
            offsets = inst.to_offsets(greedy_units)
            return PackResult(
                Status.OPTIMAL,
                offsets,
                _height(problem, offsets),
                stats={**stats, "method": f"greedy-{greedy_order}"},
                bound=bound,
            )

    # 4. The hole-filling search, 5. CP-SAT: alone, or racing each other.
    race = params.method == "auto" and params.use_cpsat_fallback
    method = {"cpsat": "cpsat", "search": "search"}.get(params.method, "search+cpsat" if race else "search")
    cpsat: _CpsatRun | None = None
    try:
        if params.method == "cpsat":
            cpsat = _CpsatRun(inst, params, deadline, hint, greedy_units, params.cpsat_workers)
            cpsat.solve()
            outcome, units, cstats = cpsat.outcome()
            stats.update(cstats)
        else:
            if race:
                cpsat = _CpsatRun(inst, params, deadline, hint, greedy_units, max(1, params.cpsat_workers - 1))
                cpsat.start()
            outcome, units, sstats = _search(inst, params, deadline, stop=cpsat.answered if cpsat else None)
            stats.update(sstats)
            if cpsat is not None:
                cpsat.stop()  # a no-op when CP-SAT finished first
                if outcome is Status.TIMEOUT:  # stopped by CP-SAT's answer, or both out of time
                    outcome, units, cstats = cpsat.outcome()
                    stats.update(cstats)
                    if outcome is not Status.TIMEOUT:
                        method = "cpsat (race)"
                else:
                    stats["cpsat_status"] = "stopped"
                    method = "search (race)"
    except KeyboardInterrupt:
        if cpsat is not None:
            cpsat.stop()
        return PackResult(Status.TIMEOUT, None, None, stats=stats, bound=bound, message="interrupted (Ctrl-C)")
    stats["method"] = method
    if outcome is Status.OPTIMAL:
        assert units is not None
        offsets = inst.to_offsets(units)
        return PackResult(Status.OPTIMAL, offsets, _height(problem, offsets), stats=stats, bound=bound)
    if outcome is Status.INFEASIBLE:
        who = "CP-SAT" if method.startswith("cpsat") else "the search"
        return PackResult(
            Status.INFEASIBLE,
            None,
            None,
            stats=stats,
            bound=bound,
            message=f"{who} proved that no packing fits in {problem.capacity} bytes",
        )
    return PackResult(
        Status.TIMEOUT, None, None, stats=stats, bound=bound, message="time limit reached before a packing was found"
    )


# ---------------------------------------------------------------------------------
# Greedy best-fit


_GREEDY_ORDERS = {
    "size": lambda inst: np.lexsort((inst.lo, -(inst.hi - inst.lo), -inst.units)),
    "area": lambda inst: np.lexsort((inst.lo, -inst.units, -(inst.units * (inst.hi - inst.lo)))),
    "width": lambda inst: np.lexsort((inst.lo, -inst.units, -(inst.hi - inst.lo))),
}


def _best_greedy(inst: _Instance) -> tuple[np.ndarray, str]:
    """The lowest of the best-fit packings over a few buffer orders (offsets in units)."""
    best: tuple[int, np.ndarray, str] | None = None
    for name, order in _GREEDY_ORDERS.items():
        units = _best_fit(inst, order(inst))
        top = int(np.max(units + inst.units))
        if best is None or top < best[0]:
            best = (top, units, name)
    assert best is not None
    return best[1], best[2]


def _best_fit(inst: _Instance, order: Iterable[int]) -> np.ndarray:
    """TFLite's arena planner (``cosma.packing.problem.best_fit``) in alignment units."""
    offsets = np.full(len(inst.units), -1, dtype=np.int64)
    placed = np.zeros(len(inst.units), dtype=bool)
    for b in order:
        b = int(b)
        nb = inst.neighbours[b]
        nb = nb[placed[nb]]
        busy = zip(offsets[nb].tolist(), (offsets[nb] + inst.units[nb]).tolist())
        offsets[b] = best_fit(list(busy), int(inst.units[b]))
        placed[b] = True
    return offsets


# ---------------------------------------------------------------------------------
# The hole-filling depth-first search


_HIGH = np.iinfo(np.int64).max // 4  # "no unplaced buffer here", far above any capacity


class _NodeLimit(Exception):
    """This restart used up its node budget."""


class _Deadline(Exception):
    """The wall-clock deadline passed."""


def _ranks(inst: _Instance, order: str, rng: np.random.Generator | None = None, jitter: float = 0.0) -> np.ndarray:
    """Rank of each buffer under a static order (0 = first), ties by index.

    With ``rng``, every key is multiplied by ``exp(jitter * N(0, 1))`` per buffer: an
    order close to the static one, different enough to send a restart elsewhere.
    """
    width = inst.hi - inst.lo
    keys = {
        "T": lambda: -np.array([int(inst.load[a:b].max()) for a, b in zip(inst.lo, inst.hi)]),
        "W": lambda: -width,
        "A": lambda: -(width * inst.units),
        "Z": lambda: -inst.units,
        "L": lambda: inst.lo,
    }
    columns = [np.arange(len(inst.units))]
    for c in reversed(order):
        column = keys[c]()
        if rng is not None:
            column = column * np.exp(jitter * rng.standard_normal(len(column)))
        columns.append(column)
    perm = np.lexsort(columns)
    ranks = np.empty(len(perm), dtype=np.int64)
    ranks[perm] = np.arange(len(perm))
    return ranks


_HOLE_RULES = ("low", "count", "tight", "left")


def _parse_strategies(strategies: tuple[str, ...]) -> list[tuple[str, str]]:
    parsed = []
    for strategy in strategies or ("TWA/low",):
        order, _, hole = strategy.partition("/")
        hole = hole or "low"
        if not order or any(c not in "TWAZL" for c in order) or hole not in _HOLE_RULES:
            raise UsageError(
                f"bad search strategy {strategy!r}: expected ORDER/HOLE, ORDER of letters T W A Z L, "
                f"HOLE one of {', '.join(_HOLE_RULES)}"
            )
        parsed.append((order, hole))
    return parsed


def _search(
    inst: _Instance, params: PackParams, deadline: float | None, stop: threading.Event | None = None
) -> tuple[Status, np.ndarray | None, dict]:
    """Restarts under a node limit, as MiniMalloc does, with randomized ones in between.

    Each round runs every strategy with the round's limit (doubling from ``2n``), then,
    with ``random_restarts``, as many nodes again in short runs of jittered orders. Any
    run that finishes within its limit decides: a packing (OPTIMAL), or an exhausted
    tree, which is a proof (INFEASIBLE) whatever order it used. Else TIMEOUT (also
    when ``stop`` is set: a racing solver answered first).
    """
    strategies = _parse_strategies(params.strategies)
    ranks = {order: _ranks(inst, order) for order, _ in strategies}
    rng = np.random.default_rng(params.seed)
    n = len(inst.units)
    unlimited = len(strategies) == 1 and not params.random_restarts
    limit = None if unlimited else 2 * n
    stats: dict[str, Any] = {"nodes": 0, "restarts": 0}

    def attempt(
        rank: np.ndarray, hole: str, node_limit: int | None, name: str
    ) -> tuple[Status, np.ndarray | None] | None:
        run = _Dfs(inst, params, rank, hole, node_limit, deadline, stop)
        stats["restarts"] += 1
        try:
            found = run.solve()
        except (_NodeLimit, RecursionError):  # a path deeper than Python allows counts as a limit
            return None
        finally:
            stats["nodes"] += run.nodes
        stats.update(strategy=name, backtracks=run.backtracks)
        return (Status.OPTIMAL, run.solution) if found else (Status.INFEASIBLE, None)

    old_limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(old_limit, 20 * n + 5000))
    try:
        while True:
            for order, hole in strategies:
                outcome = attempt(ranks[order], hole, limit, f"{order}/{hole}")
                if outcome is not None:
                    return (*outcome, stats)
            if params.random_restarts and limit is not None:
                for _ in range(max(1, int(params.random_share * limit * len(strategies)) // params.random_limit)):
                    order, hole = strategies[int(rng.integers(len(strategies)))]
                    rank = _ranks(inst, order, rng, params.jitter)
                    outcome = attempt(rank, hole, params.random_limit, f"{order}/{hole} jittered")
                    if outcome is not None:
                        return (*outcome, stats)
            if limit is None:  # the one unlimited run went deeper than Python's recursion allows
                stats["gave_up"] = "recursion depth"
                return Status.TIMEOUT, None, stats
            limit *= 2
    except _Deadline:
        return Status.TIMEOUT, None, stats
    finally:
        sys.setrecursionlimit(old_limit)


class _Dfs:
    """One depth-first run under one static rank, one hole rule and one node budget.

    The search fills *holes*. Every unplaced buffer ``b`` carries a lower bound
    ``low[b]`` on its offset; a section's floor is the least bound among its unplaced
    buffers. At each node the floor ``f`` of a section ``s`` at the bottom of a well
    (see ``_hole``; the lowest floor is one) is the hole, and the two ways it can be in
    any packing are the branches:

    * some unplaced buffer alive in ``s`` sits exactly at ``f``: one branch per
      buffer whose bound is ``f`` (it fits there: placed neighbours end at or below
      its bound); placing it lifts its unplaced neighbours' bounds to its top;
    * none does: every unplaced buffer of ``s`` sits above ``f``. In a packing pushed
      down by gravity (every buffer at 0 or on top of a neighbour, which loses no
      generality) such a buffer rests on an *unplaced* neighbour (placed ones end at
      or below ``f``), so its bound jumps to the least ``low[e] + size[e]`` over its
      unplaced neighbours ``e``. Space below the new floor is waste.

    The branches are disjoint and cover every packing, so the search is complete and
    enumerates no packing twice. Pruning (section inference): the unplaced buffers of
    a section all sit between its floor and the capacity, so ``floor + their units >
    capacity`` is a dead end (in a section whose load equals the capacity, every
    waste branch dies at once). State is in numpy arrays, updated in place and
    restored on the way back up; ``cuts[s]`` counts unplaced buffers alive in both
    sections ``s`` and ``s + 1`` (zero: the two sides are independent).
    """

    def __init__(
        self,
        inst: _Instance,
        params: PackParams,
        rank: np.ndarray,
        hole_rule: str,
        limit: int | None,
        deadline: float | None,
        stop: threading.Event | None = None,
    ):
        self.inst = inst
        self.params = params
        self.rank = rank
        self.hole_rule = hole_rule
        self.limit = limit
        self.deadline = deadline
        self.stop = stop
        n, sections = len(inst.units), inst.sections
        self.offset = np.full(n, -1, dtype=np.int64)
        self.placed = np.zeros(n, dtype=bool)
        self.low = np.zeros(n, dtype=np.int64)
        self.total = inst.load.copy()
        cross = np.zeros(sections + 1, dtype=np.int64)  # buffers spanning s -> s+1
        np.add.at(cross, inst.lo, 1)
        np.add.at(cross, inst.hi - 1, -1)
        self.cuts = np.cumsum(cross)[:sections]
        self.solution = np.full(n, -1, dtype=np.int64)
        self.nodes = 0
        self.backtracks = 0

    def solve(self) -> bool:
        everyone = np.arange(len(self.inst.units))
        return self._solve_parts(everyone, 0, self.inst.sections)

    def _solve_parts(self, buffers: np.ndarray, s0: int, s1: int) -> bool:
        """Split ``[s0, s1)`` where no unplaced buffer crosses a boundary, solve each part."""
        free = buffers[~self.placed[buffers]]
        if free.size == 0:
            return True
        if not self.params.dynamic_decomposition:
            return self._dfs(free, s0, s1)
        zero = np.flatnonzero(self.cuts[s0 : s1 - 1] == 0) + s0 + 1  # sections starting a new part
        if zero.size == 0:
            return self._dfs(free, s0, s1)
        bounds = [s0, *zero.tolist(), s1]
        part_of = np.searchsorted(zero, self.inst.lo[free], side="right")
        for p in range(len(bounds) - 1):
            members = free[part_of == p]
            if members.size and not self._dfs(members, bounds[p], bounds[p + 1]):
                return False
        return True

    def _floors(self, s0: int, s1: int) -> np.ndarray:
        """Per section of ``[s0, s1)``: the least bound of its unplaced buffers (``_HIGH`` if none)."""
        inst = self.inst
        bound = np.where(self.placed, _HIGH, self.low)
        start, stop = int(inst.member_ptr[s0]), int(inst.member_ptr[s1])
        lows = np.append(bound[inst.member_ids[start:stop]], _HIGH)  # reduceat: a value past empty sections
        floors = np.minimum.reduceat(lows, inst.member_ptr[s0:s1] - start)
        floors[self.total[s0:s1] == 0] = _HIGH
        return floors

    def _hole(self, floors: np.ndarray, slack: np.ndarray, s0: int) -> tuple[int, int]:
        """Pick the hole: a section (index into ``floors``) and its floor.

        Any *well* will do: a maximal run of sections at one floor whose neighbours on
        both sides are higher. A buffer that can sit at the well's floor lies inside the
        well, so every unplaced buffer alive with it is at or above that floor, and
        placing it there lifts them. The rules (``_HOLE_RULES``) differ in which well.
        """
        if self.hole_rule in ("low", "count"):
            f = int(floors.min())
            lowest = np.flatnonzero(floors == f)
            if self.hole_rule == "count" and lowest.size > 1:
                counts = [self._candidates(int(q) + s0, f).size for q in lowest]
                best = np.lexsort((slack[lowest], counts))[0]
                return int(lowest[best]), f
            return int(lowest[np.argmin(slack[lowest])]), f
        padded = np.concatenate(([_HIGH], floors, [_HIGH]))
        starts = np.flatnonzero(padded[1:-1] != padded[:-2])  # first section of each run
        ends = np.r_[starts[1:], len(floors)]  # one past its last
        level = floors[starts]
        wells = (padded[starts] > level) & (padded[ends + 1] > level) & (level < _HIGH)
        if self.hole_rule == "left":
            w = int(np.flatnonzero(wells)[0])
            lo, hi = int(starts[w]), int(ends[w])
            s = lo + int(np.argmin(slack[lo:hi]))
        else:  # "tight": the well holding the tightest section
            in_well = wells[np.repeat(np.arange(len(starts)), ends - starts)]
            s = int(np.flatnonzero(in_well)[np.argmin(slack[in_well])])
        return s, int(floors[s])

    def _candidates(self, s: int, f: int) -> np.ndarray:
        """Unplaced buffers alive in section ``s`` whose bound is ``f``."""
        inst = self.inst
        members = inst.member_ids[inst.member_ptr[s] : inst.member_ptr[s + 1]]
        members = members[~self.placed[members]]
        return members[self.low[members] == f]

    def _dfs(self, buffers: np.ndarray, s0: int, s1: int) -> bool:
        """Place the unplaced ``buffers`` (all alive within sections ``[s0, s1)``)."""
        self.nodes += 1
        if self.limit is not None and self.nodes > self.limit:
            raise _NodeLimit
        if (self.nodes & 31) == 0 and (
            (self.deadline is not None and time.perf_counter() > self.deadline)
            or (self.stop is not None and self.stop.is_set())
        ):
            raise _Deadline
        inst, params = self.inst, self.params
        free = buffers[~self.placed[buffers]]
        if free.size == 0:
            self.solution[buffers] = self.offset[buffers]
            return True
        low = self.low
        if np.any(low[free] + inst.units[free] > inst.caps[free]):
            self.backtracks += 1
            return False
        floors = self._floors(s0, s1)
        total = self.total[s0:s1]
        # Room left above each section's unplaced buffers; negative: they cannot fit.
        slack = np.where(total > 0, inst.cap - floors - total, _HIGH)
        if params.section_inference and np.any(slack < 0):
            self.backtracks += 1
            return False
        s, f = self._hole(floors, slack, s0)
        s += s0
        members = inst.member_ids[inst.member_ptr[s] : inst.member_ptr[s + 1]]
        members = members[~self.placed[members]]
        candidates = members[low[members] == f]
        candidates = candidates[np.argsort(self.rank[candidates], kind="stable")]
        total_all, cuts = self.total, self.cuts
        for c in candidates.tolist():
            top = f + int(inst.units[c])
            size = int(inst.units[c])
            lo, hi = int(inst.lo[c]), int(inst.hi[c])
            nb = inst.neighbours[c]
            self.placed[c] = True
            self.offset[c] = f
            saved = low[nb]
            low[nb] = np.maximum(saved, top)
            total_all[lo:hi] -= size
            if params.dynamic_decomposition and hi - lo > 1:
                cuts[lo : hi - 1] -= 1
                if np.any(cuts[max(lo, s0) : min(hi - 1, s1 - 1)] == 0):
                    found = self._solve_parts(buffers, s0, s1)
                else:
                    found = self._dfs(buffers, s0, s1)
                cuts[lo : hi - 1] += 1
            else:
                found = self._dfs(buffers, s0, s1)
            total_all[lo:hi] += size
            low[nb] = saved
            self.placed[c] = False
            self.offset[c] = -1
            if found:
                self.solution[c] = f
                return True
        # Nothing sits at f in section s: lift its buffers onto their unplaced neighbours.
        if slack[s - s0] > 0 or not params.section_inference:
            lifted = members[low[members] == f]
            saved = low[lifted]
            for b in lifted.tolist():
                nb = inst.neighbours[b]
                nb = nb[~self.placed[nb]]
                low[b] = max(f + 1, int((low[nb] + inst.units[nb]).min())) if nb.size else _HIGH
            found = self._dfs(buffers, s0, s1)
            low[lifted] = saved
            if found:
                return True
        self.backtracks += 1
        return False


# ---------------------------------------------------------------------------------
# CP-SAT


class _CpsatRun:
    """One CP-SAT solve: offsets as variables over fixed time intervals.

    The model: one no-overlap-2D over (fixed time interval, offset interval) boxes;
    optionally a redundant 1-D no-overlap per maximal section and exact-tiling clauses
    in full sections (see ``PackParams``); identical buffers ordered; the caller's
    packing or the greedy one as hint. Built in the caller's thread; ``solve`` runs in
    it too, or ``start`` runs it in a thread that ``stop`` interrupts. ``answered`` is
    set when the solve ends with a verdict (packing or proof), which is how a racing
    search learns it should stop; an UNKNOWN end leaves the search running.
    """

    def __init__(
        self,
        inst: _Instance,
        params: PackParams,
        deadline: float | None,
        hint: Mapping[BufferId, int] | None,
        greedy_units: np.ndarray | None,
        workers: int,
    ):
        from ortools.sat.python import cp_model

        self.inst = inst
        self.deadline = deadline
        self.answered = threading.Event()
        self.cancelled = False
        self.code: Any = None
        self.thread: threading.Thread | None = None
        n = len(inst.units)
        model = cp_model.CpModel()
        # Variables: the offset of each buffer (units) and its two intervals.
        y = [model.new_int_var(0, int(inst.caps[b] - inst.units[b]), f"y{b}") for b in range(n)]
        x_iv = [
            model.new_fixed_size_interval_var(int(inst.lo[b]), int(inst.hi[b] - inst.lo[b]), f"x{b}") for b in range(n)
        ]
        y_iv = [model.new_fixed_size_interval_var(y[b], int(inst.units[b]), f"yi{b}") for b in range(n)]
        # Constraints: no two buffers share a section and a unit.
        model.add_no_overlap_2d(x_iv, y_iv)
        if params.cpsat_section_no_overlap or params.cpsat_tight_support:
            for s in _maximal_sections(inst):
                members = inst.members[s]
                if len(members) < 2:
                    continue
                if params.cpsat_section_no_overlap:
                    model.add_no_overlap([y_iv[b] for b in members])
                if params.cpsat_tight_support and int(inst.load[s]) == inst.cap:
                    for b in members:
                        others = [c for c in members if c != b]
                        size = int(inst.units[b])
                        below = [_implied(model, y[b] == 0)]
                        below += [_implied(model, y[b] == y[c] + int(inst.units[c])) for c in others]
                        above = [_implied(model, y[b] + size == inst.cap)]
                        above += [_implied(model, y[b] + size == y[c]) for c in others]
                        model.add_bool_or(below)
                        model.add_bool_or(above)
        if params.cpsat_symmetry_breaking:
            groups: dict[tuple[int, int, int], list[int]] = {}
            for b in range(n):
                groups.setdefault((int(inst.lo[b]), int(inst.hi[b]), int(inst.units[b])), []).append(b)
            for members in groups.values():
                for p, q in pairwise(members):
                    model.add(y[p] + int(inst.units[p]) <= y[q])
        # Hint: the caller's packing if any; else the greedy one, only when asked: it
        # reaches above the capacity (else ``pack`` would have returned it), and on
        # MiniMalloc's E such a hint slows CP-SAT from seconds to a timeout.
        if hint is not None and all(bid in hint for bid in inst.ids):
            start = [int(hint[bid]) // inst.scale for bid in inst.ids]
        elif greedy_units is not None and params.cpsat_greedy_hint:
            start = greedy_units.tolist()
        else:
            start = None
        if start is not None:
            for b in range(n):
                model.add_hint(y[b], int(start[b]))
        self.model, self.y = model, y
        self.solver = cp_model.CpSolver()
        self.solver.parameters.num_workers = max(1, workers)
        self.solver.parameters.random_seed = params.seed
        # Ctrl-C belongs to the caller (``pack`` turns it into TIMEOUT), not to OR-Tools.
        self.solver.parameters.catch_sigint_signal = False

    def solve(self) -> None:
        from ortools.sat.python import cp_model

        if self.deadline is not None:
            self.solver.parameters.max_time_in_seconds = max(self.deadline - time.perf_counter(), 0.01)
        if not self.cancelled:  # ``stop`` may come before the thread starts
            self.code = self.solver.solve(self.model)
        if self.code in (cp_model.OPTIMAL, cp_model.FEASIBLE, cp_model.INFEASIBLE):
            self.answered.set()

    def start(self) -> None:
        self.thread = threading.Thread(target=self.solve, name="cosma-packer-cpsat", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        """Interrupt a solve running in its thread and wait for it."""
        self.cancelled = True
        if self.thread is None:
            return
        while self.thread.is_alive():
            self.solver.stop_search()  # repeated: it is lost if it comes before the solve begins
            self.thread.join(timeout=0.05)

    def outcome(self) -> tuple[Status, np.ndarray | None, dict]:
        from ortools.sat.python import cp_model

        code = self.code
        if code is None:
            return Status.TIMEOUT, None, {"cpsat_status": "not run"}
        solver = self.solver
        stats = {
            "cpsat_status": solver.status_name(code),
            "cpsat_seconds": solver.wall_time,
            "cpsat_conflicts": solver.num_conflicts,
        }
        if code in (cp_model.OPTIMAL, cp_model.FEASIBLE):
            return Status.OPTIMAL, np.array([solver.value(v) for v in self.y], dtype=np.int64), stats
        if code == cp_model.INFEASIBLE:
            return Status.INFEASIBLE, None, stats
        return Status.TIMEOUT, None, stats


def _implied(model: Any, constraint: Any) -> Any:
    """A new literal that, when true, enforces ``constraint``."""
    literal = model.new_bool_var("")
    model.add(constraint).only_enforce_if(literal)
    return literal


def _maximal_sections(inst: _Instance) -> list[int]:
    """Sections whose set of live buffers is contained in neither neighbour's: the
    maximal cliques of the interval graph (a buffer starts right before, one ends right
    after), so their stacks imply every other section's."""
    found = []
    for s in range(inst.sections):
        here = inst.members[s]
        if not here:
            continue
        left_ok = s == 0 or not set(here) <= set(inst.members[s - 1])
        right_ok = s + 1 == inst.sections or not set(here) <= set(inst.members[s + 1])
        if left_ok and right_ok:
            found.append(s)
    return found


__all__ = ["PackParams", "PackResult", "minimize_height", "pack"]
