"""Large synthetic graphs and the linear-time paths behind lowering, tiers and validation:
each fast path is checked against the plain computation it replaces."""

from __future__ import annotations

import random
from dataclasses import replace

import onnx
import pytest

from cosma.core.analysis import min_capacity, peak_live_bytes
from cosma.core.hardware import PRESETS
from cosma.core.interface import RunOptions, run
from cosma.core.ir import Plan, Problem
from cosma.core.onnx_lower import load_model
from cosma.core.synthetic import (
    TRANSFORMER_BLOCK,
    random_dag,
    randwire_graph,
    transformer_stack,
    transformer_stack_onnx,
)
from cosma.core.validator import Rule, _any_overlap, _overlaps, validate
from cosma.schedules.minpeak import _crossing_bytes, _greedy, _Piece, _split, schedule_min_peak

HW = PRESETS["edge-npu"]


def test_transformer_stack_shape():
    g = transformer_stack(3, d_model=64, seq=16, heads=2)
    assert len(g.operators) == 3 * len(TRANSFORMER_BLOCK)
    kinds = [t.kind.value for t in g.tensors.values()]
    assert kinds.count("input") == 1 and kinds.count("output") == 1
    assert g.tensors["b0.s"].size == 2 * 16 * 16  # heads x seq x seq, 8-bit
    assert g.tensors["b1.w1"].size == 64 * 256
    assert all(op.macs > 0 for op in g.operators)
    # a chain of blocks: block i+1 reads block i's output
    assert g.producer["x1"] == "b0.res2" and "b1.ln1" in g.consumers["x1"]


def test_transformer_seed_changes_sizes_not_structure():
    a, b = transformer_stack(4, seed=1), transformer_stack(4)
    assert [op.inputs for op in a.operators] == [op.inputs for op in b.operators]
    assert [t.size for t in a.tensors.values()] != [t.size for t in b.tensors.values()]


def test_transformer_onnx_lowers_to_the_same_graph(tmp_path):
    path = tmp_path / "stack.onnx"
    onnx.save(transformer_stack_onnx(3, d_model=32, seq=8, heads=4), path)
    lowered = load_model(path, dtype_bytes=1)
    built = transformer_stack(3, d_model=32, seq=8, heads=4)
    key = lambda op: (op.name, op.op_type, op.inputs, op.outputs, op.macs)  # noqa: E731
    assert [key(op) for op in lowered.operators] == [key(op) for op in built.operators]
    assert {t: (x.size, x.kind) for t, x in lowered.tensors.items()} == {
        t: (x.size, x.kind) for t, x in built.tensors.items()
    }


@pytest.mark.parametrize(
    "graph", [transformer_stack(6, seed=2), randwire_graph(3, 40)] + [random_dag(s, 30) for s in range(8)]
)
@pytest.mark.parametrize("weights", [True, False])
def test_crossing_bytes_match_the_scan(graph, weights):
    problem = Problem(graph, HW.capacity, HW, weights)
    pieces, users = _split(problem, True)
    before: set[str] = set()
    for ops, const in zip(pieces, _crossing_bytes(problem, pieces, users)):
        assert _Piece(problem, ops, before, users).const == const
        before.update(ops)


def test_piece_ready_tracking_matches_the_scan():
    problem = Problem(randwire_graph(5, 48), HW.capacity, HW, True)
    pieces, users = _split(problem, False)
    piece = _Piece(problem, pieces[0], set(), users)
    rng = random.Random(0)
    done, ready = 0, tuple(piece.ready(0))
    while done != piece.full:
        assert list(ready) == piece.ready(done)
        i = rng.choice(ready)
        done |= 1 << i
        ready = piece.advance(ready, done, i)
    order, peak = _greedy(piece)
    assert peak == peak_live_bytes(problem, [pieces[0][i] for i in order])


def test_min_peak_on_a_long_stack_is_proven():
    g = transformer_stack(40, d_model=64, seq=32)  # 640 operators, one piece per block at most
    problem = Problem(g, HW.capacity, HW, True)
    result = schedule_min_peak(problem, time_limit=30)
    assert result.proven_optimal and result.peak == peak_live_bytes(problem, result.schedule)


def test_overlap_sweep_agrees_with_the_step_scan():
    rng = random.Random(3)
    for seed in range(12):
        graph = random_dag(seed, 14, size_range=(1, 300))
        hw = PRESETS["ideal"]
        problem = Problem(graph, 1, hw, True)
        problem = replace(problem, capacity=min_capacity(problem))
        plan = run(problem, "best-greedy", options=RunOptions(time_limit=5)).plan
        for _ in range(15):
            rs = list(plan.residencies)
            i = rng.randrange(len(rs))
            rs[i] = replace(rs[i], offset=max(0, rs[i].offset + rng.randint(-40, 40)))
            by_tensor: dict = {}
            for r in rs:
                by_tensor.setdefault(r.tensor, []).append(r)
            named = _overlaps(problem, by_tensor, len(plan.schedule))
            assert _any_overlap(problem, rs) == bool(named)
            overlaps = [v for v in validate(problem, Plan(plan.schedule, tuple(rs))) if v.rule is Rule.OVERLAP]
            assert [str(v) for v in overlaps] == [str(v) for v in named]
