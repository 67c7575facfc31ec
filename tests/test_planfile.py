"""The plan file round-trips, and bad plan files give one clear error."""

import json

import pytest

from cosma.core.cost import evaluate
from cosma.core.errors import UsageError
from cosma.core.planfile import FORMAT, plan_to_dict, read_plan, write_plan
from cosma.core.validator import validate
from tests.test_validator import SKIP_PROBLEM, SKIP_VALID


def test_round_trip(tmp_path):
    path = tmp_path / "plan.json"
    write_plan(
        path, SKIP_PROBLEM, SKIP_VALID, model="skip.onnx", dtype_bytes=1, solver={"name": "hand", "status": "feasible"}
    )
    pf = read_plan(path)
    assert pf.plan.schedule == SKIP_VALID.schedule
    assert sorted(pf.plan.residencies) == sorted(SKIP_VALID.residencies)
    assert pf.capacity == SKIP_PROBLEM.capacity and pf.hardware == SKIP_PROBLEM.hardware
    assert pf.dtype_bytes == 1 and pf.weights_counted is True
    assert validate(SKIP_PROBLEM, pf.plan) == []
    assert pf.cost == evaluate(SKIP_PROBLEM, SKIP_VALID).as_dict()


def test_documented_keys_are_written():
    data = plan_to_dict(SKIP_PROBLEM, SKIP_VALID)
    for key in (
        "model",
        "capacity",
        "alignment",
        "weights_counted",
        "ops",
        "folded",
        "tensors",
        "residencies",
        "cost",
        "solver",
    ):
        assert key in data
    assert set(data["residencies"][0]) == {"tensor", "start", "end", "offset", "spilled"}
    assert set(data["cost"]) >= {
        "compulsory_bytes",
        "spill_bytes",
        "reload_bytes",
        "non_compulsory_bytes",
        "latency_cycles",
    }
    assert data["format"] == FORMAT


@pytest.mark.parametrize(
    "content, reason",
    [
        ("{not json", "not a readable JSON"),
        ('{"format": "other"}', "not a cosma plan"),
        (json.dumps({"format": FORMAT}), "malformed"),
    ],
)
def test_bad_plan_files(tmp_path, content, reason):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(UsageError, match=reason):
        read_plan(path)
    with pytest.raises(UsageError, match="no such plan file"):
        read_plan(tmp_path / "missing.json")


@pytest.mark.parametrize(
    "field, value, reason",
    [
        ("offset", 4.9, "offset must be an integer"),
        ("spilled", "false", "spilled must be a bool"),
        ("tensor", 7, "tensor must be a str"),
    ],
)
def test_plan_file_fields_are_typed(tmp_path, field, value, reason):
    data = plan_to_dict(SKIP_PROBLEM, SKIP_VALID)
    data["residencies"][0][field] = value
    path = tmp_path / "typed.json"
    path.write_text(json.dumps(data))
    with pytest.raises(UsageError, match=reason):
        read_plan(path)


def test_the_objective_and_both_figures_are_recorded(tmp_path):
    from dataclasses import replace

    for objective in ("bytes", "latency"):
        problem = replace(SKIP_PROBLEM, objective=objective)
        path = tmp_path / f"{objective}.json"
        write_plan(path, problem, SKIP_VALID)
        cost = evaluate(problem, SKIP_VALID)
        recorded = json.loads(path.read_text())["objective"]
        assert recorded == {
            "name": objective,
            "value": cost.value(objective),
            "latency_cycles": cost.latency_cycles,
            "non_compulsory_bytes": cost.non_compulsory_bytes,
        }
        assert read_plan(path).objective == objective


def test_a_plan_file_without_an_objective_reads_as_bytes(tmp_path):
    data = plan_to_dict(SKIP_PROBLEM, SKIP_VALID)
    del data["objective"]  # as written before the objective was recorded
    path = tmp_path / "old.json"
    path.write_text(json.dumps(data))
    pf = read_plan(path)
    assert pf.objective == "bytes" and validate(SKIP_PROBLEM, pf.plan) == []


def test_an_unknown_objective_is_a_malformed_plan_file(tmp_path):
    data = plan_to_dict(SKIP_PROBLEM, SKIP_VALID)
    data["objective"]["name"] = "energy"
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(UsageError, match="malformed"):
        read_plan(path)
