"""Online scratchpad allocation with replacement along a fixed schedule.

This is what compilers do today (COSMA's baselines): walk the schedule one step at a
time, never looking back, and

1. free every tensor right after its last use;
2. place the operands of the current operator that are not resident (first loads of
   graph inputs and weights, reloads of evicted tensors, new activations) with a
   **best-fit arena** (TFLite's arena planner: the smallest free gap among the tensors
   resident now that fits the footprint). TFLite puts the block at the gap's low end;
   by default (``side_aware_fit``) it goes beside the neighbour that lives longer, so
   the leftover merges with the space the other neighbour frees soon: on the zoo models
   this cuts the baselines' traffic about fourfold, and a baseline should be the best
   version of what compilers do, not a straw man;
3. when no gap fits, **evict** resident tensors the current operator does not use, as
   an eviction ``Policy`` chooses, until one fits. An evicted tensor is reloaded just
   before its next use, at whatever offset the arena then gives it (a new residency;
   ``cosma.core.analysis.make_plan`` marks an activation's first residency as spilled).

Policies:

* ``BELADY``: evict the tensor whose next use is furthest in the future;
* ``LRU``: evict the least recently used tensor;
* ``GREEDY``: evict the set of tensors that frees a large enough *contiguous* gap for
  the fewest spill-plus-reload bytes. Only runs of residents adjacent in the address
  space can open one gap, so the search scans windows of adjacent residents with two
  pointers (linear in the number of residents) instead of trying subsets.

Belady and LRU pick victims one at a time by their own order; with ``lazy_eviction``
(the default) a victim the final placement does not overlap stays resident, since
evicting it would cost traffic and gain nothing.

**Fallback, so every capacity >= M_R works.** Operands resident from earlier steps
cannot move while resident, so fragmentation among them can leave no gap for the rest
even after every other tensor is evicted. Then operands may be *relocated* through DRAM
(the residency ends after step ``t-1`` and a new one starts at ``t`` elsewhere: charged
as a reload, plus the spill once for an activation), in two tiers:

1. the cheapest window of earlier residents, operands included, is evicted for each
   operand that still finds no gap, and the moved operands are placed again;
2. if the operands placed at this step themselves fragment the space, all operands are
   packed contiguously at the bottom or the top of the scratchpad, whichever moves
   fewer bytes. They fit: their total is at most ``M_R``.

**A deadline.** The walk is linear in the steps but each placement and eviction scans the
residents: a minute on a 20k-operator RandWire graph. Past a deadline every resident is
evicted and each remaining step holds only its operands, side by side from offset 0: a
valid plan (the capacity is at least ``M_R``), returned at once.
"""

from __future__ import annotations

import bisect
import enum
import heapq
import time
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np

from cosma.core.analysis import make_plan, use_steps
from cosma.core.ir import Bytes, Operator, OpName, Plan, Problem, Residency, Step, TensorKind, TensorName


class Policy(str, enum.Enum):
    """Which resident tensors to evict when the arena has no gap for a new one."""

    BELADY = "belady"  # furthest next use first (optimal for equal sizes, not for mixed ones)
    GREEDY = "greedy"  # the cheapest window of adjacent residents that opens a large enough gap
    LRU = "lru"  # least recently used first (reference)


@dataclass(frozen=True)
class ArenaParams:
    """Switches of the online allocator; every baseline runs with the defaults."""

    # Place one step's new tensors in decreasing footprint (big blocks first fragment
    # less); False: in operand order (inputs, then outputs).
    place_largest_first: bool = True
    # Belady/LRU: of the victims picked until a gap opens, evict only those the new
    # tensor's placement overlaps (placement slid within the opened range to overlap the
    # fewest victim bytes). False: the textbook loop, every picked victim is evicted.
    lazy_eviction: bool = True
    # Within the best-fit gap, place a block beside the longer-lived neighbour (so the
    # leftover merges with space freed soon); False: at the gap's low end, as TFLite.
    side_aware_fit: bool = True


@dataclass(frozen=True)
class OnlineResult:
    plan: Plan
    evictions: int  # residencies ended early for space (relocations included)
    evicted_bytes: Bytes  # data bytes of those residencies
    relocations: int  # resident operands moved through DRAM by the fallback
    fallback_steps: int  # steps at which the operands needed the fallback (relocations)
    stopped_at: Step | None = None  # the step where the deadline passed (operands only from there)


@dataclass
class _Block:
    """A tensor resident now: its footprint at ``offset`` since step ``start``."""

    tensor: TensorName
    offset: Bytes
    size: Bytes  # footprint (size rounded up to the alignment)
    start: Step

    @property
    def end(self) -> Bytes:
        return self.offset + self.size


class _Arena:
    """The tensors resident at the current step, kept sorted by offset."""

    def __init__(self, capacity: Bytes):
        self.capacity = capacity
        self.blocks: list[_Block] = []
        # Parallel to ``blocks``: each block's offset and end, as arrays, so that best_fit is one
        # vector pass (thousands of blocks are resident at once on a 20k-operator RandWire
        # graph, and it runs at every placement: a Python scan took half of best-greedy's time).
        self._offsets = np.zeros(0, dtype=np.int64)
        self._ends = np.zeros(0, dtype=np.int64)
        self.by_tensor: dict[TensorName, _Block] = {}

    def __contains__(self, tensor: TensorName) -> bool:
        return tensor in self.by_tensor

    def add(self, block: _Block) -> None:
        i = int(np.searchsorted(self._offsets, block.offset, side="left"))
        self.blocks.insert(i, block)
        self._offsets = np.insert(self._offsets, i, block.offset)
        self._ends = np.insert(self._ends, i, block.end)
        self.by_tensor[block.tensor] = block

    def remove(self, tensor: TensorName) -> _Block:
        block = self.by_tensor.pop(tensor)
        i = self.index(block)
        del self.blocks[i]
        self._offsets = np.delete(self._offsets, i)
        self._ends = np.delete(self._ends, i)
        return block

    def index(self, block: _Block) -> int:
        i = int(np.searchsorted(self._offsets, block.offset, side="left"))
        while self.blocks[i] is not block:  # several blocks share an offset only if one is empty: never
            i += 1
        return i

    def left(self, i: int) -> Bytes:
        """Lowest free byte before ``blocks[i]`` if blocks ``i..`` were gone."""
        return self.blocks[i - 1].end if i > 0 else 0

    def right(self, j: int) -> Bytes:
        """First used byte at or after ``blocks[j]`` (the capacity past the last block)."""
        return self.blocks[j].offset if j < len(self.blocks) else self.capacity

    def best_fit(self, size: Bytes) -> int | None:
        """Index ``j`` of the smallest free gap ``[left(j), right(j))`` that holds ``size``
        bytes (the lowest on ties), or None."""
        gaps = np.append(self._offsets, self.capacity)
        gaps[1:] -= self._ends
        gaps[gaps < size] = np.iinfo(np.int64).max
        j = int(np.argmin(gaps))
        return None if gaps[j] == np.iinfo(np.int64).max else j


class _Allocator:
    """One run of the online allocator over one schedule (state of the walk)."""

    def __init__(self, problem: Problem, schedule: Sequence[OpName], policy: Policy, params: ArenaParams):
        self.problem = problem
        self.schedule = tuple(schedule)
        self.policy = policy
        self.params = params
        self.graph = problem.graph
        self.arena = _Arena(problem.capacity)
        self.uses = use_steps(problem, self.schedule)  # sorted steps each tensor must be resident at
        self.dying: dict[Step, list[TensorName]] = {}  # last use step -> tensors
        for t, steps in self.uses.items():
            if steps:
                self.dying.setdefault(steps[-1], []).append(t)
        self.last_used: dict[TensorName, Step] = {}  # for LRU
        self._next_cache: dict[TensorName, Step | None] = {}  # for Belady: see _next_use_cached
        self.in_dram: set[TensorName] = set()  # activations already written back once
        self.residencies: list[Residency] = []
        self.evictions = self.evicted_bytes = self.relocations = self.fallback_steps = 0

    # ------------------------------------------------------------------ the walk

    def run(self, deadline: float | None = None) -> OnlineResult:
        stopped = None
        for t, name in enumerate(self.schedule):
            for tensor in self.dying.get(t - 1, ()):
                if tensor in self.arena:
                    self._close(self.arena.remove(tensor), t)
            if deadline is not None and time.perf_counter() > deadline:
                stopped = t
                self._operands_only(t)
                break
            self._step(t, self.graph.operators[self.graph.op_index[name]])
        else:
            end = len(self.schedule)
            for tensor in self.dying.get(end - 1, ()):
                if tensor in self.arena:
                    self._close(self.arena.remove(tensor), end)
        assert not self.arena.blocks, "a tensor stayed resident past its last use"
        plan = make_plan(self.problem, self.schedule, self.residencies)
        return OnlineResult(plan, self.evictions, self.evicted_bytes, self.relocations, self.fallback_steps, stopped)

    def _operands_only(self, t: Step) -> None:
        """From step ``t`` on: every resident evicted (each has a use at ``t`` or later),
        and at each step only its operands, side by side from offset 0."""
        for block in list(self.arena.blocks):
            self._evict(block.tensor, t)
        footprint = self.problem.footprint
        for s in range(t, len(self.schedule)):
            op = self.graph.operators[self.graph.op_index[self.schedule[s]]]
            at = 0
            for x in dict.fromkeys(self.problem.operands(op)):
                self.residencies.append(Residency(x, s, s + 1, at))
                at += footprint(x)

    def _step(self, t: Step, op: Operator) -> None:
        operands = self.problem.operands(op)
        pinned = set(operands)
        missing = [x for x in operands if x not in self.arena]
        if self.params.place_largest_first:
            missing.sort(key=lambda x: -self.problem.footprint(x))  # stable: operand order on ties
        for tensor in missing:
            if not self._place(t, tensor, pinned):
                self.fallback_steps += 1
                if not self._relocate_cheapest(t, operands):
                    self._pack_operands(t, operands)
                break
        for x in operands:
            self.last_used[x] = t

    def _place(self, t: Step, tensor: TensorName, pinned: set[TensorName]) -> bool:
        """Put ``tensor`` in the arena from step ``t``, evicting per the policy; False if
        even evicting every non-operand opens no gap."""
        size = self.problem.footprint(tensor)
        offset = self._fit(size)
        if offset is None:
            if self.policy is Policy.GREEDY:
                offset = self._evict_cheapest_window(t, size, pinned)
            else:
                offset = self._evict_in_order(t, size, pinned)
        if offset is None:
            return False
        self.arena.add(_Block(tensor, offset, size, t))
        return True

    def _fit(self, size: Bytes) -> Bytes | None:
        """Offset for ``size`` bytes in the best-fit gap, or None if no gap holds it.

        TFLite puts a block at the low end of its gap. With ``side_aware_fit`` the block
        goes to the end of the gap beside the neighbour that lives longer (the walls of
        the scratchpad live forever), so the gap's leftover joins the space the
        shorter-lived neighbour frees."""
        j = self.arena.best_fit(size)
        if j is None:
            return None
        lo, hi = self.arena.left(j), self.arena.right(j)
        if not self.params.side_aware_fit or hi - lo == size:
            return lo
        blocks = self.arena.blocks
        forever = len(self.schedule)
        below = self.uses[blocks[j - 1].tensor][-1] if j > 0 else forever
        above = self.uses[blocks[j].tensor][-1] if j < len(blocks) else forever
        if below < above:
            a = self.problem.alignment
            return (hi - size) // a * a
        return lo

    # ------------------------------------------------------------------ eviction

    def _next_use(self, tensor: TensorName, t: Step) -> Step | None:
        steps = self.uses[tensor]
        i = bisect.bisect_left(steps, t)
        return steps[i] if i < len(steps) else None

    def _eviction_cost(self, tensor: TensorName, t: Step) -> Bytes:
        """Traffic an eviction at step ``t`` causes: the reload, plus the one spill of an
        activation not yet in DRAM; 0 for a tensor never used again."""
        steps = self.uses[tensor]
        if not steps or steps[-1] < t:  # no use at or after t (the uses are sorted)
            return 0
        data = self.graph.tensors[tensor]
        spill = data.size if data.kind is TensorKind.ACTIVATION and tensor not in self.in_dram else 0
        return data.size + spill

    def _evict(self, tensor: TensorName, t: Step) -> None:
        block = self.arena.remove(tensor)
        assert block.start < t, f"evicting {tensor} placed at the current step {t}"
        self._close(block, t)
        self.evictions += 1
        self.evicted_bytes += self.graph.tensors[tensor].size
        if self.graph.tensors[tensor].kind is TensorKind.ACTIVATION:
            self.in_dram.add(tensor)

    def _close(self, block: _Block, end: Step) -> None:
        self.residencies.append(Residency(block.tensor, block.start, end, block.offset))

    def _evict_cheapest_window(self, t: Step, size: Bytes, pinned: set[TensorName]) -> Bytes | None:
        """GREEDY (and the fallback): evict the run of adjacent residents, none in
        ``pinned``, that opens a gap of ``size`` bytes for the fewest spill-plus-reload
        bytes; return the gap's offset, or None when no run opens one.

        Window ``blocks[i:j]`` opens the gap ``[left(i), right(j))``. For each ``i`` the
        smallest such ``j`` is the cheapest (costs are non-negative), and it never moves
        left as ``i`` grows, hence two pointers. Ties: fewer evicted bytes, then the
        tighter gap (best fit), then the lower offset.
        """
        arena, blocks = self.arena, self.arena.blocks
        m = len(blocks)
        # arena.left(i) and arena.right(j) as plain lists (this scan runs at every eviction,
        # over thousands of residents on 20k-operator graphs).
        left = [0, *arena._ends.tolist()]
        right = [*arena._offsets.tolist(), arena.capacity]
        held = [b.tensor in pinned for b in blocks]
        cost = [0]  # prefix sums over blocks
        freed = [0]
        eviction_cost = self._eviction_cost
        for b in blocks:
            cost.append(cost[-1] + eviction_cost(b.tensor, t))
            freed.append(freed[-1] + b.size)
        best: tuple[Bytes, Bytes, Bytes, Bytes, int, int] | None = None
        i = j = 0
        while i < m:
            if held[i]:
                i += 1
                continue
            j = max(j, i + 1)
            lo = left[i]
            while right[j] - lo < size and j < m and not held[j]:
                j += 1
            if right[j] - lo < size:
                # Stopped by an operand or the end of memory: no window starting in i..j-1 fits.
                i = j + 1
                continue
            key = (cost[j] - cost[i], freed[j] - freed[i], right[j] - lo, lo, i, j)
            if best is None or key < best:
                best = key
            i += 1
        if best is None:
            return None
        *_, offset, i, j = best
        for b in list(blocks[i:j]):
            self._evict(b.tensor, t)
        return offset

    def _victim_order(self, t: Step, pinned: set[TensorName]) -> Iterator[_Block]:
        """The residents outside ``pinned`` in the policy's order, lazily: the keys are
        computed at the first ``next`` (before any eviction) and heapified, and the
        caller usually stops after a few victims (thousands are resident on 20k-operator
        graphs, at every eviction)."""
        candidates = [b for b in self.arena.blocks if b.tensor not in pinned]
        if self.policy is Policy.BELADY:
            never = len(self.schedule)  # no next use: the best victim of all
            after = [self._next_use_cached(b.tensor, t) for b in candidates]
            keys = [
                (-(never if n is None else n), -b.size, b.tensor, i) for i, (b, n) in enumerate(zip(candidates, after))
            ]
        else:  # LRU
            last = self.last_used
            keys = [(last.get(b.tensor, -1), -b.size, b.tensor, i) for i, b in enumerate(candidates)]
        heapq.heapify(keys)  # the tensor names make the keys distinct: the order of a sort
        while keys:
            yield candidates[heapq.heappop(keys)[-1]]

    def _next_use_cached(self, tensor: TensorName, t: Step) -> Step | None:
        """``_next_use``, remembered: the first use at or after an earlier step that is
        still at or after ``t`` is the first use at or after ``t`` (steps only grow)."""
        cached = self._next_cache.get(tensor, -1)
        if cached is None or cached >= t:
            return cached
        found = self._next_cache[tensor] = self._next_use(tensor, t)
        return found

    def _evict_in_order(self, t: Step, size: Bytes, pinned: set[TensorName]) -> Bytes | None:
        """BELADY/LRU: pick victims in the policy's order until a gap of ``size`` opens;
        return its offset."""
        a = self.problem.alignment
        if not self.params.lazy_eviction:
            for victim in self._victim_order(t, pinned):
                self._evict(victim.tensor, t)
                offset = self._fit(size)
                if offset is not None:
                    return offset
            return None
        blocks = self.arena.blocks
        picked: set[TensorName] = set()
        for victim in self._victim_order(t, pinned):
            picked.add(victim.tensor)
            # The free range around the victim, counting picked victims as free. Before
            # this pick no range fitted, so only this one can fit now.
            lo = hi = self.arena.index(victim)
            while lo > 0 and blocks[lo - 1].tensor in picked:
                lo -= 1
            while hi + 1 < len(blocks) and blocks[hi + 1].tensor in picked:
                hi += 1
            left, right = self.arena.left(lo), self.arena.right(hi + 1)
            if right - left < size:
                continue
            inside = blocks[lo : hi + 1]
            # Slide the placement within [left, right) to overlap the fewest victim bytes:
            # candidate offsets are the range's ends and the victims' edges.
            starts = {left, (right - size) // a * a}
            for b in inside:
                starts.add(b.end)
                starts.add((b.offset - size) // a * a)
            best: tuple[Bytes, Bytes] | None = None
            for s in starts:
                if left <= s and s + size <= right:
                    overlap = sum(b.size for b in inside if b.offset < s + size and s < b.end)
                    if best is None or (overlap, s) < best:
                        best = (overlap, s)
            assert best is not None
            offset = best[1]
            for b in [b for b in inside if b.offset < offset + size and offset < b.end]:
                self._evict(b.tensor, t)
            return offset
        return None

    # ------------------------------------------------------------------ fallback

    def _relocate_cheapest(self, t: Step, operands: Sequence[TensorName]) -> bool:
        """First fallback: let resident operands move too. Operands placed at this step
        are taken out (they have no residency yet: moving them is free); then each operand
        still missing goes to the best-fit gap or, failing that, to the cheapest window of
        residents from earlier steps, operands included (a moved operand costs its
        relocation through DRAM and joins the ones to place). False when a window of
        earlier residents no longer suffices (the operands placed at this step fragment
        the space); the caller then packs them all."""
        footprint = self.problem.footprint
        for x in operands:
            block = self.arena.by_tensor.get(x)
            if block is not None and block.start == t:
                self.arena.remove(x)
        pending = [x for x in operands if x not in self.arena]
        while pending:
            if self.params.place_largest_first:
                pending.sort(key=lambda x: -footprint(x))
            tensor = pending.pop(0)
            offset = self._fit(footprint(tensor))
            if offset is None:
                placed_now = {b.tensor for b in self.arena.blocks if b.start == t}
                resident = [x for x in operands if x in self.arena]  # a list: the order is the plan's
                offset = self._evict_cheapest_window(t, footprint(tensor), placed_now)
                if offset is None:
                    return False
                moved = [x for x in resident if x not in self.arena]
                self.relocations += len(moved)
                pending.extend(moved)
            self.arena.add(_Block(tensor, offset, footprint(tensor), t))
        return True

    def _pack_operands(self, t: Step, operands: Sequence[TensorName]) -> None:
        """Pack every operand of step ``t`` into one contiguous range at the bottom or the
        top of the scratchpad, whichever costs less traffic: resident operands that must
        move are relocated through DRAM, other tensors in the range are evicted. Always
        succeeds: the operands' total is at most ``M_R``."""
        footprint = self.problem.footprint
        resident = sorted((self.arena.by_tensor[x] for x in operands if x in self.arena), key=lambda b: b.offset)
        others = [x for x in operands if x not in self.arena]
        if self.params.place_largest_first:
            others.sort(key=lambda x: -footprint(x))
        total = sum(footprint(x) for x in operands)
        assert total <= self.problem.capacity, "operands exceed the capacity: capacity below M_R"
        # Resident operands keep their address order, so those already in place may stay.
        bottom = [b.tensor for b in resident] + others
        top_base = (self.problem.capacity - total) // self.problem.alignment * self.problem.alignment
        layouts = [self._layout(bottom, 0), self._layout(others + [b.tensor for b in resident], top_base)]
        operand_set = set(operands)

        def traffic(layout: list[tuple[TensorName, Bytes]]) -> Bytes:
            lo, hi = layout[0][1], layout[-1][1] + footprint(layout[-1][0])
            moved = sum(
                self._eviction_cost(x, t)
                for x, offset in layout
                if x in self.arena and self.arena.by_tensor[x].start < t and self.arena.by_tensor[x].offset != offset
            )
            evicted = sum(
                self._eviction_cost(b.tensor, t)
                for b in self.arena.blocks
                if b.tensor not in operand_set and b.offset < hi and lo < b.end
            )
            return moved + evicted

        layout = min(layouts, key=traffic)  # bottom on ties
        lo, hi = layout[0][1], layout[-1][1] + footprint(layout[-1][0])
        # Take the operands that move out of the arena first: placed this step, they simply
        # move; resident from before, their residency ends here (a relocation).
        for tensor, offset in layout:
            block = self.arena.by_tensor.get(tensor)
            if block is None or block.offset == offset:
                continue
            if block.start < t:
                self._evict(tensor, t)
                self.relocations += 1
            else:
                self.arena.remove(tensor)
        for b in [b for b in self.arena.blocks if b.tensor not in operand_set and b.offset < hi and lo < b.end]:
            self._evict(b.tensor, t)
        for tensor, offset in layout:
            if tensor not in self.arena:
                self.arena.add(_Block(tensor, offset, footprint(tensor), t))

    def _layout(self, order: Sequence[TensorName], base: Bytes) -> list[tuple[TensorName, Bytes]]:
        """Offsets packing ``order`` contiguously upward from ``base``."""
        out = []
        for tensor in order:
            out.append((tensor, base))
            base += self.problem.footprint(tensor)
        return out


def allocate(
    problem: Problem,
    schedule: Sequence[OpName],
    policy: Policy | str,
    params: ArenaParams | None = None,
    deadline: float | None = None,
) -> OnlineResult:
    """Run the online allocator along ``schedule`` (topological, assumed checked by the
    caller). ``problem.capacity`` must be at least ``M_R`` (``cosma.core.analysis.min_capacity``).
    ``deadline``: a ``time.perf_counter()`` instant; past it the rest of the schedule holds
    only each step's operands (``OnlineResult.stopped_at``)."""
    return _Allocator(problem, schedule, Policy(policy), params or ArenaParams()).run(deadline)


__all__ = ["Policy", "ArenaParams", "OnlineResult", "allocate"]
