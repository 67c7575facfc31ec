"""Exact minimum peak footprint (MPMF): the DP and the CP-SAT model against brute force."""

from __future__ import annotations

import pytest

from cosma.core.analysis import is_topological, peak_live_bytes
from cosma.core.hardware import get_hardware
from cosma.core.ir import Problem
from cosma.core.synthetic import random_dag
from cosma.exact.solver import topological_orders
from cosma.schedules.mpmf import min_peak
from tests.test_exact import branchy

IDEAL = get_hardware("ideal")


def brute_min_peak(problem: Problem) -> int:
    orders, complete = topological_orders(problem, 100_000)
    assert complete
    return min(peak_live_bytes(problem, order) for order in orders)


@pytest.mark.parametrize("weights_counted", [True, False])
@pytest.mark.parametrize("seed", range(8))
def test_dp_is_exact(seed: int, weights_counted: bool) -> None:
    problem = Problem(branchy(seed, 7), 10**9, IDEAL, weights_counted=weights_counted)
    result = min_peak(problem)
    assert result.proven and result.bound == result.peak
    assert is_topological(problem, result.schedule)
    assert peak_live_bytes(problem, result.schedule) == result.peak == brute_min_peak(problem)


@pytest.mark.parametrize("seed", range(5))
def test_cpsat_path_agrees(seed: int) -> None:
    """With the DP cut off at once, the CP-SAT model must prove the same minimum."""
    problem = Problem(branchy(seed, 7), 10**9, IDEAL)
    result = min_peak(problem, time_limit=20, max_states=1)
    assert result.proven
    assert is_topological(problem, result.schedule)
    assert peak_live_bytes(problem, result.schedule) == result.peak == brute_min_peak(problem)


def test_never_above_file_order_and_bound_holds() -> None:
    problem = Problem(random_dag(5, 60, skip_prob=0.5), 10**9, IDEAL)
    file_order = tuple(op.name for op in problem.graph.operators)
    result = min_peak(problem, time_limit=10)
    assert result.peak <= peak_live_bytes(problem, file_order)
    assert result.bound <= result.peak
    limited = min_peak(problem, time_limit=2, max_states=1)
    assert limited.bound <= result.peak <= limited.peak
