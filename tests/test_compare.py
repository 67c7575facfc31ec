"""A reduced `cosma compare` (two small models, one tier) runs end to end and resumes."""

import csv
from pathlib import Path

from cosma.cli.main import main

SOLVERS = [
    "file-bestfit-belady",
    "file-bestfit-greedy",
    "mem-bestfit-belady",
    "mem-bestfit-greedy",
    "best-greedy-tflite",
    "exact",
]


def test_reduced_compare_writes_tables_and_resumes(tmp_path, capsys):
    argv = ["compare", "--models", "resnet18", "mobilenetv2", "--tiers", "M_R", "--solvers", *SOLVERS,
            "--time-limit", "20", "--jobs", "1", "--out", str(tmp_path), "--no-packing"]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "24 to run" in out
    table = (tmp_path / "comparison.md").read_text()
    assert "## weights, M_R" in table and "resnet18" in table and "TFLite ref." in table
    rows = list(csv.DictReader((tmp_path / "comparison.csv").open()))
    assert len(rows) == 2 * 2 * len(SOLVERS)
    assert all(r["status"] in ("optimal", "feasible") for r in rows)
    # The exact solver is never worse than any baseline on the same cell.
    for r in rows:
        if r["solver"] == "exact":
            same = [
                int(o["non_compulsory_bytes"]) for o in rows if (o["model"], o["setting"]) == (r["model"], r["setting"])
            ]
            assert int(r["non_compulsory_bytes"]) == min(same)
    assert (tmp_path / "bars_weights.png").exists() and list(tmp_path.glob("map_*.png"))

    # A second run finds every cell in the cache and recomputes nothing.
    assert main(argv) == 0
    assert "24 cached, 0 to run" in capsys.readouterr().out

    # --fresh on a part of the grid reruns that part only; every other cell stays cached.
    fresh = [*argv[: argv.index("--solvers") + 1], "exact", *argv[argv.index("--time-limit") :], "--fresh"]
    assert main(fresh) == 0
    assert "4 cells, 0 cached, 4 to run" in capsys.readouterr().out
    assert main(argv) == 0
    assert "24 cached, 0 to run" in capsys.readouterr().out


def test_a_new_agent_checkpoint_invalidates_the_agent_cells(tmp_path):
    """Cells of the muzero agent carry the checkpoint's digest: a cached row of another
    checkpoint (or of one from before digests were kept) is not reused."""
    import json

    from cosma.harness.compare import Cell, load_cache

    old = Cell("m", "m.onnx", "weights", "M_R", 1024, "muzero", 30.0, 400)
    new = Cell("m", "m.onnx", "weights", "M_R", 1024, "muzero", 30.0, 400, "0123456789ab")
    assert old.key != new.key and new.key.endswith("|0123456789ab")
    cache = tmp_path / "cells.jsonl"
    cache.write_text(json.dumps({**old.__dict__, "status": "feasible"}) + "\n")
    assert new.key not in load_cache(cache) and old.key in load_cache(cache)


def test_a_partial_run_leaves_the_full_tables_alone(tmp_path, monkeypatch, capsys):
    model = str(Path(__file__).resolve().parents[1] / "models" / "zoo" / "resnet18.onnx")
    monkeypatch.chdir(tmp_path)  # results/ is relative to the working directory
    argv = ["compare", "--models", model, "--tiers", "M_R", "--solvers", "best-greedy", "--time-limit", "10",
            "--jobs", "1", "--no-packing", "--no-maps"]  # fmt: skip
    assert main(argv) == 0
    assert (tmp_path / "results" / "partial" / "comparison.md").exists()
    assert not (tmp_path / "results" / "comparison.md").exists()
    assert "partial run" in capsys.readouterr().out


def test_a_run_of_other_solvers_keeps_the_agent_cells_in_the_full_tables(tmp_path, monkeypatch):
    """``--update`` rewrites the tables from the cache: the agent's cells, keyed by the
    checkpoint's digest, stay in them when the run itself names other solvers."""
    import json
    import shutil

    from cosma.harness import compare

    monkeypatch.setattr(compare, "_checkpoint_digest", lambda: "0123456789ab")
    shutil.copy(Path(__file__).resolve().parents[1] / "results" / "tiers.json", tmp_path / "tiers.json")
    tiers = json.loads((tmp_path / "tiers.json").read_text())
    model = compare.model_paths(["resnet18"])
    (agent,) = compare.grid_cells(model, tiers, ["M_R"], ["muzero"], 10.0, 400)[:1]
    row = {**agent.__dict__, "status": "feasible", "non_compulsory_bytes": 12345, "seconds": 1.0}
    (tmp_path / "cells.jsonl").write_text(json.dumps(row) + "\n")
    argv = ["compare", "--models", "resnet18", "--tiers", "M_R", "--solvers", "best-greedy", "--time-limit", "10",
            "--jobs", "1", "--out", str(tmp_path), "--update", "--no-packing", "--no-maps"]  # fmt: skip
    assert main(argv) == 0
    rows = list(csv.DictReader((tmp_path / "comparison.csv").open()))
    assert [r["non_compulsory_bytes"] for r in rows if r["solver"] == "muzero"] == ["12345"]


def test_update_at_another_time_limit_than_the_cache_is_refused(tmp_path, capsys):
    """The full tables come from the cells cached at the run's time limit: at another one
    they would be all but empty, so the run stops before it starts, with one line."""
    import json
    import shutil

    from cosma.harness import compare

    shutil.copy(Path(__file__).resolve().parents[1] / "results" / "tiers.json", tmp_path / "tiers.json")
    tiers = json.loads((tmp_path / "tiers.json").read_text())
    (cell,) = compare.grid_cells(compare.model_paths(["resnet18"]), tiers, ["M_R"], ["exact"], 30.0)[:1]
    (tmp_path / "cells.jsonl").write_text(json.dumps({**cell.__dict__, "status": "optimal"}) + "\n")
    argv = ["compare", "--models", "resnet18", "--tiers", "M_R", "--solvers", "exact", "--time-limit", "60",
            "--jobs", "1", "--out", str(tmp_path), "--update", "--no-packing", "--no-maps"]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "--time-limit 30" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "comparison.md").exists()


def test_a_cell_at_another_capacity_is_not_reused(tmp_path):
    """A tier recomputed to another size (a lower ``M_P`` found) makes new cells: a cached row
    solved at the old capacity is not read as the new one's."""
    import json

    from cosma.harness.compare import Cell, load_cache

    old = Cell("m", "m.onnx", "weights", "M_H", 1024, "dnc", 30.0)
    new = Cell("m", "m.onnx", "weights", "M_H", 960, "dnc", 30.0)
    cache = tmp_path / "cells.jsonl"
    cache.write_text(json.dumps({**old.__dict__, "status": "feasible"}) + "\n")
    assert old.key in load_cache(cache) and new.key not in load_cache(cache)
