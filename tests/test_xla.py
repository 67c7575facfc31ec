"""The XLA-style memory space assignment baseline (``xla-msa``) and its decision engine."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cosma.core.analysis import make_plan, min_capacity
from cosma.core.cost import evaluate
from cosma.core.errors import UsageError
from cosma.core.hardware import get_hardware
from cosma.core.interface import RunOptions, Status, run
from cosma.core.ir import Problem
from cosma.core.synthetic import build_graph, random_dag
from cosma.core.validator import validate
from mallocgame.instances import ZOO_DIR, load_zoo_graph, tier_capacities
from solvers.xla import EVICT, ORDERS, MsaState, MsaTables, XlaParams, memory_boundedness

IDEAL = get_hardware("ideal")  # alignment 1: footprints are sizes
EDGE = get_hardware("edge-npu")  # alignment 64


def skip_graph():
    """x -op0-> a -op1-> b -op2-> c, then op3 reads a and c: a skips over op1 and op2.

    Sizes: x 2, a 4, b 6, c 2, y 2. Operands per step: op0 {x, a} = 6, op1 {a, b} = 10,
    op2 {b, c} = 8, op3 {a, c, y} = 8, so M_R = 10. At capacity 10:

        step      0    1    2    3
        a        [==][==]  ..  [==]     a (4) cannot stay over step 2:
        b             [===][===]        b + c + a = 12 > 10
        c                  [=][=]

    b's two uses are consecutive steps and op2 needs b and c, so the only choice is to
    evict a after step 1 and reload it for step 3: spill 4 + reload 4 = 8 bytes, optimal.
    """
    return build_graph(
        "skip",
        {"x": 2, "a": 4, "b": 6, "c": 2, "y": 2},
        [("op0", ["x"], ["a"]), ("op1", ["a"], ["b"]), ("op2", ["b"], ["c"]), ("op3", ["a", "c"], ["y"])],
        inputs=("x",),
        outputs=("y",),
    )


def test_hand_checked_skip_connection():
    problem = Problem(skip_graph(), 10, IDEAL)
    assert min_capacity(problem) == 10
    for order in ORDERS:
        result = run(problem, "xla-msa", XlaParams(order=order))
        assert result.status is Status.FEASIBLE
        assert result.cost.spill_bytes == 4 and result.cost.reload_bytes == 4
        assert result.objective == 8
    # With room for a over step 2 nothing moves.
    assert run(Problem(skip_graph(), 12, IDEAL), "xla-msa").objective == 0


def test_below_min_capacity_is_infeasible_not_an_error():
    result = run(Problem(skip_graph(), 9, IDEAL), "xla-msa")
    assert result.status is Status.INFEASIBLE and result.plan is None
    assert "M_R" in result.message


def test_malformed_input_raises():
    problem = Problem(skip_graph(), 10, IDEAL)
    with pytest.raises(UsageError):
        run(problem, "xla-msa", XlaParams(order="nope"))
    with pytest.raises(UsageError):
        run(problem, "xla-msa", options=RunOptions(schedule=("op1", "op0", "op2", "op3")))


def test_boundedness_prefers_reused_tensors():
    """A tensor read three times saves more reloads per byte than one read once."""
    graph = build_graph(
        "reuse",
        {"x": 8, "a": 8, "b": 8, "c": 8, "y": 8},
        [("f", ["x"], ["a"]), ("g", ["a"], ["b"]), ("h", ["a", "b"], ["c"]), ("k", ["a", "c"], ["y"])],
        inputs=("x",),
        outputs=("y",),
    )
    score = memory_boundedness(Problem(graph, 64, IDEAL), ("f", "g", "h", "k"))
    assert score["a"] > score["b"] > 0


def test_engine_plan_follows_make_plan_and_evict_all_is_valid():
    """Evicting every segment gives the most traffic the game allows; the engine's plan
    sets spill flags exactly as ``make_plan`` does, and the cost model agrees."""
    problem = Problem(random_dag(7, 14), 400, IDEAL)
    tables = MsaTables(problem, tuple(op.name for op in problem.graph.operators))
    state = MsaState(tables)
    while not state.done:
        state.apply(EVICT)
    plan = state.plan()
    assert validate(problem, plan) == []
    assert plan == make_plan(problem, plan.schedule, plan.residencies)
    expected = sum(
        tables.size[i] * (len(u) - 1 + (1 if tables.is_act[i] and len(u) > 1 else 0)) for i, u in enumerate(tables.uses)
    )
    assert evaluate(problem, plan).non_compulsory_bytes == state.nc_bytes == expected


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), slack=st.floats(0.0, 1.0), pick=st.integers(0, 7))
def test_all_offsets_adds_choices_and_keeps_the_first(seed, slack, pick):
    """With ``all_offsets`` every decision offers the default candidates' offsets and maybe
    more, the best fit first as before (so XLA's rule is unchanged); any candidate played
    leads to a valid plan."""
    graph = random_dag(seed, 14, size_range=(1, 200))
    tiers = tier_capacities(graph, EDGE, True)
    problem = Problem(graph, tiers["M_R"] + int(slack * (tiers["M_P"] - tiers["M_R"])), EDGE, True)
    tables = MsaTables(problem, tuple(op.name for op in problem.graph.operators))
    state = MsaState(tables, all_offsets=True)
    while not state.done:
        default = state.clone()
        default.all_offsets, default._options = False, None
        first = [c.offset for c in default.options(8)]
        every = [c.offset for c in state.options(64)]
        assert set(first) <= set(every) and first[:1] == every[:1]
        state.apply(EVICT if not every else (pick + state.k) % (len(every) + 1) - 1)
    plan = state.plan()
    assert validate(problem, plan) == []
    assert evaluate(problem, plan).non_compulsory_bytes == state.nc_bytes


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 10_000),
    n_ops=st.integers(1, 16),
    weights=st.booleans(),
    slack=st.floats(0.0, 1.2),
    order=st.sampled_from(ORDERS),
    right=st.booleans(),
)
def test_plans_validate_at_every_capacity_from_m_r(seed, n_ops, weights, slack, order, right):
    graph = random_dag(seed, n_ops, size_range=(1, 200))
    hw = EDGE if seed % 2 else IDEAL
    tiers = tier_capacities(graph, hw, weights)
    capacity = tiers["M_R"] + int(slack * (tiers["M_P"] - tiers["M_R"]))
    problem = Problem(graph, capacity, hw, weights)
    result = run(problem, "xla-msa", XlaParams(order=order, more_offsets=right))  # run() validates
    assert result.status is Status.FEASIBLE
    cost = result.cost
    assert cost.non_compulsory_bytes == cost.spill_bytes + cost.reload_bytes
    assert result.stats["evictions"] == 0 or cost.non_compulsory_bytes > 0


@pytest.mark.parametrize("weights", [True, False])
def test_zoo_model_at_every_tier(weights):
    path = ZOO_DIR / "resnet18.onnx"
    if not path.exists():
        pytest.skip("models/zoo/resnet18.onnx not present")
    graph = load_zoo_graph(str(path))
    for tier, capacity in tier_capacities(graph, EDGE, weights).items():
        result = run(Problem(graph, capacity, EDGE, weights), "xla-msa")
        assert result.status is Status.FEASIBLE, tier
        if tier == "M_P" and not weights:
            assert result.objective == 0  # a near-chain: the peak fits without fragmentation
