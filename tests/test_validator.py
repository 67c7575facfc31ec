"""The validator rejects one hand-built broken plan per rule, and accepts the valid ones.

Every fixture is drawn as a memory timeline: steps left to right, addresses bottom to
top, one letter per tensor resident at that step and address range.
"""

from dataclasses import replace

import pytest

from cosma.core.analysis import make_plan, min_capacity
from cosma.core.hardware import get_hardware
from cosma.core.ir import Plan, Problem, Residency
from cosma.core.synthetic import build_graph
from cosma.core.validator import PlanInvalid, Rule, check, validate

# The diamond: f reads x and makes a; g reads a and weight w, makes b; h reads a, b, makes y.
#
#   x(4) -f-> a(8) -g(w:2)-> b(2)
#             a, b -h-> y(4, graph output)
#
# Capacity 16, byte alignment. The valid plan, schedule f g h:
#
#   addr   step0 step1 step2
#   14-16    .     .     y
#   12-14    .     w     y
#    4-12    a     a     a
#    2-4     x     .     .
#    0-2     x     b     b
DIAMOND = build_graph(
    "diamond",
    {"x": 4, "a": 8, "w": 2, "b": 2, "y": 4},
    [("f", ["x"], ["a"]), ("g", ["a", "w"], ["b"]), ("h", ["a", "b"], ["y"])],
    inputs=("x",),
    weights=("w",),
    outputs=("y",),
)
IDEAL = get_hardware("ideal")
PROBLEM = Problem(DIAMOND, capacity=16, hardware=IDEAL)
SCHEDULE = ("f", "g", "h")
VALID = (
    Residency("x", 0, 1, 0),
    Residency("a", 0, 3, 4),
    Residency("w", 1, 2, 12),
    Residency("b", 1, 3, 0),
    Residency("y", 2, 3, 12),
)


def rules(problem: Problem, plan: Plan) -> set[Rule]:
    return {v.rule for v in validate(problem, plan)}


def with_residency(index: int, **changes) -> Plan:
    rs = list(VALID)
    rs[index] = replace(rs[index], **changes)
    return Plan(SCHEDULE, tuple(rs))


def test_valid_plan_passes():
    assert validate(PROBLEM, Plan(SCHEDULE, VALID)) == []
    check(PROBLEM, Plan(SCHEDULE, VALID))
    assert min_capacity(PROBLEM) == 14  # h: a + b + y


def test_schedule_must_run_each_operator_once():
    assert rules(PROBLEM, Plan(("f", "g"), VALID)) == {Rule.SCHEDULE_NOT_PERMUTATION}
    assert rules(PROBLEM, Plan(("f", "g", "g"), VALID)) == {Rule.SCHEDULE_NOT_PERMUTATION}
    assert rules(PROBLEM, Plan(("f", "g", "zz"), VALID)) == {Rule.SCHEDULE_NOT_PERMUTATION}


def test_operator_run_before_its_input_exists():
    # h before g: h reads b, which g makes later.
    plan = Plan(("f", "h", "g"), VALID)
    assert Rule.RUN_BEFORE_INPUT in rules(PROBLEM, plan)


def test_operand_not_resident():
    #   addr   step0 step1 step2
    #    4-12    a     a     .     <- a evicted before h reads it at step 2
    plan = with_residency(1, end=2)
    assert rules(PROBLEM, plan) == {Rule.OPERAND_NOT_RESIDENT}


def test_output_must_be_resident_when_produced():
    # y never placed: h at step 2 writes it nowhere.
    plan = Plan(SCHEDULE, VALID[:4])
    assert rules(PROBLEM, plan) == {Rule.OPERAND_NOT_RESIDENT}


def test_overlap_in_time_and_address():
    #   addr   step0 step1 step2
    #   10-12    .     .     y     <- y placed at 10 overlaps a's top bytes
    #    4-12    a     a     a
    plan = with_residency(4, offset=10)
    assert rules(PROBLEM, plan) == {Rule.OVERLAP}


def test_same_address_at_different_times_is_fine():
    # x at 0-4 (step 0) and b at 0-2 (steps 1-2) share addresses, never a step.
    assert Rule.OVERLAP not in rules(PROBLEM, Plan(SCHEDULE, VALID))


def test_out_of_capacity():
    #   addr   step0 step1 step2
    #   14-18    .     .     y     <- past capacity 16
    plan = with_residency(4, offset=14)
    assert rules(PROBLEM, plan) == {Rule.OUT_OF_CAPACITY}
    assert rules(PROBLEM, with_residency(0, offset=-1)) >= {Rule.OUT_OF_CAPACITY}


def test_misaligned():
    hw = replace(IDEAL, alignment=4)
    problem = Problem(DIAMOND, capacity=24, hardware=hw)  # footprints: x4 a8 w4 b4 y4
    #   addr   step0 step1 step2
    #   16-20    .     w     y
    #    4-12    a     a     a
    #    0-4     x     b     b
    good = (
        Residency("x", 0, 1, 0),
        Residency("a", 0, 3, 4),
        Residency("w", 1, 2, 16),
        Residency("b", 1, 3, 0),
        Residency("y", 2, 3, 16),
    )
    assert validate(problem, Plan(SCHEDULE, good)) == []
    bad = good[:4] + (Residency("y", 2, 3, 18),)  # 18 is not a multiple of 4
    assert rules(problem, Plan(SCHEDULE, bad)) == {Rule.MISALIGNED}


def test_footprint_rounds_up_to_alignment():
    hw = replace(IDEAL, alignment=4)
    problem = Problem(DIAMOND, capacity=24, hardware=hw)
    # b has 2 bytes but a 4-byte footprint: w at 0-4 and b at 0-4 would collide even though w is 2 bytes.
    assert problem.footprint("b") == 4
    plan = (
        Residency("x", 0, 1, 0),
        Residency("a", 0, 3, 4),
        Residency("w", 1, 2, 12),
        Residency("b", 1, 3, 12),  # 12-16 while w holds 12-16 at step 1
        Residency("y", 2, 3, 16),
    )
    assert rules(problem, Plan(SCHEDULE, plan)) == {Rule.OVERLAP}


def test_activation_resident_before_produced():
    #   addr   step0 step1 step2
    #   16-18    b     b     b     <- b reserved at step 0, but g makes it at step 1
    plan = with_residency(3, start=0, offset=16)
    assert rules(replace(PROBLEM, capacity=20), plan) == {Rule.RESIDENT_BEFORE_PRODUCED}


def test_resident_after_last_use():
    #   addr   step0 step1 step2
    #   12-14    .     w     w     <- w kept through step 2, but only g reads it
    plan = with_residency(2, end=3)
    got = rules(PROBLEM, plan)
    assert Rule.RESIDENT_AFTER_LAST_USE in got


def test_empty_or_outside_interval():
    assert rules(PROBLEM, with_residency(0, end=0)) >= {Rule.EMPTY_OR_OUTSIDE}
    assert rules(PROBLEM, with_residency(4, end=4)) >= {Rule.EMPTY_OR_OUTSIDE}


def test_unknown_tensor():
    plan = Plan(SCHEDULE, VALID + (Residency("ghost", 0, 1, 0),))
    assert rules(PROBLEM, plan) == {Rule.UNKNOWN_TENSOR}
    # Weights are not scratchpad tensors when they are not counted.
    activations_only = replace(PROBLEM, weights_counted=False)
    assert rules(activations_only, Plan(SCHEDULE, VALID)) == {Rule.UNKNOWN_TENSOR}
    assert validate(activations_only, Plan(SCHEDULE, tuple(r for r in VALID if r.tensor != "w"))) == []


# The skip graph: a is made at step 0 and read again at step 3.
#
#   x(4) -f-> a(6) -g-> b(6) -h-> c(6);  a, c -k-> y(2, output)
#
# Capacity 14 cannot keep a across steps 1-3 (a + b + c would need 18 at step 2), so a is
# spilled after step 1 and reloaded before step 3.
SKIP = build_graph(
    "skip",
    {"x": 4, "a": 6, "b": 6, "c": 6, "y": 2},
    [("f", ["x"], ["a"]), ("g", ["a"], ["b"]), ("h", ["b"], ["c"]), ("k", ["a", "c"], ["y"])],
    inputs=("x",),
    outputs=("y",),
)
SKIP_PROBLEM = Problem(SKIP, capacity=14, hardware=IDEAL)
SKIP_SCHEDULE = ("f", "g", "h", "k")
#   addr   step0 step1 step2 step3
#   12-14    .     .     .     y
#    6-12    a     a(v)  c     c
#    0-6   x(0-4)  b     b     a(^)      v: spilled when evicted, ^: reloaded
SKIP_VALID = make_plan(
    SKIP_PROBLEM,
    SKIP_SCHEDULE,
    [
        Residency("x", 0, 1, 0),
        Residency("a", 0, 2, 6),
        Residency("b", 1, 3, 0),
        Residency("c", 2, 4, 6),
        Residency("a", 3, 4, 0),
        Residency("y", 3, 4, 12),
    ],
)


def test_spill_and_reload_is_valid():
    assert validate(SKIP_PROBLEM, SKIP_VALID) == []
    spilled = [r for r in SKIP_VALID.residencies if r.spilled]
    assert [(r.tensor, r.start) for r in spilled] == [("a", 0)]


def test_reload_without_spill():
    rs = tuple(replace(r, spilled=False) for r in SKIP_VALID.residencies)
    assert rules(SKIP_PROBLEM, Plan(SKIP_SCHEDULE, rs)) == {Rule.RELOAD_WITHOUT_SPILL}


def test_spill_written_twice_or_of_a_non_activation():
    rs = tuple(replace(r, spilled=True) if r.tensor == "a" else r for r in SKIP_VALID.residencies)
    assert rules(SKIP_PROBLEM, Plan(SKIP_SCHEDULE, rs)) == {Rule.BAD_SPILL}
    rs = tuple(replace(r, spilled=True) if r.tensor == "x" else r for r in SKIP_VALID.residencies)
    assert rules(SKIP_PROBLEM, Plan(SKIP_SCHEDULE, rs)) == {Rule.BAD_SPILL}


def test_moved_while_resident():
    #   addr   step0 step1 step2 step3
    #    6-12    a     a                 <- first stay of a
    #    0-6           a     c     c     <- a second copy of a overlapping the first in time
    rs = list(SKIP_VALID.residencies)
    i = next(i for i, r in enumerate(rs) if r.tensor == "a" and r.start == 3)
    rs[i] = replace(rs[i], start=1)
    got = rules(SKIP_PROBLEM, Plan(SKIP_SCHEDULE, tuple(rs)))
    assert Rule.MOVED_WHILE_RESIDENT in got


def test_relocation_through_dram_is_allowed():
    # a leaves after step 0 and comes back at step 1 at a new offset: a spill plus a reload, legal.
    #   addr   step0 step1
    #    6-12    a     .
    #    0-6   x(0-4)  a
    problem = replace(SKIP_PROBLEM, capacity=18)
    plan = make_plan(
        problem,
        SKIP_SCHEDULE,
        [
            Residency("x", 0, 1, 0),
            Residency("a", 0, 1, 6),
            Residency("a", 1, 4, 0),
            Residency("b", 1, 3, 6),
            Residency("c", 2, 4, 12),
            Residency("y", 3, 4, 6),
        ],
    )
    assert validate(problem, plan) == []


def test_check_raises_with_every_rule_named():
    plan = with_residency(4, offset=14)
    with pytest.raises(PlanInvalid) as err:
        check(PROBLEM, plan)
    assert "OUT_OF_CAPACITY" in str(err.value)


def test_residency_of_a_tensor_nobody_uses():
    # u is a graph input no operator reads: a residency for it is dead weight (and would be charged).
    graph = build_graph("unused", {"x": 4, "u": 4, "y": 4}, [("f", ["x"], ["y"])], inputs=("x", "u"), outputs=("y",))
    problem = Problem(graph, capacity=12, hardware=IDEAL)
    plan = Plan(("f",), (Residency("x", 0, 1, 0), Residency("y", 0, 1, 4), Residency("u", 0, 1, 8)))
    assert rules(problem, plan) == {Rule.RESIDENT_AFTER_LAST_USE}
