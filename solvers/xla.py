"""XLA-style memory space assignment (``xla-msa``), and the decision engine that
mallocGame plays.

XLA's default memory-space-assignment solver, as MISSION.md summarizes it: buffers are
split into *use segments* (definition -> first use, use -> use); buffers are taken in
decreasing order of a "memory-boundedness" score (then size); for each segment in time
order it tries to keep the buffer in fast memory at the same offset, else evicts it and
prefetches it back before the next use; offsets come from a best-fit heap. No search.

On our problem model the accelerator computes only on scratchpad tensors, so being
resident *at* a use step is compulsory; the choice is what happens *between* uses.
For a managed tensor with use steps ``u_0 < u_1 < ... < u_k`` (``u_0`` is the producing
step for an activation) the segments are ``(u_i, u_{i+1})`` and each gets one decision:

* **keep**: the tensor stays resident over steps ``u_i .. u_{i+1}`` at one offset. If
  the previous segment was kept the offset is fixed (a resident tensor cannot move);
  otherwise it is a fresh placement, offered at free gaps, best fit first (the smallest
  gap, then the lowest address): first the gaps free over the tensor's whole remaining
  lifetime (as XLA's heap tries the full live range, so later segments can stay put),
  then those free over the segment only;
* **evict**: the tensor leaves after ``u_i`` and is reloaded before ``u_{i+1}`` (an
  activation is spilled the first time). Touching residencies are legal: a tensor
  evicted after step ``t-1`` and reloaded for step ``t`` is relocated through DRAM.

Decisions never dead-end at any capacity >= ``M_R``. For every step ``t`` the engine
holds a *reservation*: an offset for each operand of ``t`` that no kept segment covers
yet, disjoint from everything committed at ``t``. A keep is legal only if its block
avoids the reservations of the steps it covers, or those reservations can be packed
again around it (first fit decreasing, top down, else bottom up). Evicting
commits nothing, so it is always legal, and initially one operator's operands fit in
any capacity >= ``M_R``. When all decisions are made, an operand still uncovered at
``t`` is resident over ``[t, t+1)`` at its reserved offset.

``MsaState`` is that engine: a snapshot-able game state with the legal choices of the
current decision. ``xla-msa`` plays it with XLA's rule (keep at the best fit if legal,
else evict); mallocGame's ``greedy_action`` plays the same rule through the env, so the
two give the same non-compulsory bytes (tests/test_env.py checks it).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Sequence

from cosma.core.analysis import is_topological, min_capacity, use_steps
from cosma.core.errors import UsageError
from cosma.core.interface import RunOptions, SolveResult, Status, register
from cosma.core.ir import Bytes, OpName, Plan, Problem, Residency, Step, TensorKind, TensorName
from cosma.core.prefetch import moved_loads, prefetch, prefetch_wanted

ORDERS = ("boundedness", "size", "time")
EVICT = -1  # choice index of the evict decision in ``MsaState.apply``


@dataclass(frozen=True)
class XlaParams:
    """Settings of the XLA-style memory space assignment."""

    # Order of the decisions. "boundedness": buffers by XLA's memory-boundedness score
    # (roofline cycles saved by keeping the buffer resident, over the square root of its
    # size), then decreasing size, each buffer's segments in time order; "size": buffers by
    # decreasing size; "time": all segments by start step (an online, step-by-step order).
    order: str = "boundedness"
    # When the best-fit offset (a gap's left end) would leave some step's uncovered
    # operands no room, also try the gap's right end and the tensor's own reserved
    # offsets, and repack reservations bottom-up as well as top-down. False: left ends
    # and top-down repacking only (fewer keeps at tight capacities).
    more_offsets: bool = True
    # Retime loads after assignment (``cosma.core.prefetch``: XLA's prefetch-interval picker on
    # the roofline): "auto" = on when the problem's objective is "latency", else off; "on"; "off".
    prefetch: str = "auto"
    # With prefetch: the most steps a load may start before its original start (0: no limit).
    prefetch_max_interval: int = 0


@dataclass(frozen=True)
class Candidate:
    """One legal keep choice for the current decision."""

    offset: Bytes  # where the block goes (fixed for an already resident tensor)
    gap: Bytes  # bytes of the free gap it was taken from (0 for an already resident tensor)
    repacks: tuple[tuple[Step, tuple[tuple[int, Bytes], ...]], ...]  # new reservations it forces


def default_schedule(problem: Problem) -> tuple[OpName, ...]:
    """The memory-aware list schedule (``cosma.schedules.orders``)."""
    from cosma.schedules.orders import memory_aware_schedule

    return tuple(memory_aware_schedule(problem))


def memory_boundedness(problem: Problem, schedule: Sequence[OpName]) -> dict[TensorName, float]:
    """XLA's sort score per managed tensor: roofline cycles saved by keeping it resident
    over all its segments (no reload before each later use, no spill), divided by the
    square root of its size (XLA's penalty on large buffers)."""
    graph, hw = problem.graph, problem.hardware
    compute = [graph.operators[graph.op_index[n]].macs / hw.macs_per_cycle for n in schedule]
    dma = [0.0] * len(schedule)  # compulsory bytes each step moves anyway
    uses = use_steps(problem, schedule)
    for t, steps in uses.items():
        kind = graph.tensors[t].kind
        if steps and kind in (TensorKind.INPUT, TensorKind.WEIGHT, TensorKind.OUTPUT):
            dma[steps[0]] += graph.tensors[t].size
    for step, name in enumerate(schedule):
        for t in graph.operators[graph.op_index[name]].inputs:
            if not problem.is_managed(t):
                dma[step] += graph.tensors[t].size

    def slowdown(step: Step, nbytes: Bytes) -> float:
        bw = hw.dram_bytes_per_cycle
        return max(compute[step], (dma[step] + nbytes) / bw) - max(compute[step], dma[step] / bw)

    out: dict[TensorName, float] = {}
    for t, steps in uses.items():
        size = graph.tensors[t].size
        benefit = sum(slowdown(u, size) for u in steps[1:])
        if graph.tensors[t].kind is TensorKind.ACTIVATION and len(steps) > 1:
            benefit += slowdown(steps[0], size)  # the spill it avoids
        out[t] = benefit / math.sqrt(max(size, 1))  # an empty tensor: as a 1-byte one
    return out


class MsaTables:
    """Everything about a (problem, schedule, order) that the game never changes:
    tensors, use steps, operands per step, the decision list and the initial reservations.
    Build once per instance; ``MsaState`` objects share it."""

    def __init__(self, problem: Problem, schedule: Sequence[OpName], order: str = "boundedness"):
        if order not in ORDERS:
            raise UsageError(f"unknown decision order {order!r}; known: {', '.join(ORDERS)}")
        if not is_topological(problem, schedule):
            raise UsageError("the schedule is not a topological order of the graph's operators")
        self.problem = problem
        self.schedule = tuple(schedule)
        self.order = order
        self.n_steps = len(schedule)
        self.capacity = problem.capacity
        self.alignment = problem.alignment
        self.feasible = min_capacity(problem) <= problem.capacity

        uses = use_steps(problem, schedule)
        graph = problem.graph
        self.names: list[TensorName] = [t for t in problem.managed_tensors if uses[t]]
        self.index = {t: i for i, t in enumerate(self.names)}
        self.uses: list[list[Step]] = [uses[t] for t in self.names]
        self.fp: list[Bytes] = [problem.footprint(t) for t in self.names]
        self.size: list[Bytes] = [graph.tensors[t].size for t in self.names]
        self.kind: list[TensorKind] = [graph.tensors[t].kind for t in self.names]
        self.is_act: list[bool] = [k is TensorKind.ACTIVATION for k in self.kind]
        self.operands: list[list[int]] = [[] for _ in range(self.n_steps)]
        for i, steps in enumerate(self.uses):
            for u in steps:
                self.operands[u].append(i)
        score = memory_boundedness(problem, schedule)
        self.score: list[float] = [score[t] for t in self.names]

        # The decisions: (tensor, segment number, a, b) with a, b consecutive use steps.
        if order == "time":
            segs = [(i, j, s[j], s[j + 1]) for i, s in enumerate(self.uses) for j in range(len(s) - 1)]
            segs.sort(key=lambda d: (d[2], -self.fp[d[0]], d[0], d[1]))
        else:
            if order == "boundedness":
                key = lambda i: (-self.score[i], -self.size[i], self.uses[i][0], i)  # noqa: E731
            else:
                key = lambda i: (-self.size[i], self.uses[i][0], i)  # noqa: E731
            segs = [
                (i, j, self.uses[i][j], self.uses[i][j + 1])
                for i in sorted(range(len(self.names)), key=key)
                for j in range(len(self.uses[i]) - 1)
            ]
        self.decisions: list[tuple[int, int, Step, Step]] = segs
        # Initial reservations: each step's operands packed into the empty scratchpad.
        self.initial_reserved: list[dict[int, Bytes]] = []
        if self.feasible:
            for t in range(self.n_steps):
                packed = _pack_top_down(self.operands[t], self.fp, [], self.capacity, self.alignment)
                assert packed is not None, "operands of one step exceed a capacity >= M_R"
                self.initial_reserved.append(dict(packed))


def _free_gaps(occupied: Sequence[tuple[Bytes, Bytes]], capacity: Bytes) -> list[list[Bytes]]:
    """The free ``[start, end)`` gaps between ``occupied`` (offset, end) blocks, ascending."""
    gaps: list[list[Bytes]] = []
    cursor = 0
    for off, end in sorted(occupied):
        if off > cursor:
            gaps.append([cursor, off])
        cursor = max(cursor, end)
    if capacity > cursor:
        gaps.append([cursor, capacity])
    return gaps


def _pack_top_down(
    items: Sequence[int], fp: Sequence[Bytes], occupied: Sequence[tuple[Bytes, Bytes]], capacity: Bytes, align: Bytes
) -> list[tuple[int, Bytes]] | None:
    """First fit decreasing into the free gaps between ``occupied`` (offset, end) blocks,
    highest gap first, each item at the top of its gap. None when something does not fit.
    Packing from the top keeps reservations away from best-fit keeps, which grow upward."""
    gaps = _free_gaps(occupied, capacity)
    gaps.reverse()
    out = []
    for i in sorted(items, key=lambda i: (-fp[i], i)):
        for g in gaps:
            off = (g[1] - fp[i]) // align * align
            if off >= g[0]:
                out.append((i, off))
                g[1] = off
                break
        else:
            return None
    return out


def _pack_bottom_up(
    items: Sequence[int], fp: Sequence[Bytes], occupied: Sequence[tuple[Bytes, Bytes]], capacity: Bytes, align: Bytes
) -> list[tuple[int, Bytes]] | None:
    """``_pack_top_down``'s mirror: lowest gap first, each item at the bottom of its gap."""
    gaps = _free_gaps(occupied, capacity)
    out = []
    for i in sorted(items, key=lambda i: (-fp[i], i)):
        for g in gaps:
            if g[0] + fp[i] <= g[1]:
                out.append((i, g[0]))
                g[0] += fp[i]
                break
        else:
            return None
    return out


class MsaState:
    """The mutable game state: committed blocks per step, reservations, residencies,
    the decision cursor and the bytes spent. ``clone`` snapshots it."""

    __slots__ = (
        "tables", "blocks", "reserved", "res", "cur", "evictions", "nc_bytes", "k", "_options", "_limit",
        "more_offsets", "all_offsets",
    )  # fmt: skip

    def __init__(self, tables: MsaTables, more_offsets: bool = True, all_offsets: bool = False):
        """``more_offsets``: besides a gap's lowest address, try its top and the tensor's own
        reserved offsets when the lowest does not fit. ``all_offsets``: offer every one of
        those that fits as a candidate of its own, not only the first (XLA's rule plays the
        first candidate either way; a player that looks ahead gains from the choice)."""
        if not tables.feasible:
            raise UsageError("capacity below M_R: no plan exists")
        self.tables = tables
        self.more_offsets = more_offsets
        self.all_offsets = all_offsets
        n = tables.n_steps
        self.blocks: list[list[tuple[Bytes, Bytes, int]]] = [[] for _ in range(n)]  # (offset, end, tensor)
        self.reserved: list[dict[int, Bytes]] = [dict(r) for r in tables.initial_reserved]
        self.res: list[list[int]] = []  # [tensor, start, end, offset] of kept residencies
        self.cur: list[int] = [-1] * len(tables.names)  # index in res of the residency open at the segment start
        self.evictions: list[int] = [0] * len(tables.names)
        self.nc_bytes: Bytes = 0  # non-compulsory bytes committed so far
        self.k = 0  # index of the current decision
        self._options: list[Candidate] | None = None  # legal keeps of the current decision, cached
        self._limit = 0  # how many ``_options`` were asked for

    # -- snapshots ---------------------------------------------------------------------
    def clone(self) -> "MsaState":
        other = object.__new__(MsaState)
        other.tables = self.tables
        other.more_offsets = self.more_offsets
        other.all_offsets = self.all_offsets
        other.blocks = [list(b) for b in self.blocks]
        other.reserved = [dict(r) for r in self.reserved]
        other.res = [list(r) for r in self.res]
        other.cur = list(self.cur)
        other.evictions = list(self.evictions)
        other.nc_bytes = self.nc_bytes
        other.k = self.k
        other._options = self._options
        other._limit = self._limit
        return other

    # -- the current decision ----------------------------------------------------------
    @property
    def done(self) -> bool:
        return self.k >= len(self.tables.decisions)

    @property
    def decision(self) -> tuple[int, int, Step, Step]:
        """(tensor index, segment number, start use step a, next use step b)."""
        return self.tables.decisions[self.k]

    def resident(self) -> bool:
        """Whether the current decision's tensor is already resident at the segment start."""
        return self.cur[self.decision[0]] >= 0

    def evict_cost(self) -> Bytes:
        """Bytes an eviction of the current segment adds: the reload, and the spill the
        first time an activation leaves."""
        i = self.decision[0]
        t = self.tables
        return t.size[i] * (2 if t.is_act[i] and self.evictions[i] == 0 else 1)

    def options(self, limit: int) -> list[Candidate]:
        """Up to ``limit`` legal keep choices, best fit first (cached per decision)."""
        if self._options is None or (limit > self._limit and len(self._options) >= self._limit):
            self._options = self._candidates(limit)
            self._limit = limit
        return self._options[:limit]

    def _candidates(self, limit: int) -> list[Candidate]:
        t = self.tables
        i, _, a, b = self.decision
        fp = t.fp[i]
        if self.cur[i] >= 0:  # already resident: only its own offset, over a+1..b
            off = self.res[self.cur[i]][3]
            end = off + fp
            for step in range(a + 1, b + 1):
                for o, e, _ in self.blocks[step]:
                    if o < end and off < e:
                        return []
            repacks = self._fits(i, off, a + 1, b)
            return [] if repacks is None else [Candidate(off, 0, repacks)]
        # Like XLA's heap, prefer a chunk free over the tensor's whole remaining lifetime,
        # so that later segments can stay at the same offset; then the segment's own gaps.
        last = t.uses[i][-1]
        out: list[Candidate] = []
        tried: set[Bytes] = set()
        for start, end in self._lifetime_then_segment_gaps(a, b, last, fp):
            offsets = [start]
            right = (end - fp) // t.alignment * t.alignment
            if self.more_offsets and right != start:
                offsets.append(right)
                # The tensor's own reserved offsets in this gap: no other operand moves there.
                own = (self.reserved[a].get(i), self.reserved[b].get(i))
                offsets.extend(o for o in own if o is not None and start <= o <= right)
            for off in offsets:
                if off in tried:
                    continue
                tried.add(off)
                repacks = self._fits(i, off, a, b)
                if repacks is not None:
                    out.append(Candidate(off, end - start, repacks))
                    if not self.all_offsets:
                        break
            if len(out) >= limit:
                break
        return out[:limit]

    def _lifetime_then_segment_gaps(self, a: Step, b: Step, last: Step, fp: Bytes):
        """The whole remaining lifetime's gaps, then the segment's: each list computed only
        when the candidates need it (the greedy rule, with one candidate, seldom needs the
        second)."""
        if last > b:
            yield from self._gaps(a, last, fp)
        yield from self._gaps(a, b, fp)

    def _gaps(self, lo: Step, hi: Step, fp: Bytes) -> list[tuple[Bytes, Bytes]]:
        """Gaps free of committed blocks at every step lo..hi that hold ``fp`` bytes,
        smallest first, then lowest address (best fit)."""
        # A block committed over many steps sits in each step's list: the union (built in C)
        # keeps one copy, which gives the same gaps without sorting every step's copy.
        occupied = sorted(set().union(*self.blocks[lo : hi + 1]))
        gaps = []
        cursor = 0
        for off, end, _ in occupied:
            if off - cursor >= fp:
                gaps.append((cursor, off))
            cursor = max(cursor, end)
        if self.tables.capacity - cursor >= fp:
            gaps.append((cursor, self.tables.capacity))
        gaps.sort(key=lambda g: (g[1] - g[0], g[0]))
        return gaps

    def _fits(self, i: int, off: Bytes, lo: Step, hi: Step):
        """Reservations to redo if tensor ``i`` takes [off, off+fp) over steps lo..hi, or
        None when some step's uncovered operands would no longer fit."""
        t = self.tables
        end = off + t.fp[i]
        fp = t.fp
        repacks = []
        for step in range(lo, hi + 1):
            for j, o in self.reserved[step].items():
                if j != i and o < end and off < o + fp[j]:
                    break
            else:
                continue
            others = [j for j in self.reserved[step] if j != i]
            occupied = [(o, e) for o, e, _ in self.blocks[step]]
            occupied.append((off, end))
            packed = _pack_top_down(others, fp, occupied, t.capacity, t.alignment)
            if packed is None and self.more_offsets:
                packed = _pack_bottom_up(others, fp, occupied, t.capacity, t.alignment)
            if packed is None:
                return None
            repacks.append((step, tuple(packed)))
        return tuple(repacks)

    # -- playing -----------------------------------------------------------------------
    def apply(self, choice: int) -> Bytes:
        """Play the current decision: ``EVICT`` (-1) or the index of a candidate from
        ``options``. Returns the non-compulsory bytes it added."""
        t = self.tables
        i, _, a, b = self.decision
        if choice == EVICT:
            cost = self.evict_cost()
            self.evictions[i] += 1
            self.cur[i] = -1
            self.nc_bytes += cost
        else:
            cand = self._options[choice]  # type: ignore[index]
            fp = t.fp[i]
            if self.cur[i] >= 0:
                r = self.res[self.cur[i]]
                r[2] = b + 1
                lo = a + 1
            else:
                self.cur[i] = len(self.res)
                self.res.append([i, a, b + 1, cand.offset])
                lo = a
            blk = (cand.offset, cand.offset + fp, i)
            for step in range(lo, b + 1):
                blocks = self.blocks[step]
                blocks.append(blk)
                blocks.sort()
                self.reserved[step].pop(i, None)
            for step, packed in cand.repacks:
                self.reserved[step] = dict(packed)
            cost = 0
        self.k += 1
        self._options = None
        return cost

    def plan(self) -> Plan:
        """The plan of a finished game: kept residencies plus one-step residencies at the
        reserved offsets for every operand no kept segment covers."""
        t = self.tables
        stays = [(s, i, e, o) for i, s, e, o in self.res]
        for step, reserved in enumerate(self.reserved):
            stays.extend((step, i, step + 1, o) for i, o in reserved.items())
        # ``make_plan``'s rule, applied while building (it is the hot end of every episode):
        # an activation with more than one residency is spilled at the end of its first.
        stays.sort()
        seen = [False] * len(t.names)
        out = []
        for s, i, e, o in stays:
            out.append(Residency(t.names[i], s, e, o, t.is_act[i] and self.evictions[i] > 0 and not seen[i]))
            seen[i] = True
        out.sort(key=lambda r: (r.start, r.tensor))
        return Plan(t.schedule, tuple(out))


def play_greedy(state: MsaState, deadline: float | None = None) -> MsaState:
    """XLA's rule on every remaining decision: keep at the best fit if legal, else evict.
    Past ``deadline`` (``time.perf_counter()``) every remaining decision evicts: a valid plan
    at once, without the search for a fitting gap."""
    while not state.done:
        if deadline is not None and time.perf_counter() > deadline:
            state.apply(EVICT)
        else:
            state.apply(0 if state.options(1) else EVICT)
    return state


@register("xla-msa", "XLA-style memory space assignment: use segments, best-fit heap, keep or evict", XlaParams)
def solve_xla(problem: Problem, params: XlaParams, options: RunOptions) -> SolveResult:
    started = time.perf_counter()
    deadline = None if options.time_limit is None else started + options.time_limit
    schedule = options.schedule or default_schedule(problem)
    tables = MsaTables(problem, schedule, params.order)
    state = play_greedy(MsaState(tables, params.more_offsets), deadline)
    if deadline is not None and time.perf_counter() > deadline:
        return SolveResult(Status.TIMEOUT, state.plan(), message="time limit: the last decisions evicted")
    stats = {
        "decisions": len(tables.decisions),
        "evictions": sum(state.evictions),
        "kept_residencies": len(state.res),
        "order": params.order,
    }
    plan = state.plan()
    if prefetch_wanted(params.prefetch, problem):
        retimed = prefetch(problem, plan, params.prefetch_max_interval or None)
        stats["prefetched_loads"] = moved_loads(plan, retimed)
        plan = retimed
    return SolveResult(Status.FEASIBLE, plan, stats=stats)


__all__ = [
    "ORDERS",
    "EVICT",
    "XlaParams",
    "Candidate",
    "default_schedule",
    "memory_boundedness",
    "MsaTables",
    "MsaState",
    "play_greedy",
    "solve_xla",
]
