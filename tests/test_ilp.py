"""The paper-faithful ILP: the same optimum as the fast formulation, in both modes."""

from __future__ import annotations

import pytest

from cosma.core.analysis import min_capacity
from cosma.core.hardware import get_hardware
from cosma.core.interface import RunOptions, Status, run
from cosma.core.ir import Problem
from cosma.core.synthetic import random_dag
from cosma.core.validator import validate
from cosma.exact.ilp import IlpParams
from cosma.exact.solver import ExactParams
from tests.test_exact import branchy, file_order, tiers

IDEAL = get_hardware("ideal")


def both(problem: Problem, mode: str, **options):
    ilp = run(problem, "ilp", IlpParams(schedule_mode=mode), RunOptions(time_limit=60, **options))
    exact = run(problem, "exact", ExactParams(schedule_mode=mode), RunOptions(time_limit=60, **options))
    for result in (ilp, exact):
        assert result.status is Status.OPTIMAL, result.message
        assert validate(problem, result.plan) == []
    return ilp, exact


@pytest.mark.parametrize("weights_counted", [True, False])
@pytest.mark.parametrize("seed", range(5))
def test_fixed_schedule_same_optimum(seed: int, weights_counted: bool) -> None:
    graph = random_dag(seed, 6, size_range=(1, 16), skip_prob=0.5)
    for capacity in tiers(graph, weights_counted):
        problem = Problem(graph, capacity, IDEAL, weights_counted=weights_counted)
        ilp, exact = both(problem, "fixed", schedule=file_order(graph))
        assert ilp.objective == exact.objective


@pytest.mark.parametrize("seed", [1, 4, 7, 9])
def test_free_schedule_same_optimum(seed: int) -> None:
    graph = branchy(seed, 5)
    problem = Problem(graph, min_capacity(Problem(graph, 10**9, IDEAL)), IDEAL)
    ilp, exact = both(problem, "free")
    assert ilp.objective == exact.objective


def test_alignment_and_cbc_backend() -> None:
    graph = random_dag(2, 5, size_range=(1, 100), skip_prob=0.5)
    hw = get_hardware("mcu")
    problem = Problem(graph, min_capacity(Problem(graph, 10**9, hw)) + 16, hw)
    exact = run(problem, "exact", options=RunOptions(schedule=file_order(graph), time_limit=20))
    for backend in ("highs", "cbc"):
        ilp = run(problem, "ilp", IlpParams(backend=backend), RunOptions(time_limit=60))
        assert ilp.status is Status.OPTIMAL
        assert ilp.objective == exact.objective


def test_infeasible_below_m_r() -> None:
    graph = random_dag(0, 5)
    m_r = min_capacity(Problem(graph, 10**9, IDEAL))
    result = run(Problem(graph, m_r - 1, IDEAL), "ilp")
    assert result.status is Status.INFEASIBLE and "M_R" in result.message
