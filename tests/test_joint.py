"""The order-aware model (cosma.exact.joint): its optimum is the minimum over every topological
order of the fixed-order exact optimum (enumerated), which the paper-faithful ILP with
schedule variables also finds; its bound never exceeds any valid plan's cost.

Every plan is checked by the validator and scored by the one cost model.
"""

from __future__ import annotations

import numpy as np
import pytest

from cosma.core.analysis import is_topological, min_capacity
from cosma.core.cost import evaluate
from cosma.core.hardware import get_hardware
from cosma.core.interface import RunOptions, Status, run
from cosma.core.ir import Graph, Problem
from cosma.core.synthetic import branchy_dag, build_graph, random_dag
from cosma.core.validator import validate
from cosma.exact.ilp import IlpParams
from cosma.exact.joint import (
    SINK,
    SOURCE,
    JointParams,
    OrderInstance,
    _solve_cheap,
    chunked_bound,
    order_bound,
    reorder_window,
    solve_joint,
    window_in_context,
)
from cosma.exact.solver import topological_orders
from tests.test_exact import tiers

IDEAL = get_hardware("ideal")
MCU = get_hardware("mcu")  # alignment > 1: footprints differ from sizes


def min_over_orders(problem: Problem) -> int:
    """The brute-force reference: every topological order solved exactly, the cheapest."""
    orders, complete = topological_orders(problem, 5000)
    assert complete
    best = None
    for order in orders:
        result = run(problem, "exact", options=RunOptions(schedule=order, time_limit=30))
        assert result.status is Status.OPTIMAL
        best = result.objective if best is None else min(best, result.objective)
    assert best is not None
    return best


def graphs() -> list[tuple[str, Graph]]:
    out = [(f"branchy{s}", branchy_dag(s, 6)) for s in range(6)]
    out += [
        (
            f"random{s}",
            random_dag(s, 7, size_range=(1, 24), skip_prob=0.6, max_inputs=3),
        )
        for s in range(2)
    ]
    return out


def wide_dag(seed: int, n: int = 7, max_size: int = 24, weight_prob: float = 0.4) -> Graph:
    """Operators reading one or two of ANY earlier tensors, some with a weight: many
    orders, and at M_R orders that differ in cost (branchy_dag plus weights)."""
    rng = np.random.default_rng(seed)
    sizes = {"x": int(rng.integers(1, max_size + 1))}
    produced, ops, weights = ["x"], [], []
    for i in range(n):
        picks = rng.integers(0, len(produced), size=int(rng.integers(1, 3)))
        ins = list(dict.fromkeys(produced[int(j)] for j in picks))
        if rng.random() < weight_prob:
            sizes[f"w{i}"] = int(rng.integers(1, max_size + 1))
            weights.append(f"w{i}")
            ins.append(f"w{i}")
        sizes[f"t{i}"] = int(rng.integers(1, max_size + 1))
        ops.append((f"op{i}", ins, [f"t{i}"]))
        produced.append(f"t{i}")
    read = {t for _, ins, _ in ops for t in ins}
    outputs = tuple(t for t in produced[1:] if t not in read)
    return build_graph(
        f"wide{seed}",
        sizes,
        ops,
        inputs=("x",),
        weights=tuple(weights),
        outputs=outputs,
    )


# Seeds whose M_R cell costs > 0 with several orders (measured once; the tests re-check it).
WIDE = [
    (0, True),
    (1, True),
    (2, True),
    (6, True),
    (7, True),
    (18, True),
    (27, True),
    (39, True),
]
WIDE += [(2, False), (4, False), (6, False), (12, False), (13, False), (25, False)]


def cases() -> list[tuple[str, Problem]]:
    out = []
    for seed, weights_counted in WIDE:
        graph = wide_dag(seed)
        m_r = min_capacity(Problem(graph, 10**9, IDEAL, weights_counted))
        out.append(
            (
                f"wide{seed}-w{int(weights_counted)}-M_R",
                Problem(graph, m_r, IDEAL, weights_counted),
            )
        )
    for name, graph in graphs():
        for weights_counted in (True, False):
            for capacity in tiers(graph, weights_counted)[:2]:
                out.append(
                    (
                        f"{name}-w{int(weights_counted)}-{capacity}",
                        Problem(graph, capacity, IDEAL, weights_counted),
                    )
                )
    graph = random_dag(3, 6, size_range=(1, 100), skip_prob=0.6)
    m_r = min_capacity(Problem(graph, 10**9, MCU))
    out.append(("mcu-aligned", Problem(graph, m_r + 16, MCU)))
    return out


CASES = cases()


@pytest.mark.parametrize("name,problem", CASES, ids=[c[0] for c in CASES])
def test_joint_is_min_over_every_order(name: str, problem: Problem) -> None:
    reference = min_over_orders(problem)
    if name.startswith("wide"):
        assert reference > 0 and len(topological_orders(problem, 5000)[0]) > 1  # a case that tests something
    result = solve_joint(problem, time_limit=30)
    assert result.plan is not None
    assert validate(problem, result.plan) == []
    assert evaluate(problem, result.plan).non_compulsory_bytes == result.cost
    assert result.proven, result.how
    assert result.cost == reference
    assert result.bound == reference
    bound = order_bound(problem, time_limit=10)
    assert bound.bound <= reference
    if bound.relaxation_optimal:
        # The relaxation of the best order is never above that order's exact optimum.
        assert bound.objective is not None and bound.objective <= reference


@pytest.mark.parametrize("seed", [3, 4, 7, 11, 13, 14, 18])  # each with a cell below M_P and <= 200 orders
def test_peak_bound_never_exceeds_the_optimum_below_the_minimum_peak(seed: int) -> None:
    # Below M_P every order overflows somewhere, and the bound is positive: on random DAGs,
    # with and without alignment and weights, at M_R, M_H and just below M_P, it never
    # exceeds the optimum over every order (enumerated, each order solved exactly).
    from cosma.exact.bounds import peak_bound
    from cosma.schedules.minpeak import schedule_min_peak

    checked = 0
    for hardware in (IDEAL, MCU):
        for weights_counted in (True, False):
            graph = wide_dag(seed)
            base = Problem(graph, 10**9, hardware, weights_counted)
            m_r, m_p = min_capacity(base), schedule_min_peak(base).peak
            if m_p <= m_r or not topological_orders(base, 200)[1]:
                continue
            for capacity in sorted({m_r, (m_r + m_p) // 2, m_p - 1}):
                problem = Problem(graph, capacity, hardware, weights_counted)
                bound = peak_bound(problem, 5.0)
                assert 0 < bound <= min_over_orders(problem)
                checked += 1
    assert checked > 0


@pytest.mark.parametrize("name,problem", CASES[::3], ids=[c[0] for c in CASES[::3]])
def test_bounds_never_exceed_a_valid_plan(name: str, problem: Problem) -> None:
    greedy = run(problem, "best-greedy", options=RunOptions(time_limit=10))
    assert greedy.plan is not None and validate(problem, greedy.plan) == []
    ceiling = min_over_orders(problem)
    assert ceiling <= greedy.objective
    # A time limit too short to finish still returns a valid bound.
    for limit in (0.001, 5.0):
        assert order_bound(problem, time_limit=limit).bound <= ceiling
    # The decomposition bound, with chunks small enough to split these graphs.
    assert chunked_bound(problem, 5.0, params=JointParams(chunk_ops=3)) <= ceiling


@pytest.mark.parametrize(
    "graph,weights_counted",
    [(branchy_dag(1, 6), True), (wide_dag(0, 6), True), (wide_dag(2, 6), False), (wide_dag(3, 6), True)],
)
def test_ilp_with_schedule_variables_agrees(graph: Graph, weights_counted: bool) -> None:
    problem = Problem(graph, min_capacity(Problem(graph, 10**9, IDEAL, weights_counted)), IDEAL, weights_counted)
    ilp = run(problem, "ilp", IlpParams(schedule_mode="free"), RunOptions(time_limit=60))
    assert ilp.status is Status.OPTIMAL, ilp.message
    assert validate(problem, ilp.plan) == []
    joint = solve_joint(problem, time_limit=30)
    assert joint.proven
    assert ilp.objective == joint.cost == min_over_orders(problem)
    assert graph.name == "branchy1" or joint.cost > 0


def test_order_freedom_pays_and_is_proven() -> None:
    """Two independent branches whose order matters: one order keeps the big tensor
    alive across the other branch, which must then reload; the best order does not."""
    sizes = {"x": 1, "a": 6, "b": 1, "c": 6, "d": 1, "y": 1}
    ops = [
        ("pa", ["x"], ["a"]),
        ("pc", ["x"], ["c"]),
        ("ua", ["a"], ["b"]),
        ("uc", ["c"], ["d"]),
        ("join", ["b", "d", "x"], ["y"]),
    ]
    graph = build_graph("two-branches", sizes, ops, inputs=("x",), outputs=("y",))
    problem = Problem(graph, 9, IDEAL)
    file_order = run(
        problem,
        "exact",
        options=RunOptions(schedule=tuple(o[0] for o in ops), time_limit=10),
    )
    result = solve_joint(problem, time_limit=10)
    assert result.proven and result.cost == 0 < file_order.objective
    assert "no traffic" in result.how or result.bound == 0


def test_single_topological_order_is_proven_by_the_fixed_solve() -> None:
    graph = random_dag(5, 8, skip_prob=0.7, max_inputs=3)
    chain = build_graph(
        "chain",
        {"x": 4, "a": 8, "b": 8, "y": 4},
        [("f", ["x"], ["a"]), ("g", ["a", "x"], ["b"]), ("h", ["b", "x", "a"], ["y"])],
        inputs=("x",),
        outputs=("y",),
    )
    for g in (chain, graph):
        problem = Problem(g, min_capacity(Problem(g, 10**9, IDEAL)), IDEAL)
        if not OrderInstance.build(problem).single_order():
            continue
        result = solve_joint(problem, time_limit=10)
        assert result.proven
        assert result.cost == min_over_orders(problem)


def fixed_relaxation(problem: Problem, order: tuple[str, ...]) -> int:
    """The fixed-order no-address relaxation's optimum (cosma.exact.model)."""
    from ortools.sat.python import cp_model

    from cosma.exact.model import FixedInstance, build_relaxation

    inst = FixedInstance.build(problem, order)
    model, _, _ = build_relaxation(inst, set(inst.forced_evictions()), [], None)
    solver = cp_model.CpSolver()
    solver.parameters.num_workers = 1
    assert solver.solve(model) == cp_model.OPTIMAL
    return round(solver.objective_value)


@pytest.mark.parametrize("name,problem", CASES, ids=[c[0] for c in CASES])
def test_model_optimum_is_min_of_fixed_relaxations(name: str, problem: Problem) -> None:
    """Not only a bound: the order model's optimum is exactly the cheapest order's
    no-address relaxation (so nothing is lost to the order being a variable)."""
    orders, complete = topological_orders(problem, 5000)
    assert complete
    reference = min(fixed_relaxation(problem, o) for o in orders)
    result = order_bound(problem, time_limit=10, params=JointParams(use_free_bound=False))
    assert result.relaxation_optimal and result.how == "model"
    assert result.bound == result.objective == reference
    assert result.order is not None and fixed_relaxation(problem, result.order) == reference
    # The cheaper positions-only relaxation is a relaxation of the step model: never above it.
    cheap = _solve_cheap(OrderInstance.build(problem), 10.0, 1, 0)
    assert cheap.status == "optimal" and cheap.bound <= reference


@pytest.mark.parametrize("name,problem", CASES[1::2], ids=[c[0] for c in CASES[1::2]])
def test_joint_proves_without_the_cheap_bounds(name: str, problem: Problem) -> None:
    result = solve_joint(problem, time_limit=30, params=JointParams(use_free_bound=False))
    assert result.proven and result.cost == min_over_orders(problem)
    assert validate(problem, result.plan) == []


@pytest.mark.parametrize("name,problem", CASES, ids=[c[0] for c in CASES])
def test_cheap_bounds_never_exceed_the_optimum_over_every_order(name: str, problem: Problem) -> None:
    from cosma.exact.bounds import chain_bound, cheap_order_bounds, cut_bound, peak_bound

    best = min_over_orders(problem)
    assert peak_bound(problem, 5.0) <= best
    assert cut_bound(problem, 5.0) <= best
    assert chain_bound(problem, 5.0) <= best
    value, how, parts = cheap_order_bounds(problem)
    assert value == parts[how] == max(parts.values()) <= best


def test_cut_bound_sees_an_open_branch_and_the_peak_bound_the_whole_tensor() -> None:
    # On this aligned instance (optimum 38 over every order) the least live bytes any order
    # can have while some operator runs prove 19 bytes must move (a fractional cover of the
    # excess). The min-peak bound covers the excess at the crowded step with whole tensors
    # that can be out there (it proved 1 when it took any bytes of any tensor): the optimum.
    from cosma.exact.bounds import cut_bound, peak_bound

    problem = dict(CASES)["mcu-aligned"]
    assert cut_bound(problem, 5.0) == 19
    assert peak_bound(problem, 5.0) == 38 == min_over_orders(problem)


def test_chain_bound_counts_a_reload_per_layer() -> None:
    # The Transformer decoder's pattern in small: every layer reads the memory M (or keys
    # k_i computed from it by kp_i, which may run at any time after mk), and each layer's
    # peak p_i (h_i + q_i = 9 bytes) leaves no room for M or a precomputed key beside it.
    # Whatever the order, one of them is out at p1 and at p2, and read in between: a spill
    # and two reloads, 12 bytes. A single operator proves at most 8; the chain of peaks,
    # cut together, proves all 12.
    from cosma.exact.bounds import chain_bound, cut_bound

    sizes = {"i": 1, "M": 4, "k1": 4, "k2": 4, "k3": 4, "h1": 1, "q1": 8, "g1": 1, "h2": 1, "q2": 8, "g2": 1, "h3": 1}
    layers = [
        ("mk", ["i"], ["M"]),
        ("kp1", ["M"], ["k1"]), ("l1", ["k1", "i"], ["h1"]), ("p1", ["h1"], ["q1"]), ("r1", ["q1"], ["g1"]),
        ("kp2", ["M"], ["k2"]), ("l2", ["k2", "g1"], ["h2"]), ("p2", ["h2"], ["q2"]), ("r2", ["q2"], ["g2"]),
        ("kp3", ["M"], ["k3"]), ("l3", ["k3", "g2"], ["h3"]),
    ]  # fmt: skip
    graph = build_graph("memory", sizes, layers, inputs=("i",), outputs=("h3",))
    for capacity in (9, 12):
        problem = Problem(graph, capacity, IDEAL)
        assert len(topological_orders(problem, 5000)[0]) == 45
        assert cut_bound(problem) < chain_bound(problem) == 12 == min_over_orders(problem)


def test_peak_bound_is_the_cheapest_way_to_free_the_excess() -> None:
    # Two branches t -> x1 -> x2 and t -> y1 -> y2 joined by c: whichever branch runs second
    # does so with the first one's 8-byte output waiting, 8 + 8 + 8 live: M_P = 24 over every
    # order, M_R = 17 (c). At capacity 22 two bytes must go at that step. The input i (one
    # user) is live only while it is an operand, so it cannot be what goes; t (1 byte, 2 to
    # spill and reload) is too small alone: the cheapest whole tensors that free 2 bytes are
    # one 8-byte activation, 16 (spill and reload), which is the optimum.
    graph = build_graph(
        "two-branches",
        {"i": 4, "t": 1, "x1": 8, "x2": 8, "y1": 8, "y2": 8, "o": 1},
        [("a", ["i"], ["t"]), ("b1", ["t"], ["x1"]), ("b1b", ["x1"], ["x2"]), ("b2", ["t"], ["y1"]),
         ("b2b", ["y1"], ["y2"]), ("c", ["x2", "y2"], ["o"])],
        inputs=("i",),
        outputs=("o",),
    )  # fmt: skip
    from cosma.exact.bounds import _cheapest_cover, peak_bound
    from cosma.schedules.minpeak import schedule_min_peak

    assert schedule_min_peak(Problem(graph, 10**6, IDEAL)).lower_bound == 24
    tight = Problem(graph, 22, IDEAL)
    assert peak_bound(tight) == 16 == min_over_orders(tight)
    # The cover is whole tensors (a knapsack), in footprint units of their common divisor.
    assert _cheapest_cover([(1, 2), (8, 16)], 2) == 16
    assert _cheapest_cover([(1, 2), (1, 2), (8, 16)], 2) == 4
    assert _cheapest_cover([(128, 100), (192, 100), (320, 250)], 300, alignment=64) == 200
    assert _cheapest_cover([(64, 1)], 300) == 1  # all of them fall short: all of them


@pytest.mark.parametrize("name,problem", CASES[::3], ids=[c[0] for c in CASES[::3]])
def test_reorder_window_over_the_whole_order_is_the_order_model(name: str, problem: Problem) -> None:
    """A window over every step has no context: its best order is the cheapest order's relaxation."""
    orders, complete = topological_orders(problem, 5000)
    assert complete
    reference = min(fixed_relaxation(problem, o) for o in orders)
    start = run(problem, "best-greedy")
    found = reorder_window(problem, start.plan, 0, len(orders[0]), time_limit=10)
    assert found.status == "optimal" and found.objective == reference
    assert fixed_relaxation(problem, found.schedule) == reference


@pytest.mark.parametrize("name,problem", CASES[1::3], ids=[c[0] for c in CASES[1::3]])
def test_reorder_window_moves_only_the_window(name: str, problem: Problem) -> None:
    """Margins keep their operators' steps; the window's operators stay in it, in an order of the graph."""
    plan = run(problem, "best-greedy").plan
    n = len(plan.schedule)
    a, b = n // 4, n // 4 + max(2, n // 2)
    found = reorder_window(problem, plan, a, b, time_limit=10, margin=2)
    assert found.status in ("optimal", "feasible")
    assert found.schedule[:a] == plan.schedule[:a] and found.schedule[b:] == plan.schedule[b:]
    assert sorted(found.schedule[a:b]) == sorted(plan.schedule[a:b])
    assert is_topological(problem, found.schedule)
    # The plan's own window order is a solution of the window's model: the optimum is no dearer.
    lo, hi = a - min(a, 2), min(n, b + 2)
    before = [r.tensor for r in plan.residencies if r.start < lo < r.end]
    after = [r.tensor for r in plan.residencies if r.start < hi < r.end]
    context = window_in_context(problem, plan.schedule, lo, hi, before, after)
    assert context.graph.operators[0].name == SOURCE and context.graph.operators[-1].name == SINK
    as_it_was = fixed_relaxation(context, tuple(op.name for op in context.graph.operators))
    if found.status == "optimal":
        assert found.objective <= as_it_was
