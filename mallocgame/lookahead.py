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

The values are the full rollout's exactly (``tests/test_env.py`` compares them). Memory: one
trace per episode (rebuilt when the episode leaves it), holding a copy of each step's blocks
and reservations per decision that writes it; a view holds copies of its dirty steps only.
The timing phase (``objective="latency"``) is not covered: it still plays one rollout per action.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort

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


class _View:
    """One action's completion being played: where its state differs from the trace's."""

    __slots__ = ("slot", "blocks", "reserved", "dirty", "steps", "block_steps", "horizon", "total")

    def __init__(self, slot: int):
        self.slot = slot  # its index in the answer
        self.blocks: dict[int, list] = {}  # dirty step -> its own committed blocks
        self.reserved: dict[int, dict] = {}  # dirty step -> its own reservations (same keys)
        self.dirty: dict[int, tuple[int, int]] = {}  # dirty tensor -> its (offset or -1, evictions)
        self.steps: list[int] = []  # the dirty steps, sorted
        self.block_steps: list[int] = []  # those whose blocks differ (not only reservations), sorted
        self.horizon = -1  # the last decision (absolute index) that may read a difference
        self.total = 0  # bytes added so far


class GreedyTrace:
    """XLA's rule played from ``state`` to the end of the game, recorded (see the module
    docstring). ``state`` is not changed; the recorded trajectory is immutable once built
    (only a cursor over it moves, so snapshots of the env may share the trace)."""

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
        # What each decision reads on the trace (``MsaState.options``): reservations over
        # read[d][0]..read[d][1] (its segment), blocks over read[d][0]..read[d][2] (for a tensor
        # not resident, up to its last use: the gaps free over its whole remaining lifetime).
        self.read: list[tuple[int, int, int]] = [(0, 0, 0)] * count
        while not run.done:
            d = run.k - self.k0
            i, _, a, b = run.decision
            self.before[d] = _tensor_state(run, i)
            resident = run.cur[i] >= 0
            self.read[d] = (a + 1, b, b) if resident else (a, b, max(b, t.uses[i][-1]))
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
        self._at = len(t.decisions) + 1  # the cursor (``_cursor``): none yet
        self._blocks: list = []
        self._reserved: list = []
        self._version: list[int] = []

    def follows(self, k: int, offset: int) -> bool:
        """Whether playing ``offset`` (a keep's offset, or EVICT) at decision ``k`` stays on the trace."""
        return self.offset[k - self.k0] == offset

    def _cursor(self, k: int) -> tuple[list, list, list[int]]:
        """Copies of the trace's per-step blocks and reservations before decision ``k``, and
        each step's version number. Kept between calls, since an episode moves forward."""
        if k < self._at:  # (a search went back) start over from the trace's first state
            self._at, self._blocks = self.k0, [v[0] for v in self.blocks]
            self._reserved, self._version = [v[0] for v in self.reserved], [0] * len(self.blocks)
        for d in range(self._at - self.k0, k - self.k0):
            self._advance(d, self._blocks, self._reserved, self._version)
        self._at = k
        return list(self._blocks), list(self._reserved), list(self._version)

    def _advance(self, d: int, blocks: list, reserved: list, version: list[int]) -> None:
        """Move a cursor over decision ``d`` (trace index) of the trace."""
        for s in self.writes[d]:
            version[s] += 1
            blocks[s] = self.blocks[s][version[s]]
            reserved[s] = self.reserved[s][version[s]]

    def completions(self, k: int, choices: list[int], options: list[Candidate]) -> list[int]:
        """Bytes that each of ``choices`` (EVICT or an index into ``options``, the legal keeps
        of the state before decision ``k``) adds with XLA's rule after it, from the state
        before decision ``k`` that this trace passed through. All are played together, along
        one cursor over the trace's states."""
        d0 = k - self.k0
        out = [0] * len(choices)
        active: list[_View] = []
        for slot, choice in enumerate(choices):
            offset = EVICT if choice == EVICT else options[choice].offset
            if offset == self.offset[d0]:  # the trace's own choice (a keep's offset decides its repacks)
                out[slot] = self.suffix[d0]
            else:
                active.append(_View(slot))
        if not active:
            return out
        t = self.tables
        state = object.__new__(MsaState)  # the scratch state a view's decision is played on
        state.tables, state.more_offsets, state.all_offsets = t, self.more_offsets, self.all_offsets
        state.cur, state.evictions, state.nc_bytes = [-1] * len(t.names), [0] * len(t.names), 0
        blocks, reserved, version = self._cursor(k)
        d, count = d0, len(self.cost)
        while active and d < count:
            kk = d + self.k0
            i, _, a, b = t.decisions[kk]
            lo, seg_hi, hi = self.read[d]
            still = []
            for v in active:
                if d > d0:
                    if kk > v.horizon:  # nothing ahead reads a difference: the trace's rest
                        out[v.slot] = v.total + self.suffix[d]
                        continue
                    if i not in v.dirty:
                        j = bisect_left(v.steps, lo)
                        jb = bisect_left(v.block_steps, lo)
                        if (j == len(v.steps) or v.steps[j] > seg_hi) and (
                            jb == len(v.block_steps) or v.block_steps[jb] > hi
                        ):  # reads no difference: the trace's choice
                            v.total += self.cost[d]
                            still.append(v)
                            continue
                self._play(v, state, d, blocks, reserved, choices[v.slot] if d == d0 else None, options)
                still.append(v)
            active = still
            self._advance(d, blocks, reserved, version)
            d += 1
        for v in active:
            out[v.slot] = v.total
        return out

    def _play(
        self, v: _View, state: MsaState, d: int, blocks: list, reserved: list, choice: int | None, options
    ) -> None:
        """Play decision ``d`` (trace index) on view ``v``: its state is the trace's
        (``blocks``, ``reserved``: the cursor before ``d``) with its own steps and tensor."""
        kk = d + self.k0
        i, _, a, b = self.tables.decisions[kk]
        state.blocks, state.reserved = list(blocks), list(reserved)
        for s, x in v.blocks.items():
            state.blocks[s] = x
            state.reserved[s] = v.reserved[s]
        offset, state.evictions[i] = v.dirty.get(i, self.before[d])
        if offset >= 0:
            state.res, state.cur[i] = [[i, 0, 0, offset]], 0
        else:
            state.res, state.cur[i] = [], -1
        state.k = kk
        if choice is not None:  # the action itself, among the env's options
            state._options, state._limit, pick = list(options), len(options), choice
        else:
            state._options = None
            pick = 0 if state.options(1) else EVICT
        # The steps either side writes: own copies before the view writes them (and before
        # the trace's write makes them differ), compared with the trace's after.
        touched = set(self.writes[d])
        if pick != EVICT:
            touched.update(range(a + 1 if state.cur[i] >= 0 else a, b + 1))
            touched.update(step for step, _ in state._options[pick].repacks)
        for s in touched:
            if s not in v.blocks:
                state.blocks[s], state.reserved[s] = list(state.blocks[s]), dict(state.reserved[s])
        v.total += state.apply(pick)
        after = _tensor_state(state, i)
        cleaned = False
        if after == self.after[d]:
            cleaned = v.dirty.pop(i, None) is not None
        else:
            v.dirty[i] = after
        times, trace_blocks, trace_reserved = self.times, self.blocks, self.reserved
        for s in touched:
            n = bisect_right(times[s], kk + 1) - 1
            same_blocks = state.blocks[s] == trace_blocks[s][n]
            j = bisect_left(v.block_steps, s)
            listed = j < len(v.block_steps) and v.block_steps[j] == s
            if same_blocks and listed:
                del v.block_steps[j]
            elif not same_blocks and not listed:
                v.block_steps.insert(j, s)
            if same_blocks and state.reserved[s] == trace_reserved[s][n]:
                if s in v.blocks:  # equal to the trace's again: clean
                    del v.blocks[s], v.reserved[s]
                    v.steps.remove(s)
                    cleaned = True
            else:
                if s not in v.blocks:
                    insort(v.steps, s)
                    v.horizon = max(v.horizon, self.last_read[s])
                v.blocks[s], v.reserved[s] = state.blocks[s], state.reserved[s]
        if i in v.dirty:
            v.horizon = max(v.horizon, self.last_decision[i])
        if cleaned:  # the horizon may come closer (else it only grows: cheaper to keep)
            horizon = max((self.last_read[s] for s in v.steps), default=-1)
            v.horizon = max(horizon, max((self.last_decision[j] for j in v.dirty), default=-1))


def _tensor_state(state: MsaState, i: int) -> tuple[int, int]:
    """What the rest of the game reads of tensor ``i``: its open residency's offset (-1:
    none) and whether an eviction now costs the reload only (1: an activation already
    spilled). ``MsaState`` reads the eviction count only as that (``evict_cost``; ``plan``:
    spilled or not), so two counts that agree on it play the same from here."""
    cur = state.cur[i]
    t = state.tables
    return (state.res[cur][3] if cur >= 0 else -1, int(t.is_act[i] and state.evictions[i] > 0))


def _writes(cand: Candidate, lo: int, b: int) -> tuple[int, ...]:
    """Steps a keep over ``lo..b`` writes: its block and reservations, and its repacks."""
    return tuple(sorted(set(range(lo, b + 1)).union(step for step, _ in cand.repacks)))


__all__ = ["GreedyTrace", "read_horizons"]
