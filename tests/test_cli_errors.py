"""Every bad path and flag of both commands is a clean answer: exit status 2, one line on
stderr, no traceback, nothing half-written; and the dynamic batch dimension (--batch)."""

import os
from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper

from cosma.cli.main import EXIT_INVALID, EXIT_USAGE
from cosma.cli.main import main as cosma_main
from mallocgame.cli import main as mallocgame_main

REPO = Path(__file__).resolve().parents[1]
MODEL = REPO / "models" / "zoo" / "resnet18.onnx"
FAST = ["--dtype-bytes", "1", "--solver", "best-greedy", "-q"]


def run(capsys, main, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_clean_usage_error(code, err, *words):
    assert code == EXIT_USAGE, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    for word in words:
        assert word in err, err


def files_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# ---------------------------------------------------------------------------- output paths


@pytest.mark.parametrize("flag", ["-o", "--map"])
def test_an_output_that_is_a_directory_fails_before_solving(tmp_path, capsys, flag):
    target = tmp_path / "adir.png"
    target.mkdir()
    code, out, err = run(capsys, cosma_main, "optimize", MODEL, "--scratchpad", "M_R", *FAST, flag, target)
    assert_clean_usage_error(code, err, flag, "is a directory")
    assert out == ""  # no table: nothing was solved


@pytest.mark.parametrize("flag, name", [("-o", "plan.json"), ("--map", "map.png")])
def test_an_output_under_proc_fails_before_solving(capsys, flag, name):
    code, out, err = run(capsys, cosma_main, "optimize", MODEL, "--scratchpad", "M_R", *FAST, flag, f"/proc/{name}")
    assert_clean_usage_error(code, err, flag, "/proc")
    assert out == ""


def test_an_output_below_a_file_fails(tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    code, _, err = run(
        capsys, cosma_main, "optimize", MODEL, "--scratchpad", "M_R", *FAST, "-o", tmp_path / "afile/p.json"
    )
    assert_clean_usage_error(code, err, "-o")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_an_output_in_a_read_only_folder_fails(tmp_path, capsys):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        code, _, err = run(capsys, cosma_main, "optimize", MODEL, "--scratchpad", "M_R", *FAST, "-o", folder / "p.json")
    finally:
        folder.chmod(0o755)
    assert_clean_usage_error(code, err, "cannot write")


def test_a_bad_map_leaves_no_plan_behind(tmp_path, capsys):
    plan = tmp_path / "plan.json"
    code, out, err = run(
        capsys, cosma_main, "optimize", MODEL, "--scratchpad", "M_R", *FAST, "-o", plan, "--map", tmp_path / "m.xyz"
    )
    assert_clean_usage_error(code, err, "--map", "xyz")
    assert files_in(tmp_path) == [] and out == ""


def test_plan_and_map_are_written_whole(tmp_path, capsys):
    plan, png = tmp_path / "plan.json", tmp_path / "map.png"
    code, out, err = run(capsys, cosma_main, "optimize", MODEL, "--scratchpad", "M_R", *FAST, "-o", plan, "--map", png)
    assert code == 0, err
    assert files_in(tmp_path) == ["map.png", "plan.json"]  # no temporary file left over
    assert "written to" in out and "drawn to" in out


def test_show_into_an_unwritable_path(tmp_path, capsys):
    plan = tmp_path / "plan.json"
    assert run(capsys, cosma_main, "optimize", MODEL, "--scratchpad", "M_R", *FAST, "-o", plan)[0] == 0
    code, _, err = run(capsys, cosma_main, "show", plan, "-o", "/proc/map.png")
    assert_clean_usage_error(code, err, "-o", "/proc")
    code, _, err = run(capsys, cosma_main, "show", plan, "-o", tmp_path)
    assert_clean_usage_error(code, err, "is a directory")


# ---------------------------------------------------------------------------- pack


def test_pack_a_binary_file(tmp_path, capsys):
    blob = tmp_path / "blob.1024.csv"
    blob.write_bytes(bytes(range(256)) * 4)
    code, _, err = run(capsys, cosma_main, "pack", blob)
    assert_clean_usage_error(code, err, "not a text CSV")


def test_pack_an_empty_csv_is_not_optimal(tmp_path, capsys):
    empty = tmp_path / "empty.1024.csv"
    empty.write_text("id,lower,upper,size\n")
    code, out, err = run(capsys, cosma_main, "pack", empty)
    assert_clean_usage_error(code, err, "no buffers")
    assert "optimal" not in out


def test_pack_a_csv_without_the_columns(tmp_path, capsys):
    wrong = tmp_path / "wrong.1024.csv"
    wrong.write_text("a,b\n1,2\n")
    code, _, err = run(capsys, cosma_main, "pack", wrong)
    assert_clean_usage_error(code, err, "id,lower,upper,size")


def test_best_fit_that_does_not_fit_writes_nothing(tmp_path, capsys):
    csv = tmp_path / "tight.csv"
    # three buffers live together need 30 bytes; capacity 20
    csv.write_text("id,lower,upper,size\na,0,2,10\nb,0,2,10\nc,0,2,10\n")
    out_csv = tmp_path / "out.csv"
    code, out, _ = run(capsys, cosma_main, "pack", csv, "--capacity", "20", "--solver", "best-fit", "-o", out_csv)
    assert code == EXIT_INVALID
    assert "does NOT fit" in out and "not written" in out
    assert not out_csv.exists()


@pytest.mark.parametrize(
    "argv, words",
    [
        (["--time-limit", "0"], ["--time-limit"]),
        (["--alignment", "0"], ["--alignment"]),
        (["-o", "/proc/o.csv"], ["-o"]),
    ],
)
def test_pack_bad_flags(tmp_path, capsys, argv, words):
    csv = tmp_path / "ok.1024.csv"
    csv.write_text("id,lower,upper,size\na,0,2,10\n")
    code, _, err = run(capsys, cosma_main, "pack", csv, *argv)
    assert_clean_usage_error(code, err, *words)


# ---------------------------------------------------------------------------- flags


@pytest.mark.parametrize(
    "argv, words",
    [
        (["--threads", "0"], ["--threads"]),
        (["--threads", "-3"], ["--threads"]),
        (["--dtype-bytes", "3"], ["--dtype-bytes", "1, 2, 4 or 8"]),
        (["--batch", "0"], ["--batch"]),
        (["--solver", "auto", "--param", "exact_time=-1"], ["exact_time", "negative"]),
        (["--solver", "auto", "--param", "exact_time=soon"], ["exact_time", "number"]),
        (["--solver", "auto", "--param", "exact_max_steps=1.5"], ["exact_max_steps", "integer"]),
        (["--time-limit", "-2"], ["--time-limit"]),
    ],
)
def test_bad_optimize_flags(capsys, argv, words):
    code, _, err = run(capsys, cosma_main, "optimize", MODEL, "--scratchpad", "M_R", "-q", *argv)
    assert_clean_usage_error(code, err, *words)


def test_optimize_help_shows_defaults_and_real_commands(capsys):
    with pytest.raises(SystemExit):
        cosma_main(["optimize", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "solvers --hardware" not in text
    assert "(default: edge-npu)" in text and "(default: 1)" in text


def test_mallocgame_help_is_whole_and_plain(capsys):
    with pytest.raises(SystemExit):
        mallocgame_main(["--help"])
    text = capsys.readouterr().out
    assert "``" not in text and "`" not in text
    description = " ".join(text.split("\n\n")[1].split())
    assert description.endswith(".") and "train" in description


# ---------------------------------------------------------------------------- mallocgame play


@pytest.mark.parametrize(
    "argv, words",
    [
        (["--hardware", "nope"], ["unknown hardware preset"]),
        (["--dtype-bytes", "3"], ["--dtype-bytes", "1, 2, 4 or 8"]),
        (["-o", "/proc/plan.json"], ["-o", "/proc"]),
        (["--scratchpad", "1KiB"], ["M_R"]),
        (["--scratchpad", "12XB"], ["cannot read size"]),
    ],
)
def test_bad_play_flags(capsys, argv, words):
    code, _, err = run(capsys, mallocgame_main, "play", MODEL, "--scratchpad", "M_R", *argv)
    assert_clean_usage_error(code, err, *words)


# ---------------------------------------------------------------------------- dynamic shapes


def dynamic_model(path: Path, batch_dim="N", spatial=4) -> Path:
    """A tiny Conv + Relu model whose input is [N, 3, 4, 4] (N symbolic, or -1)."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch_dim, 3, spatial, spatial])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch_dim, 8, spatial, spatial])
    w = helper.make_tensor("W", TensorProto.FLOAT, [8, 3, 3, 3], [0.0] * (8 * 3 * 3 * 3))
    nodes = [
        helper.make_node("Conv", ["x", "W"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["y"]),
    ]
    graph = helper.make_graph(nodes, "dyn", [x], [y], [w])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


@pytest.mark.parametrize("batch_dim", ["N", -1, None])
def test_a_dynamic_batch_is_fixed_to_1_with_a_notice(tmp_path, capsys, batch_dim):
    model = dynamic_model(tmp_path / "dyn.onnx", batch_dim)
    plan = tmp_path / "plan.json"
    code, out, err = run(capsys, cosma_main, "optimize", model, "--scratchpad", "64KiB", *FAST, "-o", plan)
    assert code == 0, err
    assert err.count("\n") == 1 and "'x'" in err and "fixed to 1" in err and "Traceback" not in err
    code, out, err = run(capsys, cosma_main, "validate", model, plan)
    assert code == 0 and out.startswith("valid"), out + err


def test_batch_sets_the_dynamic_dimension(tmp_path, capsys):
    model = dynamic_model(tmp_path / "dyn.onnx")
    code, out, err = run(capsys, cosma_main, "optimize", model, "--scratchpad", "64KiB", *FAST, "--batch", "4",
                         "-o", tmp_path / "plan.json")  # fmt: skip
    assert code == 0 and "fixed to 4" in err
    import json

    data = json.loads((tmp_path / "plan.json").read_text())
    assert data["tensors"]["x"]["shape"] == [4, 3, 4, 4] and data["lowering"]["batch"] == 4
    code, out, err = run(capsys, cosma_main, "validate", model, tmp_path / "plan.json")
    assert code == 0, out + err  # validate rebuilds the graph at the plan's batch


def test_input_shape_wins_over_batch(tmp_path, capsys):
    model = dynamic_model(tmp_path / "dyn.onnx")
    code, _, err = run(capsys, cosma_main, "bounds", model, "--input-shape", "x=2x3x4x4", "--time-limit", "2")
    assert code == 0 and "fixed to" not in err


def test_mallocgame_play_takes_input_shape_and_batch(tmp_path, capsys):
    model = dynamic_model(tmp_path / "dyn.onnx", spatial="S")  # the spatial dims need --input-shape
    code, _, err = run(capsys, mallocgame_main, "play", model, "--scratchpad", "M_R")
    assert_clean_usage_error(code, err, "--input-shape x=1x3x1x1")
    plan = tmp_path / "plan.json"
    code, out, err = run(capsys, mallocgame_main, "play", model, "--scratchpad", "M_R", "--input-shape", "x=2x3x4x4",
                         "-o", plan)  # fmt: skip
    assert code == 0, err
    code, out, err = run(capsys, cosma_main, "validate", model, plan)
    assert code == 0, out + err


def test_a_custom_domain_operator_with_declared_shapes_is_opaque(tmp_path, capsys):
    """An operator of a custom domain is accepted when the file declares every output's shape
    (README, "Operators cosma does not know"); without them it is an unsupported-operator error."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])
    h = helper.make_tensor_value_info("h", TensorProto.FLOAT, [1, 16])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 16])
    nodes = [helper.make_node("Widen", ["x"], ["h"], domain="com.acme"), helper.make_node("Relu", ["h"], ["y"])]
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("com.acme", 1)]
    known = helper.make_model(helper.make_graph(nodes, "custom", [x], [y], value_info=[h]), opset_imports=opsets)
    onnx.save(known, tmp_path / "known.onnx")
    code, out, err = run(capsys, cosma_main, "optimize", tmp_path / "known.onnx", "--scratchpad", "1KiB", *FAST)
    assert code == 0 and "2 operators" in out, err
    unknown = helper.make_model(helper.make_graph(nodes, "custom", [x], [y]), opset_imports=opsets)
    onnx.save(unknown, tmp_path / "unknown.onnx")
    code, _, err = run(capsys, cosma_main, "optimize", tmp_path / "unknown.onnx", "--scratchpad", "1KiB", *FAST)
    assert_clean_usage_error(code, err, "unsupported operator 'Widen'")
