"""The Python API (cosma.api): the README's example runs as written, and each call's contract."""

import json
import re
import subprocess
import sys
from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper

import cosma
from cosma.core.errors import CapacityError, ModelError, UsageError

REPO = Path(__file__).resolve().parents[1]
MODEL = REPO / "models" / "zoo" / "resnet18.onnx"


def readme_example() -> str:
    text = (REPO / "README.md").read_text()
    section = text.split("## Python API", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(blocks) == 1, "the Python API section has one python example"
    return blocks[0]


def test_readme_example_runs(tmp_path, monkeypatch):
    (tmp_path / "models").symlink_to(REPO / "models")
    monkeypatch.chdir(tmp_path)
    exec(compile(readme_example(), "README.md", "exec"), {"__name__": "readme"})
    data = json.loads((tmp_path / "plan.json").read_text())
    assert data["format"] == "cosma-plan/1" and data["lowering"]["dtype_bytes"] == 1


def test_import_cosma_is_cheap():
    code = (
        "import sys, cosma, cosma.core.ir; "
        "print(sorted(m for m in sys.modules if m.startswith(('cosma', 'onnx', 'ortools', 'torch'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['cosma', 'cosma.core', 'cosma.core.ir']"
    assert set(cosma.__all__) >= {"optimize", "validate", "bounds", "load", "Result"}
    assert cosma.optimize is cosma.api.optimize


def test_optimize_result_and_save_match_the_cli(tmp_path):
    from cosma.cli.main import main

    result = cosma.optimize(MODEL, scratchpad="M_R", dtype_bytes=1, solver="best-greedy", time_limit=5)
    assert result.ok and result.tier == "M_R" and result.status is cosma.Status.FEASIBLE
    assert result.cost.non_compulsory_bytes == result.non_compulsory_bytes > 0
    assert result.cost.latency_cycles > 0 and result.seconds >= 0
    saved = json.loads(result.save(tmp_path / "api.json").read_text())
    cli_argv = ["optimize", MODEL, "--scratchpad", "M_R", "--dtype-bytes", "1", "--solver", "best-greedy"]
    assert main([str(a) for a in cli_argv] + ["-o", str(tmp_path / "cli.json"), "-q"]) == 0
    cli = json.loads((tmp_path / "cli.json").read_text())
    for key in ("capacity", "residencies", "ops", "cost", "lowering", "hardware"):
        assert saved[key] == cli[key], key
    assert cosma.validate(MODEL, tmp_path / "api.json") == []


def test_optimize_takes_a_graph_a_problem_and_a_modelproto():
    graph = cosma.load(MODEL, dtype_bytes=1)
    by_graph = cosma.optimize(graph, scratchpad=4 << 20, solver="best-greedy")
    by_problem = cosma.optimize(by_graph.problem, scratchpad=None, solver="best-greedy")
    assert by_problem.capacity == 4 << 20 and by_problem.cost == by_graph.cost
    proto = onnx.load(MODEL, load_external_data=False)
    by_proto = cosma.optimize(proto, scratchpad="4MiB", dtype_bytes=1, solver="best-greedy", params={})
    assert by_proto.cost == by_graph.cost and by_proto.model == ""
    assert cosma.validate(by_graph.problem, by_graph.plan) == []
    assert cosma.validate(MODEL, by_graph.plan, scratchpad="4MiB", dtype_bytes=1) == []


def test_validate_finds_a_broken_plan():
    result = cosma.optimize(MODEL, scratchpad="4MiB", dtype_bytes=1, solver="best-greedy")
    plan = result.plan
    moved = plan.residencies[1].__class__(**{**plan.residencies[1].__dict__, "offset": result.capacity})
    broken = plan.__class__(plan.schedule, (plan.residencies[0], moved, *plan.residencies[2:]))
    violations = cosma.validate(result.problem, broken)
    assert violations and any("capacity" in str(v) for v in violations)


def test_bounds_in_both_settings():
    found = cosma.bounds(MODEL, dtype_bytes=1, time_limit=5)
    assert found.activations_only.m_r <= found.with_weights.m_r
    for tiers in (found.activations_only, found.with_weights):
        assert tiers.m_r <= tiers.m_h <= tiers.m_p


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"scratchpad": "1KiB"}, CapacityError, "M_R"),
        ({"scratchpad": "1.5XB"}, UsageError, "cannot read size"),
        ({"solver": "nope"}, UsageError, "unknown solver"),
        ({"hardware": "gpu"}, UsageError, "unknown hardware preset"),
        ({"dtype_bytes": 3}, UsageError, "1, 2, 4 or 8"),
        ({"threads": 0}, UsageError, "threads"),
        ({"time_limit": -1}, UsageError, "time_limit"),
        ({"params": {"exact_time": -1}}, UsageError, "exact_time"),
        ({"params": {"exact_time": "soon"}}, UsageError, "exact_time"),
        ({"params": {"nope": 1}}, UsageError, "unknown parameter"),
    ],
)
def test_bad_input_raises_a_one_line_cosma_error(kwargs, error, message):
    with pytest.raises(error, match=message) as info:
        cosma.optimize(MODEL, **{"scratchpad": "4MiB", "dtype_bytes": 1, **kwargs})
    assert "\n" not in str(info.value)


def test_a_model_that_is_not_onnx_is_a_model_error(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x00\x01not onnx at all")
    with pytest.raises(ModelError):
        cosma.load(bad)


def test_save_without_a_plan_is_a_usage_error():
    result = cosma.optimize(MODEL, scratchpad="M_R", dtype_bytes=1, solver="best-greedy")
    result.plan = None
    with pytest.raises(UsageError, match="no plan"):
        result.save("never.json")
    assert not Path("never.json").exists()


def tiny_dynamic_batch_model() -> onnx.ModelProto:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 8])
    nodes = [helper.make_node("Relu", ["x"], ["h"]), helper.make_node("Sigmoid", ["h"], ["y"])]
    return helper.make_model(helper.make_graph(nodes, "dyn", [x], [y]))


def test_optimize_fixes_a_dynamic_batch(capsys):
    result = cosma.optimize(tiny_dynamic_batch_model(), scratchpad="1MiB", solver="best-greedy", batch=3)
    assert result.problem.graph.tensors["x"].shape == (3, 8)
    assert "fixed to 3" in capsys.readouterr().err
