"""The memory-minimizing scheduler: exact on small graphs (checked against brute force
over every topological order), consistent with ``peak_live_bytes``, and never worse than
file order when it falls back to beam search."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest

from cosma.core.analysis import is_topological, min_capacity, peak_live_bytes
from cosma.core.hardware import PRESETS
from cosma.core.ir import Graph, Problem
from cosma.core.synthetic import build_graph, random_dag, randwire_graph
from cosma.schedules.minpeak import (
    SchedulerParams,
    cut_operators,
    min_peak_lower_bound,
    min_peak_schedule,
    op_dag,
    schedule_min_peak,
)

IDEAL = PRESETS["ideal"]


def wide_dag(seed: int, n_ops: int = 8) -> Graph:
    """A random DAG with many topological orders: each op reads 1-2 random earlier tensors."""
    rng = np.random.default_rng(seed)
    sizes = {"x": int(rng.integers(1, 40))}
    ops, produced = [], ["x"]
    for i in range(n_ops):
        k = int(rng.integers(1, 3))
        ins = sorted({produced[int(rng.integers(0, len(produced)))] for _ in range(k)})
        sizes[f"t{i}"] = int(rng.integers(1, 40))
        if rng.random() < 0.4:
            sizes[f"w{i}"] = int(rng.integers(1, 20))
            ins.append(f"w{i}")
        ops.append((f"op{i}", ins, [f"t{i}"]))
        produced.append(f"t{i}")
    read = {t for _, ins, _ in ops for t in ins}
    outputs = tuple(t for t in produced[1:] if t not in read)
    weights = tuple(t for t in sizes if t.startswith("w"))
    return build_graph(f"wide{seed}", sizes, ops, inputs=("x",), weights=weights, outputs=outputs)


def brute_force_peak(problem: Problem) -> int:
    return min(peak_live_bytes(problem, order) for order in nx.all_topological_sorts(op_dag(problem)))


GRAPHS = [wide_dag(s) for s in range(12)] + [randwire_graph(s, 8, channels=2, hw=2) for s in range(4)]


@pytest.mark.parametrize("graph", GRAPHS, ids=lambda g: g.name)
@pytest.mark.parametrize("weights_counted", [True, False])
def test_exact_on_small_graphs(graph: Graph, weights_counted: bool) -> None:
    problem = Problem(graph, 10**6, IDEAL, weights_counted=weights_counted)
    schedule, peak, proven = min_peak_schedule(problem)
    assert is_topological(problem, schedule)
    assert peak == peak_live_bytes(problem, schedule)
    assert proven
    assert peak == brute_force_peak(problem)


@pytest.mark.parametrize("seed", range(6))
def test_splitting_does_not_change_the_optimum(seed: int) -> None:
    problem = Problem(randwire_graph(seed, 10, channels=2, hw=2), 10**6, IDEAL)
    split = schedule_min_peak(problem)
    whole = schedule_min_peak(problem, params=SchedulerParams(split=False))
    assert split.peak == whole.peak
    assert split.proven_optimal and whole.proven_optimal


@pytest.mark.parametrize("graph", GRAPHS[::3], ids=lambda g: g.name)
def test_min_peak_lower_bound_is_the_minimum_peak(graph: Graph) -> None:
    # With time to prove every crowded piece, the bound is the minimum peak itself; asked
    # only above it, it may stop lower but never claims more.
    problem = Problem(graph, 10**6, IDEAL)
    graph.memo.clear()
    assert min_peak_lower_bound(problem) == brute_force_peak(problem)
    graph.memo.clear()
    assert min_peak_lower_bound(problem, above=10**9) <= brute_force_peak(problem)


@pytest.mark.parametrize("graph", GRAPHS, ids=lambda g: g.name)
def test_a_search_cut_short_proves_its_frontier(graph: Graph) -> None:
    # Out of states, the best-first search still proves the least peak it has queued: never
    # above the minimum over every order, and equal to it once the search completes.
    from cosma.schedules.minpeak import _best_first, _Piece, _split

    problem = Problem(graph, 10**6, IDEAL)
    pieces, users = _split(problem, split=False)
    piece = _Piece(problem, pieces[0], set(), users)
    minimum = brute_force_peak(problem)
    for max_states in (0, 2, 5, 20, 10**6):
        order, lower = _best_first(piece, 10**9, max_states, None, {"states": 0})
        assert lower <= minimum
        if order is not None:
            assert lower == minimum == peak_live_bytes(problem, [piece.ops[i] for i in order])
    # Asked only whether an order stays below a bound, it says so without claiming more.
    for upper in (minimum, minimum + 1):
        order, lower = _best_first(piece, upper, 10**6, None, {"states": 0})
        assert (order == [] and lower == upper == minimum) or (order and lower == minimum < upper)


@pytest.mark.parametrize("seed", range(12, 40))
def test_the_dominance_keeps_the_minimum_on_more_graphs(seed: int) -> None:
    # The best-first search expands only a free operator where one is ready: on random DAGs
    # with weights (ops that shrink the open bytes are common), still the brute-force minimum.
    graph = wide_dag(seed, n_ops=7)
    for weights_counted in (True, False):
        problem = Problem(graph, 10**6, IDEAL, weights_counted=weights_counted)
        graph.memo.clear()
        assert schedule_min_peak(problem, params=SchedulerParams(split=False)).peak == brute_force_peak(problem)


def test_cut_operators() -> None:
    #   a -> b -> d      every path passes through a and d; b and c are parallel
    #   a -> c -> d
    g = build_graph(
        "diamond",
        {"x": 1, "p": 1, "q": 1, "r": 1, "y": 1},
        [("a", ["x"], ["p"]), ("b", ["p"], ["q"]), ("c", ["p"], ["r"]), ("d", ["q", "r"], ["y"])],
        inputs=("x",),
        outputs=("y",),
    )
    assert cut_operators(Problem(g, 100, IDEAL)) == ["a", "d"]
    chain = random_dag(0, 6, skip_prob=0.0)
    assert cut_operators(Problem(chain, 100, IDEAL)) == [op.name for op in chain.operators]


def test_beam_fallback_gives_a_valid_schedule_and_a_sound_bound() -> None:
    problem = Problem(randwire_graph(0, 24), 10**9, PRESETS["edge-npu"], weights_counted=False)
    result = schedule_min_peak(problem, params=SchedulerParams(max_states=50, beam_width=8))
    assert is_topological(problem, result.schedule)
    assert result.peak == peak_live_bytes(problem, result.schedule)
    assert min_capacity(problem) <= result.lower_bound <= result.peak
    exact = schedule_min_peak(problem)
    assert exact.proven_optimal and exact.peak <= result.peak
    assert result.lower_bound <= exact.peak


@pytest.mark.parametrize("seed", range(3))
def test_reorder_window_keeps_a_topological_order(seed: int) -> None:
    from cosma.schedules.minpeak import reorder_window, topological_order

    problem = Problem(randwire_graph(seed, 16), 10**9, PRESETS["edge-npu"])
    order = tuple(topological_order(problem))
    for a, b in ((0, 10), (5, 17), (len(order) - 6, len(order))):
        new = reorder_window(problem, order, a, b, min_capacity(problem))
        assert is_topological(problem, new)
        assert new[:a] == order[:a] and new[b:] == order[b:]


@pytest.mark.parametrize("seed", range(6))
def test_dragging_moves_keep_orders_topological(seed: int) -> None:
    """``pull_earlier``/``push_later`` move one operator with its ancestors/descendants in
    the stretch it crosses: every result is a topological order of the same operators, and
    the moved operator lands where it was sent when nothing holds it back."""
    import random

    from cosma.schedules.orders import file_order, neighbours, pull_earlier, push_later

    problem = Problem(randwire_graph(seed, 24), 1 << 30, PRESETS["edge-npu"])
    preds, succs = neighbours(problem)
    rng = random.Random(seed)
    order = list(file_order(problem))
    n = len(order)
    for _ in range(50):
        i = rng.randrange(n)
        if rng.random() < 0.5:
            j = rng.randint(0, i)
            new = pull_earlier(order, i, j, preds)
            moved = [q for q in order[j:i] if q in set(new[j : new.index(order[i])])]
            assert new.index(order[i]) == j + len(moved)
        else:
            k = rng.randint(i, n - 1)
            new = push_later(order, i, k, succs)
        assert sorted(new) == sorted(order)
        assert is_topological(problem, new)
        order = new
