"""Two objectives on one cost model, and prefetch timing as a decision (tracker issue #19)."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from cosma.core.cost import evaluate
from cosma.core.hardware import get_hardware
from cosma.core.interface import RunOptions, Status, load_all, run
from cosma.core.ir import Plan, Problem, Residency
from cosma.core.prefetch import moved_loads, prefetch
from cosma.core.synthetic import build_graph, random_dag
from cosma.core.validator import validate
from solvers.xla import XlaParams

# x -> a -> b -> c -> d, then y reads d and a. ``a`` cannot stay resident across step 2
# (b + c + a > 24 B), so it is spilled and reloaded for step 4. Step 3 is compute-bound
# (100 MACs on a 1 MAC/cycle machine) and leaves room for ``a``: a reload started there is hidden.
GRAPH = build_graph(
    "hide",
    {"x": 4, "a": 8, "b": 16, "c": 4, "d": 4, "y": 4},
    [("f", ["x"], ["a"]), ("g", ["a"], ["b"]), ("h", ["b"], ["c"]), ("k", ["c"], ["d"]), ("m", ["d", "a"], ["y"])],
    inputs=("x",),
    outputs=("y",),
    macs={"k": 100},
)
IDEAL = get_hardware("ideal")
SCHEDULE = ("f", "g", "h", "k", "m")


def problem(objective: str = "bytes") -> Problem:
    return Problem(GRAPH, 24, IDEAL, objective=objective)


def plan(a_offset: int) -> Plan:
    """The spill-and-reload plan by hand: ``c`` at 16 over steps 2-3, ``a`` reloaded at ``a_offset``."""
    return Plan(
        SCHEDULE,
        (
            Residency("x", 0, 1, 8),
            Residency("a", 0, 2, 16, spilled=True),
            Residency("b", 1, 3, 0),
            Residency("c", 2, 4, 16),
            Residency("d", 3, 5, 0),
            Residency("a", 4, 5, a_offset),
            Residency("y", 4, 5, 4),
        ),
    )


def test_a_reload_is_moved_behind_the_compute_bound_step():
    p, before = problem(), plan(a_offset=8)
    assert validate(p, before) == []
    after = prefetch(p, before)
    assert validate(p, after) == []
    reload = [r for r in after.residencies if r.tensor == "a" and not r.spilled]
    assert reload == [Residency("a", 3, 5, 8)]
    assert moved_loads(before, after) == 1
    assert evaluate(p, after).latency_cycles == evaluate(p, before).latency_cycles - 8
    assert evaluate(p, after).non_compulsory_bytes == evaluate(p, before).non_compulsory_bytes


def test_a_reload_whose_range_is_taken_earlier_lands_where_the_space_is_free():
    # c sits where a is reloaded (16), at step 3; [8, 16) is free over steps 3-4: a reload may land there.
    p, before = problem(), plan(a_offset=16)
    assert validate(p, before) == []
    after = prefetch(p, before)
    assert validate(p, after) == []
    assert [r for r in after.residencies if r.tensor == "a" and not r.spilled] == [Residency("a", 3, 5, 8)]
    assert moved_loads(before, after) == 1
    assert evaluate(p, after).latency_cycles == evaluate(p, prefetch(p, plan(8))).latency_cycles


# The same chain, with c and d large enough that ``a`` (8 B) fits nowhere at the compute-bound step 3
# (c + d = 20 of 24 B): no prefetch is offered, at any offset.
CRAMPED = build_graph(
    "cramped",
    {"x": 4, "a": 8, "b": 8, "c": 12, "d": 8, "y": 4},
    [("f", ["x"], ["a"]), ("g", ["a"], ["b"]), ("h", ["b"], ["c"]), ("k", ["c"], ["d"]), ("m", ["d", "a"], ["y"])],
    inputs=("x",),
    outputs=("y",),
    macs={"k": 100},
)


def test_no_prefetch_where_no_byte_range_is_free_over_the_interval():
    p = Problem(CRAMPED, 24, IDEAL)
    before = Plan(
        SCHEDULE,
        (
            Residency("x", 0, 1, 8),
            Residency("a", 0, 2, 0, spilled=True),
            Residency("b", 1, 3, 16),
            Residency("c", 2, 4, 0),
            Residency("d", 3, 5, 12),
            Residency("a", 4, 5, 0),
            Residency("y", 4, 5, 20),
        ),
    )
    assert validate(p, before) == []
    assert prefetch(p, before) == before
    # With 8 B more, [24, 32) is free over steps 3-4: the same reload is hidden there.
    roomy = Problem(CRAMPED, 32, IDEAL)
    after = prefetch(roomy, before)
    assert validate(roomy, after) == []
    assert [r for r in after.residencies if r.tensor == "a" and not r.spilled] == [Residency("a", 3, 5, 24)]
    assert evaluate(roomy, after).latency_cycles < evaluate(roomy, before).latency_cycles


def test_a_blocking_residency_moves_to_make_room_for_a_hidden_reload():
    # At 28 B, step 3 has 8 B free, but in two pieces ([12, 16) and [24, 28)) around d: d moves to
    # a range free over its own steps 3-4, and the reload of a takes the room it leaves.
    p = Problem(CRAMPED, 28, IDEAL)
    before = Plan(
        SCHEDULE,
        (
            Residency("x", 0, 1, 8),
            Residency("a", 0, 2, 0, spilled=True),
            Residency("b", 1, 3, 16),
            Residency("c", 2, 4, 0),
            Residency("d", 3, 5, 16),
            Residency("a", 4, 5, 8),
            Residency("y", 4, 5, 0),
        ),
    )
    assert validate(p, before) == []
    after = prefetch(p, before)
    assert validate(p, after) == []
    assert [r for r in after.residencies if r.tensor == "a" and not r.spilled] == [Residency("a", 3, 5, 12)]
    assert [r for r in after.residencies if r.tensor == "d"] == [Residency("d", 3, 5, 20)]
    assert moved_loads(before, after) == 1
    assert evaluate(p, after).latency_cycles < evaluate(p, before).latency_cycles
    assert evaluate(p, after).non_compulsory_bytes == evaluate(p, before).non_compulsory_bytes


def test_max_interval_bounds_how_early_a_load_starts():
    p = problem()
    assert prefetch(p, plan(8), max_interval=0) == plan(8)
    assert prefetch(p, plan(8), max_interval=1) == prefetch(p, plan(8))


def test_xla_msa_with_prefetch_hides_the_reload():
    p = problem()
    plain = run(p, "xla-msa", XlaParams(prefetch="off"), RunOptions(schedule=SCHEDULE))
    fast = run(p, "xla-msa", XlaParams(prefetch="on"), RunOptions(schedule=SCHEDULE))
    assert plain.cost.non_compulsory_bytes == fast.cost.non_compulsory_bytes > 0
    assert fast.cost.latency_cycles < plain.cost.latency_cycles
    assert fast.stats["prefetched_loads"] >= 1
    # "auto" follows the objective: off under bytes, on under latency.
    assert run(p, "xla-msa", options=RunOptions(schedule=SCHEDULE)).plan == plain.plan
    auto = run(problem("latency"), "xla-msa", options=RunOptions(schedule=SCHEDULE))
    assert auto.cost.latency_cycles == fast.cost.latency_cycles
    assert auto.objective == auto.cost.latency_cycles


@pytest.mark.parametrize("seed", range(6))
def test_prefetch_keeps_random_plans_valid_and_never_slower(seed):
    graph = random_dag(seed, n_ops=10)
    hw = replace(IDEAL, macs_per_cycle=4.0)
    base = Problem(graph, 10**6, hw)
    from cosma.core.analysis import min_capacity

    p = Problem(graph, min_capacity(base) + 16, hw)
    for name in ("xla-msa", "best-greedy"):
        before = run(p, name).plan
        after = prefetch(p, before)
        assert validate(p, after) == []
        assert evaluate(p, after).latency_cycles <= evaluate(p, before).latency_cycles
        assert evaluate(p, after).non_compulsory_bytes == evaluate(p, before).non_compulsory_bytes


def test_unknown_objective_is_refused():
    with pytest.raises(ValueError, match="unknown objective"):
        Problem(GRAPH, 24, IDEAL, objective="energy")
    with pytest.raises(ValueError):
        evaluate(problem(), plan(8)).value("energy")


def test_cost_value_and_key_follow_the_objective():
    cost = evaluate(problem(), plan(8))
    assert cost.value() == cost.value("bytes") == cost.non_compulsory_bytes
    assert cost.value("latency") == cost.latency_cycles
    assert cost.key("latency") == (cost.latency_cycles, cost.non_compulsory_bytes)


SOLVERS = sorted(set(load_all()) - {"muzero"})


@pytest.mark.parametrize("name", SOLVERS)
def test_every_solver_is_honest_under_latency(name):
    p = problem("latency")
    result = run(p, name, options=RunOptions(time_limit=10))
    assert result.plan is not None and validate(p, result.plan) == []
    assert result.objective == result.cost.latency_cycles
    if name in ("exact", "auto"):  # they prove latency bounds (cosma.exact.latency; auto through exact here)
        assert result.bound is not None and result.bound <= result.objective
        return
    # The others prove bytes only: no bound in cycles, never OPTIMAL.
    assert result.bound is None and result.status is not Status.OPTIMAL
    assert result.gap is None


def test_exact_under_latency_prefetches_its_bytes_optimal_plan():
    by_bytes = run(problem(), "exact", options=RunOptions(time_limit=10))
    by_latency = run(problem("latency"), "exact", options=RunOptions(time_limit=10))
    assert by_bytes.status is Status.OPTIMAL
    assert by_latency.cost.non_compulsory_bytes == by_bytes.cost.non_compulsory_bytes
    assert by_latency.cost.latency_cycles <= by_bytes.cost.latency_cycles
    assert by_latency.stats["bytes_bound"] == by_bytes.bound


def test_cli_objective_latency(tmp_path, capsys):
    from cosma.cli.main import main

    model = _tiny_onnx(tmp_path)
    out = tmp_path / "plan.json"
    code = main(["optimize", str(model), "--scratchpad", "M_R", "--objective", "latency", "--solver", "xla-msa",
                 "-o", str(out), "-q"])  # fmt: skip
    text = capsys.readouterr().out
    assert code == 0, text
    assert "latency" in text and "non-compulsory" in text
    assert "latency (then bytes)" in text
    assert json.loads(out.read_text())["objective"]["name"] == "latency"
    assert main(["validate", str(model), str(out)]) == 0


def test_cli_unknown_objective_is_a_usage_error(tmp_path, capsys):
    from cosma.cli.main import main

    model = _tiny_onnx(tmp_path)
    with pytest.raises(SystemExit) as e:
        main(["optimize", str(model), "--scratchpad", "M_R", "--objective", "energy"])
    assert e.value.code == 2
    assert "objective" in capsys.readouterr().err


def test_api_objective(tmp_path):
    import cosma
    from cosma.core.errors import UsageError

    model = _tiny_onnx(tmp_path)
    result = cosma.optimize(str(model), scratchpad="M_R", solver="xla-msa", objective="latency")
    assert result.problem.objective == "latency"
    assert result.status is Status.FEASIBLE
    with pytest.raises(UsageError, match="objective"):
        cosma.optimize(str(model), scratchpad="M_R", objective="energy")


def _tiny_onnx(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 8, 8])
    nodes = [
        helper.make_node("Relu", ["x"], ["a"], name="r0"),
        helper.make_node("Relu", ["a"], ["b"], name="r1"),
        helper.make_node("Add", ["a", "b"], ["y"], name="add"),
    ]
    graph = helper.make_graph(nodes, "tiny", [x], [y])
    path = tmp_path / "tiny.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def test_bench_latency_cell_has_the_agent_column():
    """The benchmark's cell, on the hand-made graph: the agent playing the latency game (the
    shipped checkpoint through the muzero solver) hides a's reload as xla-msa+pf does."""
    from cosma.harness.bench_latency import COLUMNS, bench_cell

    cell = bench_cell(problem(), "hide", "acts+weights", "M_R", 5.0, 1, 5.0, agent_limit=5.0)
    assert set(cell.costs) == set(COLUMNS) and "muzero" in COLUMNS
    agent = cell.costs["muzero"]
    assert agent.latency_cycles <= cell.costs["xla-msa+pf"].latency_cycles < cell.costs["xla-msa"].latency_cycles
    assert cell.agent_winner and cell.agent_seconds > 0
