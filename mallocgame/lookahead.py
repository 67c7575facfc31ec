"""Incremental greedy completions: the "lookahead" rows of ``mallocgame.env`` without one
full rollout per legal action and decision.

XLA's rule (``solvers.xla.play_greedy``) is deterministic, so the greedy completion of a
state is one trajectory. ``GreedyTrace`` records it once: per decision its choice, the bytes
it adds, the tensor's residency before and after, and every version of each step's committed
blocks and reservations. Then:

- the completion of the greedy action at any state the trace passed through is a suffix sum
  of its costs (the agent followed the trace: no rollout at all);
- the completion of any other action is played on a *view* of the trace: the state that
  differs from the trace's at the same decision only on a set of dirty steps (kept as
  copies) and dirty tensors (whose residency or eviction count differ). A later decision
  that reads no dirty step (its tensor's whole remaining lifetime, a superset of what
  ``MsaState.options`` reads) on a clean tensor makes the trace's choice and adds the
  trace's bytes, so it is not played; past the last decision that reads a dirty step or
  decides a dirty tensor, the rest of the completion is the trace's suffix sum. A dirty
  step whose copy becomes equal to the trace's version again is clean again.

The values are the full rollout's exactly (``tests/test_env.py`` compares them).
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right

import numpy as np

from solvers.xla import EVICT, Candidate, MsaState, MsaTables


def read_horizons(tables: MsaTables) -> tuple[list[int], list[int], list[int], list[int]]:
    """Per-instance tables: for each decision the steps it may read, ``[lo[d], hi[d]]`` (from
    its segment start to its tensor's last use: what ``options`` reads, resident or not);
    for each step the last decision that may read it; for each tensor its last decision."""
    lo, hi = [], []
    last_read = np.full(tables.n_steps, -1, dtype=np.int64)
    last_decision = [-1] * len(tables.names)
    for d, (i, _, a, b) in enumerate(tables.decisions):
        top = max(b, tables.uses[i][-1])
        lo.append(a)
        hi.append(top)
        last_read[a : top + 1] = d  # decisions ascend: the last write is the largest
        last_decision[i] = d
    return lo, hi, last_read.tolist(), last_decision


class _Steps:
    """A per-step list (``blocks`` or ``reserved``) of a view: a dirty step's own copy, else
    the trace's version at the view's current decision (read only: the view copies a step
    before it writes it)."""

    __slots__ = ("own", "times", "versions", "view")

    def __init__(self, own: dict, times: list[list[int]], versions: list[list], view: MsaState):
        self.own, self.times, self.versions, self.view = own, times, versions, view

    def at(self, step: int, k: int):
        """The trace's version of ``step`` in the state before decision ``k``."""
        return self.versions[step][bisect_right(self.times[step], k) - 1]

    def __getitem__(self, key):
        if isinstance(key, slice):
            return [self[s] for s in range(*key.indices(len(self.times)))]
        got = self.own.get(key)
        return got if got is not None else self.at(key, self.view.k)

    def __setitem__(self, step: int, value) -> None:
        self.own[step] = value

    def __len__(self) -> int:
        return len(self.times)


class GreedyTrace:
    """XLA's rule played from ``state`` to the end of the game, recorded (see the module
    docstring). ``state`` is not changed; the trace is immutable once built."""

    def __init__(self, state: MsaState, horizons: tuple[list[int], list[int], list[int], list[int]]):
        t = state.tables
        self.tables = t
        self.k0 = state.k
        self.lo, self.hi, self.last_read, self.last_decision = horizons
        n = t.n_steps
        base = state.clone()
        # versions[s][v] holds from decision times[s][v] on
        self.times: list[list[int]] = [[self.k0] for _ in range(n)]
        self.blocks: list[list] = [[base.blocks[s]] for s in range(n)]
        self.reserved: list[list] = [[base.reserved[s]] for s in range(n)]
        run = base.clone()
        count = len(t.decisions) - self.k0
        self.cost: list[int] = [0] * count  # bytes each decision adds
        self.offset: list[int] = [EVICT] * count  # the keep's offset (EVICT: evicted)
        self.before: list[tuple[int, int]] = [(-1, 0)] * count  # the tensor's (offset or -1, evictions)
        self.after: list[tuple[int, int]] = [(-1, 0)] * count
        self.writes: list[tuple[int, ...]] = [()] * count  # steps the decision wrote
        while not run.done:
            d = run.k - self.k0
            i, _, a, b = run.decision
            self.before[d] = _tensor_state(run, i)
            options = run.options(1)
            if options:
                cand = options[0]
                self.offset[d] = cand.offset
                self.writes[d] = _writes(cand, a + 1 if run.cur[i] >= 0 else a, b)
                self.cost[d] = run.apply(0)
                for s in self.writes[d]:
                    self.times[s].append(run.k)
                    self.blocks[s].append(list(run.blocks[s]))
                    self.reserved[s].append(dict(run.reserved[s]))
            else:
                self.cost[d] = run.apply(EVICT)
            self.after[d] = _tensor_state(run, i)
        self.suffix = np.concatenate([np.cumsum(self.cost[::-1])[::-1], [0]]).astype(np.int64).tolist()
        self.more_offsets, self.all_offsets = state.more_offsets, state.all_offsets

    def follows(self, k: int, offset: int) -> bool:
        """Whether playing ``offset`` (a keep's offset, or EVICT) at decision ``k`` stays on the trace."""
        return self.offset[k - self.k0] == offset

    def completion(self, k: int, choice: int, options: list[Candidate]) -> int:
        """Bytes that ``choice`` (EVICT or an index into ``options``, the legal keeps of the
        state before decision ``k``) adds with XLA's rule after it, from the state before
        decision ``k`` that this trace passed through."""
        d0 = k - self.k0
        offset = EVICT if choice == EVICT else options[choice].offset
        if offset == self.offset[d0]:  # the trace's own choice (a keep's offset decides its repacks)
            return self.suffix[d0]
        t = self.tables
        view = object.__new__(MsaState)
        view.tables, view.more_offsets, view.all_offsets = t, self.more_offsets, self.all_offsets
        own_blocks: dict[int, list] = {}
        own_reserved: dict[int, dict] = {}
        view.blocks = blocks = _Steps(own_blocks, self.times, self.blocks, view)
        view.reserved = reserved = _Steps(own_reserved, self.times, self.reserved, view)
        view.cur = [-1] * len(t.names)
        view.evictions = [0] * len(t.names)
        view.nc_bytes, view.k = 0, k
        dirty: dict[int, tuple[int, int]] = {}  # tensor -> its (offset or -1, evictions) in the view
        dirty_steps: list[int] = []  # sorted keys of own_blocks (= own_reserved)
        horizon = -1
        total = 0
        d = d0
        count = len(self.cost)
        while d < count:
            if d > horizon and d > d0:  # nothing ahead reads a difference: the trace's rest
                return total + self.suffix[d]
            kk = d + self.k0
            i, _, a, b = t.decisions[kk]
            if d > d0 and i not in dirty:
                j = bisect_left(dirty_steps, self.lo[kk])
                if j == len(dirty_steps) or dirty_steps[j] > self.hi[kk]:  # reads no dirty step
                    total += self.cost[d]
                    d += 1
                    continue
            # Play decision kk on the view.
            state_i = dirty.get(i, self.before[d])
            view.evictions[i] = state_i[1]
            if state_i[0] >= 0:
                view.res, view.cur[i] = [[i, 0, 0, state_i[0]]], 0
            else:
                view.res, view.cur[i] = [], -1
            view.k = kk
            if d == d0:
                view._options, view._limit, pick = list(options), len(options), choice
            else:
                view._options = None
                pick = 0 if view.options(1) else EVICT
            # The steps either side writes: the view's own copies before it writes them (and
            # before the trace's write makes them differ), compared with the trace's after.
            touched = set(self.writes[d])
            if pick != EVICT:
                touched.update(_writes(view._options[pick], a + 1 if view.cur[i] >= 0 else a, b))
            for s in touched:
                if s not in own_blocks:
                    own_blocks[s] = list(blocks.at(s, kk))
                    own_reserved[s] = dict(reserved.at(s, kk))
            total += view.apply(pick)
            after = _tensor_state(view, i)
            if after == self.after[d]:
                dirty.pop(i, None)
            else:
                dirty[i] = after
            for s in touched:  # a copy equal to the trace's again is clean
                if own_blocks[s] == blocks.at(s, kk + 1) and own_reserved[s] == reserved.at(s, kk + 1):
                    del own_blocks[s], own_reserved[s]
            dirty_steps = sorted(own_blocks)
            horizon = max((self.last_read[s] for s in dirty_steps), default=-1)
            horizon = max(horizon, max((self.last_decision[j] for j in dirty), default=-1)) - self.k0
            d += 1
        return total


def _tensor_state(state: MsaState, i: int) -> tuple[int, int]:
    """What the rest of the game reads of tensor ``i``: its open residency's offset (-1:
    none) and its eviction count."""
    cur = state.cur[i]
    return (state.res[cur][3] if cur >= 0 else -1, state.evictions[i])


def _writes(cand: Candidate, lo: int, b: int) -> tuple[int, ...]:
    """Steps a keep over ``lo..b`` writes: its block and reservations, and its repacks."""
    return tuple(sorted(set(range(lo, b + 1)).union(step for step, _ in cand.repacks)))


__all__ = ["GreedyTrace", "read_horizons"]
