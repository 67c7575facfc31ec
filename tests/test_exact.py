"""The exact solver: optimum confirmed by brute force, never above a baseline, every outcome.

Every plan goes through ``cosma.core.interface.run`` (validator + cost model); tests compare
objective values, never exact plans.
"""

from __future__ import annotations

import itertools

import pytest
from ortools.sat.python import cp_model

from cosma.core.analysis import min_capacity, peak_live_bytes
from cosma.core.hardware import get_hardware
from cosma.core.interface import RunOptions, Status, get_solver, run
from cosma.core.ir import Graph, Problem
from cosma.core.synthetic import branchy_dag as branchy
from cosma.core.synthetic import random_dag
from cosma.core.validator import validate
from cosma.exact.model import FixedInstance
from cosma.exact.solver import ExactParams, topological_orders

IDEAL = get_hardware("ideal")


def tiers(graph: Graph, weights_counted: bool = True) -> list[int]:
    """M_R, M_H and the file order's peak for ``graph`` on the ideal machine."""
    p = Problem(graph, 10**9, IDEAL, weights_counted=weights_counted)
    m_r = min_capacity(p)
    m_p = peak_live_bytes(p, file_order(graph))
    return sorted({m_r, (m_r + m_p) // 2, m_p})


def file_order(graph: Graph) -> tuple[str, ...]:
    return tuple(op.name for op in graph.operators)


def solve(problem: Problem, params: ExactParams | None = None, **options):
    result = run(problem, "exact", params, RunOptions(**options))
    if result.plan is not None:
        assert validate(problem, result.plan) == []
    return result


# ----- brute force: every keep/evict vector, cheapest first, with an exact packing check -----


def packs(boxes: list[tuple[int, int, int]], capacity: int) -> bool:
    """Do boxes ``(lo, hi, height)`` fit under ``capacity``? Decided by a plain CP-SAT model."""
    model = cp_model.CpModel()
    xs, ys = [], []
    for i, (lo, hi, h) in enumerate(boxes):
        if h > capacity:
            return False
        y = model.new_int_var(0, capacity - h, f"y{i}")
        xs.append(model.new_fixed_size_interval_var(lo, hi - lo, f"x{i}"))
        ys.append(model.new_fixed_size_interval_var(y, h, f"yy{i}"))
    model.add_no_overlap_2d(xs, ys)
    solver = cp_model.CpSolver()
    solver.parameters.num_workers = 1
    return solver.solve(model) in (cp_model.OPTIMAL, cp_model.FEASIBLE)


def brute_force(problem: Problem, schedule: tuple[str, ...]) -> int:
    """The optimum for one schedule by enumerating every keep vector (tiny graphs only)."""
    inst = FixedInstance.build(problem, schedule)
    vectors = sorted(itertools.product((False, True), repeat=len(inst.gaps)), key=inst.cost)
    for keep in vectors:
        boxes = [(b.lo, b.hi, b.height) for b in inst.boxes(inst.blocks(keep))]
        load = [0] * len(schedule)
        for lo, hi, h in boxes:
            for s in range(lo, hi):
                load[s] += h
        if max(load) <= inst.capacity and packs(boxes, inst.capacity):
            return inst.cost(keep)
    raise AssertionError("evicting everything always packs at capacity >= M_R")


@pytest.mark.parametrize("seed", range(8))
def test_exact_matches_brute_force(seed: int) -> None:
    graph = random_dag(seed, 5, size_range=(1, 16), skip_prob=0.5)
    sched = file_order(graph)
    for capacity in tiers(graph):
        problem = Problem(graph, capacity, IDEAL)
        if len(FixedInstance.build(problem, sched).gaps) > 10:
            continue
        result = solve(problem, schedule=sched, time_limit=20)
        assert result.status is Status.OPTIMAL
        assert result.objective == result.bound == brute_force(problem, sched)


@pytest.mark.parametrize("seed", range(4))
def test_exact_matches_brute_force_alignment(seed: int) -> None:
    """Footprints rounded up to the alignment, capacities that are not multiples of it."""
    graph = random_dag(seed + 100, 5, size_range=(1, 200), skip_prob=0.5)
    hw = get_hardware("mcu")  # alignment 16
    sched = file_order(graph)
    p = Problem(graph, 10**9, hw)
    m_r = min_capacity(p)
    for capacity in (m_r, m_r + 40):
        problem = Problem(graph, capacity, hw)
        if len(FixedInstance.build(problem, sched).gaps) > 10:
            continue
        result = solve(problem, schedule=sched, time_limit=20)
        assert result.status is Status.OPTIMAL
        assert result.objective == brute_force(problem, sched)


@pytest.mark.parametrize("weights_counted", [True, False])
@pytest.mark.parametrize("seed", range(4))
def test_exact_never_above_baselines(seed: int, weights_counted: bool) -> None:
    try:
        get_solver("best-greedy")
    except ValueError:
        pytest.skip("solvers.baselines is not there yet")
    from cosma.core.interface import REGISTRY

    graph = random_dag(seed, 14, size_range=(1, 64))
    sched = file_order(graph)
    baselines = [name for name in REGISTRY if name.startswith(("best-", "file-", "mem-", "xla-"))]
    for capacity in tiers(graph, weights_counted):
        problem = Problem(graph, capacity, IDEAL, weights_counted=weights_counted)
        exact = solve(problem, schedule=sched, time_limit=20)
        assert exact.status is Status.OPTIMAL
        for name in baselines:
            base = run(problem, name, options=RunOptions(schedule=sched))
            if base.plan is not None and tuple(base.plan.schedule) == sched:
                assert exact.objective <= base.objective, name


def test_ablations_agree() -> None:
    """Every technique switch changes speed, never the optimum."""
    graph = random_dag(3, 12, size_range=(1, 64))
    sched = file_order(graph)
    variants = [
        ExactParams(),
        ExactParams(relaxation=False),
        ExactParams(warm_start=False, use_packer=False),
        ExactParams(symmetry_breaking=False, nogood_rounds=0),
    ]
    for capacity in tiers(graph):
        problem = Problem(graph, capacity, IDEAL)
        values = {solve(problem, v, schedule=sched, time_limit=20).objective for v in variants}
        assert len(values) == 1


# ----- free schedule -----


@pytest.mark.parametrize("seed", [1, 4, 7, 8])
def test_free_mode_is_min_over_orders(seed: int) -> None:
    graph = branchy(seed)
    p = Problem(graph, 10**9, IDEAL)
    capacity = min_capacity(p)
    problem = Problem(graph, capacity, IDEAL)
    free = solve(problem, ExactParams(schedule_mode="free"), time_limit=30)
    assert free.status is Status.OPTIMAL
    orders, complete = topological_orders(problem, 500)
    assert complete
    fixed = [solve(problem, schedule=order, time_limit=20).objective for order in orders]
    assert free.objective == min(fixed)
    assert free.stats["free_saving_bytes"] >= 0


def test_free_mode_reports_intractable() -> None:
    graph = branchy(1)
    problem = Problem(graph, min_capacity(Problem(graph, 10**9, IDEAL)), IDEAL)
    result = solve(problem, ExactParams(schedule_mode="enumerate", max_free_orders=3), time_limit=20)
    assert result.status is not Status.OPTIMAL
    assert "not tractable" in result.message


# ----- outcomes -----


def test_optimal_message_says_fixed_schedule() -> None:
    graph = random_dag(0, 8)
    problem = Problem(graph, tiers(graph)[0], IDEAL)
    result = solve(problem, schedule=file_order(graph), time_limit=20)
    assert result.status is Status.OPTIMAL
    assert "optimal for the fixed schedule" in result.message
    assert result.stats["schedule_mode"] == "fixed"
    assert result.gap == 0.0


def test_zero_traffic_at_peak() -> None:
    """At the schedule's peak live bytes (M_P for it), a packing exists here: zero traffic."""
    graph = random_dag(2, 30)
    sched = file_order(graph)
    problem = Problem(graph, tiers(graph)[-1], IDEAL)
    result = solve(problem, schedule=sched, time_limit=20)
    assert result.status is Status.OPTIMAL and result.objective == 0


def test_infeasible_below_m_r() -> None:
    graph = random_dag(0, 8)
    m_r = min_capacity(Problem(graph, 10**9, IDEAL))
    result = solve(Problem(graph, m_r - 1, IDEAL), time_limit=5)
    assert result.status is Status.INFEASIBLE
    assert result.plan is None
    assert "M_R" in result.message and str(m_r) in result.message


def test_timeout_returns_valid_plan() -> None:
    """A tiny time limit on a bigger, fragmented instance: the best plan so far."""
    graph = random_dag(0, 150)
    problem = Problem(graph, 600, IDEAL)
    result = solve(problem, ExactParams(warm_start=False), schedule=file_order(graph), time_limit=0.3)
    assert result.status is Status.TIMEOUT
    assert result.plan is not None and result.bound is not None
    assert result.bound <= result.objective


def test_ctrl_c_returns_best_plan() -> None:
    """KeyboardInterrupt during a solve (raised here by the progress line) ends it cleanly."""
    graph = random_dag(0, 40)
    problem = Problem(graph, tiers(graph)[0], IDEAL)

    def interrupt(line: str) -> None:
        raise KeyboardInterrupt

    result = solve(problem, schedule=file_order(graph), time_limit=20, log=interrupt)
    assert result.status is Status.TIMEOUT
    assert result.plan is not None


def test_best_candidate_schedule_when_none_given() -> None:
    graph = branchy(4, 8)
    problem = Problem(graph, min_capacity(Problem(graph, 10**9, IDEAL)), IDEAL)
    result = solve(problem, ExactParams(schedule_mode="fixed"), time_limit=20)
    assert result.stats["schedule_mode"] == "fixed"
    assert result.stats["schedule_source"] in result.stats["candidates"]
    given = solve(problem, schedule=file_order(graph), time_limit=20)
    assert result.objective <= given.objective


def test_dump_model_and_solver_params(tmp_path) -> None:
    graph = random_dag(1, 10)
    problem = Problem(graph, tiers(graph)[0], IDEAL)
    path = tmp_path / "model.txt"
    params = ExactParams(dump_model=str(path), solver_params="max_presolve_iterations:2")
    result = solve(problem, params, schedule=file_order(graph), time_limit=20)
    assert result.status is Status.OPTIMAL
    assert path.read_text().strip()


def test_bad_solver_params_is_usage_error() -> None:
    from cosma.core.errors import UsageError

    graph = random_dag(1, 10)
    problem = Problem(graph, tiers(graph)[0], IDEAL)
    with pytest.raises(UsageError):
        solve(problem, ExactParams(solver_params="no_such_param:1"), schedule=file_order(graph))
