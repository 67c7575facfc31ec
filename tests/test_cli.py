"""Smoke tests of every CLI command, with tiny budgets, and the bad-input exits."""

import json
from pathlib import Path

import pytest

from cosma.cli.main import EXIT_INVALID, EXIT_USAGE, main

REPO = Path(__file__).resolve().parents[1]
MODEL = REPO / "models" / "zoo" / "resnet18.onnx"
ANCHORS = REPO.parent / "shared" / "anchors"


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_optimize_validate_show(tmp_path, capsys):
    plan = tmp_path / "plan.json"
    code, out, err = run(
        capsys, "optimize", MODEL, "--scratchpad", "M_R", "--dtype-bytes", "1", "--solver", "best-greedy",
        "--time-limit", "20", "-o", plan, "-q",
    )  # fmt: skip
    assert code == 0, err
    assert "non-compulsory" in out and "best-greedy" in out
    data = json.loads(plan.read_text())
    assert data["solver"]["name"] == "best-greedy" and data["lowering"]["dtype_bytes"] == 1

    code, out, err = run(capsys, "validate", MODEL, plan)
    assert code == 0, out + err
    assert out.startswith("valid")

    png = tmp_path / "map.png"
    code, out, err = run(capsys, "show", plan, "-o", png)
    assert code == 0 and png.stat().st_size > 1000


def test_validate_rejects_a_tampered_plan(tmp_path, capsys):
    plan = tmp_path / "plan.json"
    code, out, err = run(
        capsys,
        "optimize",
        MODEL,
        "--scratchpad",
        "3MiB",
        "--dtype-bytes",
        "1",
        "--solver",
        "best-greedy",
        "-o",
        plan,
        "-q",
    )
    assert code == 0, out + err
    data = json.loads(plan.read_text())
    data["residencies"][1]["offset"] = data["residencies"][0]["offset"]  # two tensors at one address
    data["residencies"][1]["start"] = data["residencies"][0]["start"]
    plan.write_text(json.dumps(data))
    code, out, _ = run(capsys, "validate", MODEL, plan)
    assert code == EXIT_INVALID and "INVALID" in out


def test_bounds(capsys):
    code, out, err = run(capsys, "bounds", MODEL, "--dtype-bytes", "1", "--time-limit", "5")
    assert code == 0, err
    assert "M_R" in out and "activations only" in out and "with weights" in out


def test_solvers_lists_the_registry(capsys):
    code, out, _ = run(capsys, "solvers", "--params")
    assert code == 0
    for name in ("best-greedy", "file-bestfit-belady", "mem-bestfit-greedy", "xla-msa"):
        assert name in out
    assert "edge-npu" in out


@pytest.mark.skipif(not ANCHORS.exists(), reason="shared anchors not present")
def test_pack(tmp_path, capsys):
    out_csv = tmp_path / "out.csv"
    code, out, err = run(capsys, "pack", ANCHORS / "omnimalloc_small" / "a.6.csv", "--solver", "exact", "-o", out_csv)
    assert code == 0, out + err
    assert "fits" in out and out_csv.exists()
    code, out, _ = run(capsys, "pack", ANCHORS / "omnimalloc_small" / "a.6.csv", "--solver", "best-fit")
    assert code in (0, EXIT_INVALID) and "height" in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["optimize", "missing.onnx", "--scratchpad", "1MiB"], "missing.onnx"),
        (["optimize", MODEL, "--scratchpad", "1.5XB"], "cannot read size"),
        (["optimize", MODEL, "--scratchpad", "1KiB"], "M_R"),
        (["optimize", MODEL, "--scratchpad", "1MiB", "--hardware", "gpu"], "unknown hardware preset"),
        (["optimize", MODEL, "--scratchpad", "1MiB", "--solver", "nope"], "unknown solver"),
        (
            ["optimize", MODEL, "--scratchpad", "1MiB", "--param", "nope=1", "--solver", "best-greedy"],
            "unknown parameter",
        ),
        (["optimize", MODEL, "--scratchpad", "1MiB", "--input-shape", "x=1xa"], "--input-shape"),
        (["optimize", MODEL, "--scratchpad", "1MiB", "--time-limit", "0"], "time-limit"),
        (["validate", MODEL, "nothere.json"], "no such plan file"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(capsys, argv, message):
    code, out, err = run(capsys, *argv)
    assert code == EXIT_USAGE
    assert message in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_truncated_model_is_a_clear_error(tmp_path, capsys):
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(MODEL.read_bytes()[: MODEL.stat().st_size // 2])
    code, _, err = run(capsys, "optimize", cut, "--scratchpad", "1MiB")
    assert code == EXIT_USAGE and "Traceback" not in err


def test_output_into_a_missing_folder_fails_before_solving(capsys):
    code, _, err = run(
        capsys, "optimize", MODEL, "--scratchpad", "3MiB", "--dtype-bytes", "1", "-o", "/nonexistent/p.json"
    )
    assert code == EXIT_USAGE and "no such directory" in err
