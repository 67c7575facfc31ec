"""The cost model on hand-worked plans (fixtures from test_validator)."""

from dataclasses import replace

from cosma.core.analysis import compulsory_bytes
from cosma.core.cost import evaluate
from cosma.core.ir import Plan
from tests.test_validator import PROBLEM, SCHEDULE, SKIP_PROBLEM, SKIP_VALID, VALID


def test_spill_and_reload_counted_once_each():
    cost = evaluate(SKIP_PROBLEM, SKIP_VALID)
    # compulsory: input x (4) loaded, output y (2) stored; a (6) spilled once, reloaded once.
    assert cost.compulsory_bytes == 4 + 2 == compulsory_bytes(SKIP_PROBLEM)
    assert cost.spill_bytes == 6
    assert cost.reload_bytes == 6
    assert cost.non_compulsory_bytes == 12
    # No MACs on the ideal machine: latency is DMA bytes at 1 B/cycle per step:
    # step 0 loads x (4); step 1 spills a (6); step 2 nothing; step 3 reloads a (6), stores y (2).
    assert cost.latency_cycles == 4 + 6 + 0 + 8


def test_no_spills_no_non_compulsory_traffic():
    cost = evaluate(PROBLEM, Plan(SCHEDULE, VALID))
    assert cost.compulsory_bytes == 4 + 2 + 4  # x, w, y
    assert cost.non_compulsory_bytes == 0
    assert cost.streamed_weight_bytes == 0


def test_uncounted_weights_stream_at_every_use():
    problem = replace(PROBLEM, weights_counted=False)
    plan = Plan(SCHEDULE, tuple(r for r in VALID if r.tensor != "w"))
    cost = evaluate(problem, plan)
    assert cost.compulsory_bytes == 4 + 4  # x and y; the weight is outside the problem
    assert cost.streamed_weight_bytes == 2
    assert cost.non_compulsory_bytes == 0


def test_latency_is_a_per_step_roofline():
    from cosma.core.ir import Hardware, Problem, Residency
    from cosma.core.synthetic import build_graph

    g = build_graph("one", {"x": 8, "y": 8}, [("f", ["x"], ["y"])], inputs=("x",), outputs=("y",), macs={"f": 100})
    hw = Hardware("t", 64, 1, dram_bytes_per_cycle=2.0, macs_per_cycle=10.0, element_bytes=1)
    plan = Plan(("f",), (Residency("x", 0, 1, 0), Residency("y", 0, 1, 8)))
    # compute 100/10 = 10 cycles; DMA (8 in + 8 out) / 2 = 8 cycles: compute-bound.
    assert evaluate(Problem(g, 64, hw), plan).latency_cycles == 10
    slow = replace(hw, dram_bytes_per_cycle=0.5)  # DMA 32 cycles: memory-bound
    assert evaluate(Problem(g, 64, slow), plan).latency_cycles == 32
