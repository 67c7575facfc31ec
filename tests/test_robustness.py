"""Instances at the edges of the problem model that once broke solvers (found by fuzzing)."""

from __future__ import annotations

import pytest

from cosma.core.analysis import min_capacity
from cosma.core.hardware import PRESETS
from cosma.core.interface import RunOptions, Status, run, solver_names
from cosma.core.ir import Problem
from cosma.core.synthetic import build_graph, randwire_graph
from cosma.core.validator import validate

# Every solver but the two whose time on this graph is not the point here: the learned
# agent (its own tests) and the paper-faithful ILP (a reference for tiny graphs).
SOLVERS = [s for s in solver_names() if s not in ("muzero", "ilp")]


def _at_m_r(graph, preset: str) -> Problem:
    hw = PRESETS[preset]
    return Problem(graph, min_capacity(Problem(graph, 10**9, hw)), hw)


def test_an_empty_tensor_still_occupies_one_alignment_unit():
    graph = build_graph("empty", {"x": 4, "e": 0, "y": 4}, [("a", ["x"], ["e"]), ("b", ["x", "e"], ["y"])],
                        inputs=("x",), outputs=("y",))  # fmt: skip
    problem = Problem(graph, 10**6, PRESETS["edge-npu"])
    assert problem.footprint("e") == problem.alignment
    assert min_capacity(problem) == 3 * problem.alignment


@pytest.mark.parametrize("preset", ["ideal", "edge-npu"])
@pytest.mark.parametrize("solver", SOLVERS)
def test_zero_size_tensors_get_valid_plans_from_every_solver(solver, preset):
    # RandWire with 1-element feature maps: a node scaled by 0.5 makes a zero-size tensor.
    graph = randwire_graph(8, 4, 2, 0.75, channels=1, hw=1)
    assert any(t.size == 0 for t in graph.tensors.values())
    problem = _at_m_r(graph, preset)
    result = run(problem, solver, options=RunOptions(time_limit=5))
    assert result.status is not Status.INFEASIBLE
    assert result.plan is not None and validate(problem, result.plan) == []
