"""Every committed zoo file (models/zoo/, models/nas/) lowers to a well-formed graph."""

from __future__ import annotations

import glob
import os
import sys

import pytest

from cosma.core.analysis import is_topological, live_intervals, make_plan, min_capacity, peak_live_bytes
from cosma.core.cost import evaluate
from cosma.core.hardware import get_hardware
from cosma.core.ir import Problem, Residency, TensorKind
from cosma.core.onnx_lower import load_model
from cosma.core.validator import validate

MODELS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "models")
ZOO = sorted(glob.glob(os.path.join(MODELS, "zoo", "*.onnx")))
NAS = sorted(glob.glob(os.path.join(MODELS, "nas", "*.onnx")))

# The networks the evaluation needs (issue #3): a missing file is a broken zoo.
REQUIRED = {
    "resnet18", "resnet50", "resnext50", "densenet121", "mobilenetv2", "efficientnet_b0",
    "vit_b_16", "transformer",
}  # fmt: skip


def test_required_models_present():
    names = {os.path.splitext(os.path.basename(p))[0] for p in ZOO}
    assert REQUIRED <= names
    assert names & {"gpt2", "bert_base"}


def test_files_are_small_and_lowercase():
    for path in ZOO + NAS:
        name = os.path.basename(path)
        assert name == name.lower()
        assert os.path.getsize(path) < 2 * 1024 * 1024, name


@pytest.mark.parametrize("path", ZOO + NAS, ids=lambda p: os.path.relpath(p, MODELS))
def test_lowers_to_a_well_formed_graph(path):
    graph = load_model(path)
    assert graph.operators
    assert len({op.name for op in graph.operators}) == len(graph.operators)
    for op in graph.operators:
        assert op.outputs
        assert len(set(op.inputs)) == len(op.inputs) and len(set(op.outputs)) == len(op.outputs)
        for t in (*op.inputs, *op.outputs):
            assert t in graph.tensors, f"{op.name} reads or writes unknown tensor {t}"
    for t in graph.tensors.values():
        assert t.size > 0 and all(d > 0 for d in t.shape)
        produced = t.name in graph.producer
        assert produced == (t.kind in (TensorKind.ACTIVATION, TensorKind.OUTPUT)), t.name
    kinds = {t.kind for t in graph.tensors.values()}
    assert TensorKind.INPUT in kinds and TensorKind.OUTPUT in kinds

    hardware = get_hardware("edge-npu")
    problem = Problem(graph, hardware.capacity, hardware)
    order = [op.name for op in graph.operators]
    assert is_topological(problem, order)
    assert 0 < min_capacity(problem) <= peak_live_bytes(problem, order)


@pytest.mark.parametrize("path", ZOO + NAS, ids=lambda p: os.path.relpath(p, MODELS))
def test_lowered_graph_is_a_valid_problem(path):
    """The simplest plan, file order with every tensor at its own offset for its whole
    live interval, passes the one validator with no non-compulsory traffic: the lowered
    graph obeys the problem model (kinds, producers, operands)."""
    graph = load_model(path)
    hardware = get_hardware("edge-npu")
    order = [op.name for op in graph.operators]
    unbounded = Problem(graph, 1, hardware)
    residencies, offset = [], 0
    for t, (start, end) in live_intervals(unbounded, order).items():
        residencies.append(Residency(t, start, end, offset))
        offset += unbounded.footprint(t)
    problem = Problem(graph, offset, hardware)
    plan = make_plan(problem, order, residencies)
    assert validate(problem, plan) == []
    assert evaluate(problem, plan).non_compulsory_bytes == 0


def test_strip_weights_keeps_shapes_and_small_integer_tensors():
    """The export tooling's stripping: float weights lose their bytes (marked external),
    small integer tensors (shape arguments) stay inline, and the result lowers the same."""
    import importlib.util

    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    spec = importlib.util.spec_from_file_location("_zoo_export_tooling", os.path.join(MODELS, "export_zoo.py"))
    export_zoo = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = export_zoo  # dataclasses look their module up there
    spec.loader.exec_module(export_zoo)

    w = numpy_helper.from_array(np.ones((16, 8), dtype=np.float32), "w")
    shape = numpy_helper.from_array(np.array([4, 4], dtype=np.int64), "shape")
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["m"], name="matmul"),
        helper.make_node("Reshape", ["m", "shape"], ["r"], name="reshape"),
        helper.make_node("Relu", ["r"], ["y"], name="relu"),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [2, 16])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)],
        [w, shape],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    from cosma.core.onnx_lower import lower

    before = lower(model)
    assert export_zoo.strip_weights(model) == 1
    stripped_w, kept_shape = model.graph.initializer
    assert stripped_w.data_location == onnx.TensorProto.EXTERNAL and not stripped_w.raw_data
    assert list(numpy_helper.to_array(kept_shape)) == [4, 4]
    after = lower(model)
    assert {t.name: t.size for t in after.tensors.values()} == {t.name: t.size for t in before.tensors.values()}
