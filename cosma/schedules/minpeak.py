"""A memory-minimizing scheduler for irregular graphs (NAS cells, RandWire): ``M_P`` and
the MPMF schedule for graphs too large for an exact MILP.

The quantity minimized is exactly ``cosma.core.analysis.peak_live_bytes``: a tensor is live from
its first use (its producer's step for an activation) to its last use, and the live bytes
at a step are the footprints of the tensors live there. After a set ``S`` of operators has
run (``S`` is a *downset*: closed under predecessors), the tensors still *open* are those
with a user in ``S`` and a user outside it; running ``o`` next costs
``bytes(open(S) | operands(o))``. So the peak of a schedule depends only on the sequence of
downsets it walks through, and the best peak to reach a downset is a bottleneck-path
problem over the lattice of downsets (the dynamic program of Serenity, Ahn et al. 2020).

Three things keep it tractable, in the order they are applied:

1. **Splitting at cut operators.** An operator every source-to-sink path passes through
   (all other operators are its ancestors or its descendants) is at the same step in every
   schedule; the pieces between consecutive cuts are scheduled independently, since a
   tensor crossing a piece is open before/after it no matter how the piece is ordered.
   The global peak is the maximum of the pieces' peaks.
2. **Best-first search with memoization** per piece: states (downsets, as bitmasks) are
   expanded in order of the peak reached so far, deeper states first among equals, so the
   first time the full piece is popped its peak is optimal. A greedy schedule gives an
   upper bound that prunes the search, and the largest operator gives a lower bound that
   can stop it early. A ready operator that leaves the open bytes no higher and the peak
   where it is runs first, alone (a dominance: four to six times fewer states on the first
   stage of RandWire n32). A search cut short still proves the least peak it has queued.
3. **Beam search** when a piece has more downsets than the state budget (or time runs
   out): the best ``beam_width`` states per depth, ranked by (peak, open bytes). Its
   answer is the best known, proven only where it meets the cut-short search's bound.

A piece's proven minimum (or lower bound) is kept in the graph's memo, so the tiers, the
candidate orders and the bounds over every order (``piece_peak_bounds``, which
``cosma.exact.bounds.peak_bound`` turns into bytes that must move) search each piece once.

For scratchpads below ``M_P`` the same machinery schedules for divide and conquer:
``schedule_min_overflow`` ranks beam states by the live bytes above a capacity summed over
the steps (additive, so pieces stay independent), and ``reorder_window`` re-runs that beam
on a window of an existing order.
"""

from __future__ import annotations

import heapq
import time
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Sequence

import networkx as nx

from cosma.core.ir import Bytes, OpName, Problem, TensorName


@dataclass(frozen=True)
class SchedulerParams:
    """How hard the scheduler tries; the defaults suit graphs of a few hundred operators."""

    max_states: int = 200_000  # downsets the exact search may store per piece before giving up on it
    beam_width: int = 64  # states kept per depth by the beam-search fallback
    split: bool = True  # split the graph at cut operators (off: one piece, for tests and ablations)


@dataclass
class ScheduleResult:
    """What ``schedule_min_peak`` found, with the figures that say how good it is."""

    schedule: tuple[OpName, ...]  # a topological order of every operator
    peak: Bytes  # its peak live bytes (== cosma.core.analysis.peak_live_bytes)
    lower_bound: Bytes  # proven: no schedule has a smaller peak
    proven_optimal: bool  # peak == the minimum over all schedules
    pieces: int  # pieces the graph was split into (cut operators count as pieces)
    exact_pieces: int  # pieces solved by the exact search
    states: int  # downsets stored over all pieces
    seconds: float


def op_dag(problem: Problem) -> nx.DiGraph:
    """The operator DAG: an edge ``p -> o`` when ``o`` reads a tensor ``p`` produces."""
    graph = problem.graph
    dag = nx.DiGraph()
    dag.add_nodes_from(op.name for op in graph.operators)
    for op in graph.operators:
        for p in graph.predecessors(op.name):
            dag.add_edge(p, op.name)
    return dag


def topological_order(problem: Problem) -> list[OpName]:
    """A deterministic topological order, as close to file order as the edges allow."""
    index = problem.graph.op_index
    return list(nx.lexicographical_topological_sort(op_dag(problem), key=lambda n: index[n]))


def cut_operators(problem: Problem, order: Sequence[OpName] | None = None) -> list[OpName]:
    """Operators every path through the graph passes through, in schedule order.

    ``v`` is a cut when every other operator is an ancestor or a descendant of it: then,
    in any topological order, ``v`` sits at position ``|ancestors(v)|``."""
    order = list(order or topological_order(problem))
    pos = {name: i for i, name in enumerate(order)}
    dag = op_dag(problem)
    n = len(order)
    anc = [0] * n  # bitmask of ancestors, by position
    for i, name in enumerate(order):
        mask = 0
        for p in dag.predecessors(name):
            mask |= anc[pos[p]] | (1 << pos[p])
        anc[i] = mask
    desc = [0] * n
    for i in range(n - 1, -1, -1):
        mask = 0
        for s in dag.successors(order[i]):
            mask |= desc[pos[s]] | (1 << pos[s])
        desc[i] = mask
    return [order[i] for i in range(n) if anc[i].bit_count() == i and desc[i].bit_count() == n - 1 - i]


class _Piece:
    """The operators between two cuts, with everything the search needs as bitmasks.

    ``const`` is the footprint of tensors open across the whole piece without a user in
    it; each tensor used in the piece carries whether it is already open when the piece
    starts (a user before it) and whether it stays open after (a user after it)."""

    def __init__(
        self,
        problem: Problem,
        ops: list[OpName],
        before: set[OpName],
        users: dict[TensorName, set[OpName]],
        const: Bytes | None = None,
    ):
        """``const``: the crossing bytes when the caller knows them (``_crossing_bytes``
        for all pieces at once); None: computed here, a scan over every tensor."""
        graph = problem.graph
        self.ops = ops
        self.n = len(ops)
        local = {name: i for i, name in enumerate(ops)}
        self.full = (1 << self.n) - 1
        self.pred = [0] * self.n  # local predecessors, bitmask
        self.operands: list[list[int]] = [[] for _ in ops]  # tensor ids used by each op
        tensor_ids: dict[TensorName, int] = {}
        self.fp: list[Bytes] = []
        self.local_users: list[int] = []
        self.open_before: list[bool] = []
        self.open_after: list[bool] = []
        inside = set(ops)
        for i, name in enumerate(ops):
            op = graph.operators[graph.op_index[name]]
            for p in graph.predecessors(name):
                if p in local:
                    self.pred[i] |= 1 << local[p]
            for t in dict.fromkeys(problem.operands(op)):
                if t not in tensor_ids:
                    tensor_ids[t] = len(self.fp)
                    self.fp.append(problem.footprint(t))
                    self.local_users.append(0)
                    self.open_before.append(any(u in before for u in users[t]))
                    self.open_after.append(any(u not in before and u not in inside for u in users[t]))
                k = tensor_ids[t]
                self.local_users[k] |= 1 << i
                self.operands[i].append(k)
        if const is None:
            const = sum(
                problem.footprint(t)
                for t, us in users.items()
                if t not in tensor_ids
                and any(u in before for u in us)
                and any(u not in before and u not in inside for u in us)
            )
        self.const = const
        self.op_bytes = [sum(self.fp[k] for k in ks) for ks in self.operands]
        self.lower_bound = self.const + max(self.op_bytes)

    def is_open(self, k: int, done: int) -> bool:
        users = self.local_users[k]
        started = self.open_before[k] or users & done
        return bool(started) and (self.open_after[k] or users & done != users)

    def initial_open(self) -> Bytes:
        """Open bytes before any op of the piece runs: every tensor used before it with a
        user in it (or after it) is open."""
        return self.const + sum(f for k, f in enumerate(self.fp) if self.open_before[k])

    def step(self, done: int, open_bytes: Bytes, i: int) -> tuple[Bytes, Bytes]:
        """Live bytes while op ``i`` runs after ``done``, and the open bytes after it.

        Op ``i`` uses each of its operands and has not run, so an operand is open before it
        exactly when it has started (a user before the piece or in ``done``), and is open
        after it unless every user has run and none comes after the piece. Positive masks
        only: ``~done`` would build an integer as long as the piece at every test."""
        live = after = open_bytes
        new_done = done | (1 << i)
        fp, users, before, later = self.fp, self.local_users, self.open_before, self.open_after
        for k in self.operands[i]:
            u = users[k]
            if before[k] or u & done:  # open before: stays open unless this is its last use
                if not later[k] and u & new_done == u:
                    after -= fp[k]
            else:
                live += fp[k]
                if later[k] or u & new_done != u:
                    after += fp[k]
        return live, after

    def ready(self, done: int) -> list[int]:
        """The ops that may run after ``done``, by a scan of every op (``advance`` keeps it
        up to date in time proportional to the op's successors)."""
        return [i for i in range(self.n) if not done >> i & 1 and self.pred[i] & ~done == 0]

    @cached_property
    def succ(self) -> list[list[int]]:
        out: list[list[int]] = [[] for _ in range(self.n)]
        for i, mask in enumerate(self.pred):
            while mask:
                low = mask & -mask
                out[low.bit_length() - 1].append(i)
                mask ^= low
        return out

    def advance(self, ready: tuple[int, ...], new_done: int, i: int) -> tuple[int, ...]:
        """``ready(new_done)`` given ``ready`` = ``ready(done)`` and ``new_done = done | 1 << i``,
        sorted like ``ready``."""
        added = [s for s in self.succ[i] if self.pred[s] & new_done == self.pred[s]]
        rest = [j for j in ready if j != i]
        return tuple(sorted(rest + added)) if added else tuple(rest)


def _greedy(
    piece: _Piece,
    done: int = 0,
    open_bytes: Bytes | None = None,
    ready: tuple[int, ...] | None = None,
    capacity: Bytes | None = None,
) -> tuple[list[int], Bytes]:
    """Run the ready op with the least live bytes now and least open bytes after (then the
    lowest index), from ``done`` (default: the piece's start) to the end of the piece.

    Returns the ops run and the peak live bytes, or with a ``capacity`` the live bytes
    above it summed over the steps. Both bytes are the open bytes plus a delta that
    depends only on the op's operands (has each started? is this op its last user?), so
    the ready ops sit in a heap keyed by their deltas, and running an op re-keys only the
    ready users of its operands: linear-logarithmic where a scan of the ready ops at every
    step is quadratic (RandWire stages of 20k operators keep thousands ready)."""
    if open_bytes is None:
        open_bytes = piece.initial_open()
    if ready is None:
        ready = tuple(piece.ready(done))
    fp, users, before, later = piece.fp, piece.local_users, piece.open_before, piece.open_after
    undone = piece.full & ~done
    left = [(u & undone).bit_count() for u in users]  # users still to run, per tensor
    started = [before[k] or (u & done) != 0 for k, u in enumerate(users)]
    users_of: list[list[int]] = [[] for _ in fp]  # local users of each tensor
    for i, ks in enumerate(piece.operands):
        for k in ks:
            users_of[k].append(i)

    def delta(i: int) -> tuple[Bytes, Bytes]:
        live = after = 0
        for k in piece.operands[i]:
            last = left[k] == 1 and not later[k]
            if started[k]:
                if last:
                    after -= fp[k]
            else:
                live += fp[k]
                if not last:
                    after += fp[k]
        return live, after

    key: dict[int, tuple[Bytes, Bytes]] = {}
    heap: list[tuple[Bytes, Bytes, int]] = []
    for i in ready:
        key[i] = delta(i)
        heapq.heappush(heap, (*key[i], i))
    order: list[int] = []
    score = 0
    while heap:
        d_live, d_after, i = heapq.heappop(heap)
        if key.get(i) != (d_live, d_after):
            continue  # stale: re-keyed since, or already run
        del key[i]
        live = open_bytes + d_live
        score = max(score, live) if capacity is None else score + max(0, live - capacity)
        open_bytes += d_after
        order.append(i)
        done |= 1 << i
        touched: set[int] = set()
        for k in piece.operands[i]:
            left[k] -= 1
            if not started[k] or left[k] == 1:  # what a delta reads changed: once or twice per tensor
                touched.update(users_of[k])
            started[k] = True
        for j in touched:
            if j in key:
                key[j] = delta(j)
                heapq.heappush(heap, (*key[j], j))
        for j in piece.succ[i]:
            if j not in key and piece.pred[j] & done == piece.pred[j]:
                key[j] = delta(j)
                heapq.heappush(heap, (*key[j], j))
    return order, score


def _best_first(
    piece: _Piece, upper: Bytes, max_states: int, deadline: float | None, stats: dict[str, int]
) -> tuple[list[int] | None, Bytes]:
    """Exact min-peak order of the piece, or a proven lower bound on its peak when the state
    budget or time runs out.

    Only orders with peak < ``upper`` are searched. Returns ``(order, peak)``: the optimal
    order and its peak; ``([], upper)`` when no order has a peak below ``upper`` (the
    caller's order with ``upper`` is optimal); ``(None, frontier)`` when the budget or time
    ran out: every order of the piece (one no worse, see below) passes through a stored
    state not yet expanded, whose recorded peak is at most that order's and at least the
    least peak still queued, so no order has a peak below ``frontier`` (at most ``upper``).
    ``stats["states"]`` grows by the downsets stored.

    Dominance: when a ready op leaves the open bytes no higher (``after <= open``) and its
    own live bytes are at most the peak so far (or the piece's lower bound), running it
    first is never worse: every op it overtakes sees the open bytes change by at most that
    non-positive delta (its operands it starts are operands they no longer start, its
    frees happen earlier or not at all), and the states after it are the same. Only that
    op is expanded then."""
    start_open = piece.initial_open()
    floor = piece.lower_bound
    best: dict[int, Bytes] = {0: 0}
    parent: dict[int, tuple[int, int]] = {}
    # (peak, -depth, mask, open, the parent's ready ops, the op run last): a mask is pushed
    # again only with a lower peak, so entries never tie past the mask. A state's ready ops
    # are derived from its parent's when it is popped, not when pushed (most never are).
    heap: list[tuple[Bytes, int, int, Bytes, tuple[int, ...], int]] = [(0, 0, 0, start_open, tuple(piece.ready(0)), -1)]
    expanded = 0
    while heap:
        peak, _, done, open_bytes, ready, last = heapq.heappop(heap)
        if peak > best.get(done, peak):
            continue
        if last >= 0:
            ready = piece.advance(ready, done, last)
        if done == piece.full:
            stats["states"] += len(best)
            order = []
            while done:
                done, i = parent[done]
                order.append(i)
            return order[::-1], peak
        expanded += 1
        if len(best) > max_states or (deadline is not None and time.monotonic() > deadline):
            stats["states"] += len(best)
            return None, min(peak, upper)
        depth = done.bit_count() + 1
        steps = [(i, *piece.step(done, open_bytes, i)) for i in ready]
        free = max(peak, floor)
        for i, live, after in steps:
            if after <= open_bytes and live <= free:
                steps = [(i, live, after)]
                break
        for i, live, after in steps:
            new_peak = max(peak, live)
            if new_peak >= upper:
                continue
            nxt = done | (1 << i)
            if new_peak < best.get(nxt, upper):
                best[nxt] = new_peak
                parent[nxt] = (done, i)
                heapq.heappush(heap, (new_peak, -depth, nxt, after, ready, i))
    stats["states"] += len(best)
    return [], upper  # nothing below ``upper``: the caller's order is optimal


def _beam(
    piece: _Piece, width: int, deadline: float | None = None, capacity: Bytes | None = None
) -> tuple[list[int], Bytes]:
    """Best known order: keep the ``width`` best downsets of each depth (one, a greedy
    completion, once the deadline has passed). The score is the peak, or with a
    ``capacity`` the live bytes above it summed over the steps (additive over pieces).

    Once the deadline has passed, the best state of the layer is completed by ``_greedy``
    (a width-one beam costs a scan of the ready ops per step, quadratic on large pieces).
    A state's order is a linked list ``(last op, previous node)`` shared with its parent,
    so a step costs no copy of the order so far."""
    Node = tuple  # (op, parent node) or None
    layer: dict[int, tuple[Bytes, Bytes, Node | None, tuple[int, ...]]] = {
        0: (0, piece.initial_open(), None, tuple(piece.ready(0)))
    }
    for _ in range(piece.n):
        if deadline is not None and time.monotonic() > deadline:
            done, (peak, open_bytes, node, ready) = min(layer.items(), key=lambda kv: kv[1][:2])
            rest, extra = _greedy(piece, done, open_bytes, ready, capacity)
            order = []
            while node is not None:
                i, node = node
                order.append(i)
            return order[::-1] + rest, (max(peak, extra) if capacity is None else peak + extra)
        nxt: dict[int, tuple[Bytes, Bytes, Node | None, tuple[int, ...], int, tuple[int, ...]]] = {}
        for done, (peak, open_bytes, node, ready) in layer.items():
            for i in ready:
                live, after = piece.step(done, open_bytes, i)
                key = done | (1 << i)
                score = max(peak, live) if capacity is None else peak + max(0, live - capacity)
                if key not in nxt or (score, after) < nxt[key][:2]:
                    nxt[key] = (score, after, node, ready, i, ())
        kept = sorted(nxt.items(), key=lambda kv: kv[1][:2])[:width]
        layer = {
            key: (score, after, (i, node), piece.advance(ready, key, i))
            for key, (score, after, node, ready, i, _) in kept
        }
    peak, _, node, _ = min(layer.values(), key=lambda v: v[:2])
    order = []
    while node is not None:
        i, node = node
        order.append(i)
    return order[::-1], peak


def _split(problem: Problem, split: bool) -> tuple[list[list[OpName]], dict[TensorName, set[OpName]]]:
    """The pieces in schedule order (maximal runs between cut operators; each cut a piece
    of its own), and the users of every managed tensor."""
    order = topological_order(problem)
    cuts = set(cut_operators(problem, order)) if split else set()
    pieces: list[list[OpName]] = []
    run: list[OpName] = []
    for name in order:
        if name in cuts:
            if run:
                pieces.append(run)
                run = []
            pieces.append([name])
        else:
            run.append(name)
    if run:
        pieces.append(run)
    users: dict[TensorName, set[OpName]] = {t: set() for t in problem.managed_tensors}
    for op in problem.graph.operators:
        for t in problem.operands(op):
            users[t].add(op.name)
    return pieces, users


def _crossing_bytes(problem: Problem, pieces: list[list[OpName]], users: dict[TensorName, set[OpName]]) -> list[Bytes]:
    """``_Piece.const`` of every piece at once, in time linear in the graph: the footprint
    of tensors with a user in an earlier piece and one in a later piece but none inside
    (what the per-piece scan over every tensor computes, which is quadratic on stacks of
    thousands of pieces)."""
    piece_of = {name: p for p, ops in enumerate(pieces) for name in ops}
    delta = [0] * (len(pieces) + 1)
    for t, us in users.items():
        if not us:
            continue
        at = {piece_of[u] for u in us}
        first, last = min(at), max(at)
        if last - first < 2:
            continue
        f = problem.footprint(t)
        delta[first + 1] += f  # open over pieces first+1 .. last-1 ...
        delta[last] -= f
        for p in at:
            if first < p < last:  # ... except those that use it
                delta[p] -= f
                delta[p + 1] += f
    out, running = [], 0
    for d in delta[:-1]:
        running += d
        out.append(running)
    return out


def schedule_min_overflow(
    problem: Problem, capacity: Bytes, time_limit: float | None = None, beam_width: int = 32
) -> tuple[OpName, ...]:
    """A schedule for a scratchpad smaller than ``M_P``: beam search (per piece) for the
    least live bytes above ``capacity``, summed over the steps, which is roughly what a
    plan must evict. Candidates for divide and conquer, not a proven optimum."""
    started = time.monotonic()
    pieces, users = _split(problem, True)
    consts = _crossing_bytes(problem, pieces, users)
    schedule: list[OpName] = []
    before: set[OpName] = set()
    remaining = sum(len(p) for p in pieces)
    for ops, const in zip(pieces, consts):
        piece = _Piece(problem, ops, before, users, const)
        deadline = None
        if time_limit is not None:
            share = (time_limit - (time.monotonic() - started)) * piece.n / max(remaining, 1)
            deadline = time.monotonic() + max(share, 0.0)
        order, _ = _beam(piece, beam_width, deadline, capacity)
        schedule.extend(ops[i] for i in order)
        before.update(ops)
        remaining -= piece.n
    return tuple(schedule)


def reorder_window(
    problem: Problem, schedule: Sequence[OpName], a: int, b: int, capacity: Bytes, beam_width: int = 8
) -> tuple[OpName, ...]:
    """``schedule`` with steps ``[a, b)`` reordered by the min-overflow beam search (every
    other step stays put). Any window of a topological order is a valid piece: what runs
    before it is fixed, and its operators' predecessors are before it or inside it."""
    users: dict[TensorName, set[OpName]] = {t: set() for t in problem.managed_tensors}
    for op in problem.graph.operators:
        for t in problem.operands(op):
            users[t].add(op.name)
    ops = list(schedule[a:b])
    piece = _Piece(problem, ops, set(schedule[:a]), users)
    order, _ = _beam(piece, beam_width, None, capacity)
    return (*schedule[:a], *(ops[i] for i in order), *schedule[b:])


def schedule_min_peak(
    problem: Problem, time_limit: float | None = None, params: SchedulerParams | None = None
) -> ScheduleResult:
    """The min-peak schedule search; see the module docstring. Never fails on a valid graph:
    when time or states run out a piece keeps its best known order."""
    params = params or SchedulerParams()
    # A proven result holds for any time limit: computed once per graph and setting.
    key = ("schedule_min_peak", problem.weights_counted, problem.alignment, params)
    known = problem.graph.memo.get(key)
    if known is not None:
        return replace(known, seconds=0.0)
    started = time.monotonic()
    deadline = None if time_limit is None else started + time_limit
    pieces, users = _split(problem, params.split)

    schedule: list[OpName] = []
    peak = lower = 0
    exact = 0
    stats = {"states": 0}
    before: set[OpName] = set()
    # Each piece's time is its share (by operators) of what is left.
    remaining_ops = sum(len(p) for p in pieces)
    for ops, const in zip(pieces, _crossing_bytes(problem, pieces, users)):
        piece = _Piece(problem, ops, before, users, const)
        greedy_order, greedy_peak = _greedy(piece)
        found, found_peak, proven = greedy_order, greedy_peak, greedy_peak <= piece.lower_bound
        piece_lower = piece.lower_bound
        if not proven and piece.n > 1:
            piece_deadline = exact_deadline = None
            if deadline is not None:
                share = (deadline - time.monotonic()) * piece.n / max(remaining_ops, 1)
                piece_deadline = time.monotonic() + max(share, 0.0)
                exact_deadline = time.monotonic() + max(share, 0.0) / 2  # the other half for the beam
            exact_order, piece_lower = _best_first(piece, greedy_peak, params.max_states, exact_deadline, stats)
            if exact_order is not None:
                proven = True
                if exact_order:
                    found, found_peak = exact_order, piece_lower
            else:
                beam_order, beam_peak = _beam(piece, params.beam_width, piece_deadline)
                if beam_peak < found_peak:
                    found, found_peak = beam_order, beam_peak
                proven = found_peak <= piece_lower
        elif piece.n == 1:
            proven = True
        exact += proven
        schedule.extend(ops[i] for i in found)
        peak = max(peak, found_peak)
        piece_lower = _remember_piece(problem, ops, found_peak if proven else piece_lower, proven)
        lower = max(lower, piece_lower)
        before.update(ops)
        remaining_ops -= piece.n
    result = ScheduleResult(
        schedule=tuple(schedule),
        peak=peak,
        lower_bound=lower,
        proven_optimal=exact == len(pieces) or peak <= lower,
        pieces=len(pieces),
        exact_pieces=exact,
        states=stats["states"],
        seconds=time.monotonic() - started,
    )
    if result.proven_optimal:
        problem.graph.memo[key] = result
    return result


def _remember_piece(problem: Problem, ops: Sequence[OpName], lower: Bytes, exact: bool) -> Bytes:
    """Record a proven lower bound on a piece's minimum peak (``exact``: it is the minimum)
    in the graph's memo, and return the best one known. A piece's minimum peak depends on
    the graph, what counts and the alignment only (not the capacity, not the time), so one
    search serves the tiers, the candidate orders and every bound asked later."""
    key = _piece_key(problem, ops)
    known = problem.graph.memo.get(key)
    if known is not None and (known[1] or known[0] >= lower):
        return known[0]
    problem.graph.memo[key] = (lower, exact)
    return lower


def _known_piece(problem: Problem, ops: Sequence[OpName]) -> tuple[Bytes, bool]:
    """``(lower bound, exact)`` recorded by ``_remember_piece``, or ``(0, False)``."""
    return problem.graph.memo.get(_piece_key(problem, ops), (0, False))


def _piece_key(problem: Problem, ops: Sequence[OpName]) -> tuple:
    return ("piece_min_peak", problem.weights_counted, problem.alignment, tuple(ops))


def piece_peak_bounds(
    problem: Problem, time_limit: float | None = None, above: Bytes = 0, params: SchedulerParams | None = None
) -> list[tuple[tuple[OpName, ...], Bytes]]:
    """Every piece (``_split``: the runs between cut operators, each cut alone, in schedule
    order) with a proven lower bound on the peak live bytes of its steps, over every order
    of the graph (each piece's steps see only its own order). The time goes to the pieces
    that can lift the largest bound past ``above`` and the bounds so far, the highest greedy
    peak first: one crowded piece proven is worth more than every other piece scheduled
    (on NASNet-A large at 1.5 s the shared split of ``schedule_min_peak`` leaves the stem
    unproven and the bound at ``M_R``; this proves the stem's 5.9 MB in about a second). A
    search cut short still proves its frontier (``_best_first``). Pieces not reached in the
    time keep the bound of their largest operator (or 0 when not even built)."""
    params = params or SchedulerParams()
    deadline = None if time_limit is None else time.monotonic() + time_limit
    pieces, users = _split(problem, params.split)
    lowers = [0] * len(pieces)
    built = []
    before: set[OpName] = set()
    for k, (ops, const) in enumerate(zip(pieces, _crossing_bytes(problem, pieces, users))):
        if deadline is not None and time.monotonic() > deadline:
            break  # every piece's bound is valid alone: those not built add nothing
        piece = _Piece(problem, ops, before, users, const)
        known, exact = _known_piece(problem, ops)
        lowers[k] = max(piece.lower_bound, known)
        if not exact:
            built.append((k, piece, _greedy(piece)[1]))
        before.update(ops)
    lower = max(lowers, default=0)
    stats = {"states": 0}
    for k, piece, greedy_peak in sorted(built, key=lambda item: -item[2]):
        if greedy_peak <= max(lower, above) or (deadline is not None and time.monotonic() > deadline):
            break
        piece_lower, exact = lowers[k], piece.n == 1 or greedy_peak <= lowers[k]
        if exact:
            piece_lower = greedy_peak
        elif piece_lower <= above:
            # First whether any order stays at or below ``above``: a search that stores only
            # such states, a few times faster than the minimum's (0.3 s against 0.6 s on the
            # crowded stage of RandWire n32), and all that a bound asking for more than
            # ``above`` needs. An order found is the minimum.
            order, found = _best_first(piece, above + 1, params.max_states, deadline, stats)
            piece_lower, exact = max(piece_lower, found), bool(order)
        if not exact and piece_lower > above and (deadline is None or time.monotonic() < deadline):
            order, found = _best_first(piece, greedy_peak, params.max_states, deadline, stats)
            piece_lower, exact = max(piece_lower, found), order is not None
        lowers[k] = _remember_piece(problem, piece.ops, piece_lower, exact)
        lower = max(lower, lowers[k])
    return [(tuple(ops), bound) for ops, bound in zip(pieces, lowers)]


def min_peak_lower_bound(
    problem: Problem, time_limit: float | None = None, above: Bytes = 0, params: SchedulerParams | None = None
) -> Bytes:
    """A proven lower bound on the minimum peak over every order, for bounds that need only
    that number: the largest of ``piece_peak_bounds``."""
    params = params or SchedulerParams()
    known = problem.graph.memo.get(("schedule_min_peak", problem.weights_counted, problem.alignment, params))
    if known is not None:
        return known.lower_bound
    return max((bound for _, bound in piece_peak_bounds(problem, time_limit, above, params)), default=0)


def min_peak_schedule(problem: Problem, time_limit: float | None = None) -> tuple[tuple[OpName, ...], Bytes, bool]:
    """``(schedule, peak, proven_optimal)``: the MPMF schedule and ``M_P`` (exact or best known)."""
    result = schedule_min_peak(problem, time_limit)
    return result.schedule, result.peak, result.proven_optimal


__all__ = [
    "SchedulerParams",
    "ScheduleResult",
    "op_dag",
    "topological_order",
    "cut_operators",
    "schedule_min_peak",
    "min_peak_lower_bound",
    "piece_peak_bounds",
    "schedule_min_overflow",
    "reorder_window",
    "min_peak_schedule",
]
