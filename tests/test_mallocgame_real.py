"""mallocGame on real graphs: the split by model, windows of real graphs as problems of
their own, a tiny training run on them that checkpoints, resumes and evaluates on a
held-out model, and the muzero solver's budgeted best-of-trajectories."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cosma.core.hardware import get_hardware
from cosma.core.ir import Problem, TensorKind
from cosma.core.window import window_problem
from mallocgame.instances import (
    HELD_OUT_MODELS,
    PRESETS,
    SPLITS,
    TRAIN_MODELS,
    VALIDATION_MODELS,
    InstanceSampler,
    load_zoo_graph,
    real_models,
    split_of,
)

HW = get_hardware("edge-npu")


def graph_stem(instance_name: str) -> str:
    """``resnet50[3:40m]/M_R/acts`` -> ``resnet50``."""
    return instance_name.split("/")[0].split("[")[0]


# --- the split by model ------------------------------------------------------------------


def test_the_split_is_disjoint_and_covers_every_real_model():
    assert not set(TRAIN_MODELS) & set(VALIDATION_MODELS)
    assert not set(TRAIN_MODELS) & set(HELD_OUT_MODELS)
    assert not set(VALIDATION_MODELS) & set(HELD_OUT_MODELS)
    on_disk = {p.stem for p in real_models()}
    if not on_disk:
        pytest.skip("no real models here")
    assert on_disk <= set(TRAIN_MODELS) | set(VALIDATION_MODELS) | set(HELD_OUT_MODELS), "a model outside the split"
    for split, stems in SPLITS.items():
        assert {p.stem for p in real_models(split)} == on_disk & set(stems)
        assert all(split_of(s) == split for s in stems)


@pytest.mark.parametrize("preset", [p for p in PRESETS if p != "dags"])
def test_training_never_draws_a_validation_or_held_out_model(preset):
    if not real_models("train"):
        pytest.skip("no real models here")
    sampler = InstanceSampler(preset=preset, seed=3, max_zoo_ops=130)
    assert all(split_of(p.split("/")[-1][: -len(".onnx")]) in (None, "train") for p in sampler.zoo_paths)
    rng = np.random.default_rng(0)
    stems = {graph_stem(sampler.sample(rng).name) for _ in range(120)}
    real = {s for s in stems if not s.startswith("dag")}
    assert real, "the preset drew no real graph"
    assert real <= set(TRAIN_MODELS)


def test_real_and_mixed_draw_windows_between_tiers_and_dags():
    if not real_models("train"):
        pytest.skip("no real models here")
    rng = np.random.default_rng(1)
    sampler = InstanceSampler(preset="mixed", seed=0)
    names = [sampler.sample(rng).name for _ in range(80)]
    assert any(n.startswith("dag") for n in names)
    assert any("[" in n for n in names)  # windows
    assert any("/M_R+0." in n for n in names)  # capacities between the tiers
    again = InstanceSampler(preset="mixed", seed=0)
    assert [again.sample(np.random.default_rng(1)).name for _ in range(1)] == names[:1]  # seeded


# --- windows ------------------------------------------------------------------------------


def test_a_window_is_a_problem_of_its_own():
    """Tensors produced before the window enter as inputs, tensors read after it leave as
    outputs; a game on the window finishes with a plan the validator accepts."""
    from cosma.core.validator import check
    from mallocgame.env import MallocGameEnv, greedy_action, play

    path = next((p for p in real_models("held-out") if p.stem == "resnet18"), None)
    if path is None:
        pytest.skip("resnet18 is not here")
    graph = load_zoo_graph(str(path))
    whole = Problem(graph, HW.capacity, HW, True)
    ops = [op.name for op in graph.operators[10:30]]
    sub = window_problem(whole, ops, name="resnet18[10:30f]")
    assert [op.name for op in sub.graph.operators] == ops
    inside = set(ops)
    for name, t in sub.graph.tensors.items():
        before = graph.producer.get(name) is not None and graph.producer[name] not in inside
        after = any(c not in inside for c in graph.consumers.get(name, ()))
        if before:
            assert t.kind is TensorKind.INPUT
        elif graph.tensors[name].kind is TensorKind.ACTIVATION and after:
            assert t.kind is TensorKind.OUTPUT
        else:
            assert t.kind is graph.tensors[name].kind
    env = MallocGameEnv(problem=sub, capacity="M_R")
    _, info = play(env, greedy_action, seed=0)
    check(env.problem, info["plan"])
    # As a lower-bound chunk (leaving tensors keep their kind) it has no more outputs.
    chunk = window_problem(whole, ops, leaving_as_outputs=False)
    outputs = lambda p: sum(t.kind is TensorKind.OUTPUT for t in p.graph.tensors.values())  # noqa: E731
    assert outputs(chunk) <= outputs(sub)


# --- a tiny training run on real windows ----------------------------------------------------


def tiny_real_windows_argv(out, run_name, *extra):
    return [
        "--out-dir", str(out), "--run-name", run_name, "--instances", "real", "--max-env-steps", "40",
        "--num-envs", "2", "--num-simulations", "4", "--latent-dim", "16", "--hidden-dim", "32",
        "--occupancy-size", "16", "--num-pending", "4", "--batch-size", "8", "--unroll-steps", "2",
        "--min-replay", "10", "--demo-episodes", "2", "--demo-updates", "2", "--eval-models", "",
        "--eval-dags", "1", "--eval-instances", "2", "--no-progress", "--lookahead-scale", "relative", *extra,
    ]  # fmt: skip


def test_a_tiny_run_on_real_windows_trains_checkpoints_resumes_and_evaluates(tmp_path, capsys):
    if not real_models("train") or "resnet18" not in {p.stem for p in real_models("held-out")}:
        pytest.skip("no real models here")
    from mallocgame.evaluate import main as eval_main
    from mallocgame.train import main as train_main

    assert train_main(tiny_real_windows_argv(tmp_path, "real")) == 0
    ckpt = tmp_path / "real" / "checkpoint.pt"
    saved = torch.load(ckpt, weights_only=False)
    assert saved["config"]["instances"] == "real"
    assert saved["counters"]["env_steps"] >= 40 and saved["counters"]["updates"] > 0
    assert train_main(["--resume", str(ckpt), "--max-env-steps", "140", "--no-progress"]) == 0
    resumed = torch.load(ckpt, weights_only=False)
    assert resumed["counters"]["env_steps"] >= 140 and resumed["counters"]["updates"] > saved["counters"]["updates"]
    table = tmp_path / "eval.md"
    argv = [str(ckpt), "--models", "resnet18", "--dags", "0", "--simulations", "2", "--out", str(table)]
    assert eval_main(argv) == 0
    assert table.read_text().count("| resnet18/") == 6


# --- the solver: the cheapest of its games, within its budget --------------------------------


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    if not real_models("train"):
        pytest.skip("no real models here")
    from mallocgame.train import main

    out = tmp_path_factory.mktemp("solver")
    assert main(tiny_real_windows_argv(out, "tiny")) == 0
    return str(out / "tiny" / "checkpoint.pt")


def dag_problem(seed: int, n_ops: int, scale: float = 1.0) -> Problem:
    from cosma.core.analysis import min_capacity
    from mallocgame.instances import dag_graph

    graph = dag_graph(seed, n_ops, HW.alignment)
    m_r = min_capacity(Problem(graph, 10**9, HW, True))
    return Problem(graph, int(m_r * scale) // HW.alignment * HW.alignment, HW, True)


def test_the_solver_returns_the_cheapest_of_its_games_and_it_validates(tiny_checkpoint):
    from cosma.core.interface import RunOptions, Status, run
    from mallocgame.solver import MuZeroParams

    for seed, scale in ((1000, 1.0), (1001, 1.3)):
        problem = dag_problem(seed, 24, scale)
        result = run(problem, "muzero", MuZeroParams(checkpoint=tiny_checkpoint, num_simulations=2), RunOptions())
        assert result.status in (Status.FEASIBLE, Status.OPTIMAL)  # run() validated the plan
        games = result.stats["trajectories"]
        players = {g["player"] for g in games}
        assert players == {"greedy", "agent", "lookahead"}
        assert result.objective == min(g["nc_bytes"] for g in games)
        assert result.stats["winner"].split("@")[1] in result.stats["orders"]
        # Played alone, the agent's own game is one of them: the solver is never worse.
        alone = run(problem, "muzero", MuZeroParams(checkpoint=tiny_checkpoint, num_simulations=2, rules=False))
        assert {g["player"] for g in alone.stats["trajectories"]} == {"greedy", "agent"}
        assert result.objective <= alone.stats["agent_bytes"]


def test_the_solver_plays_a_given_order_only(tiny_checkpoint):
    from cosma.core.interface import RunOptions, run
    from cosma.schedules.orders import file_order
    from mallocgame.solver import MuZeroParams

    problem = dag_problem(1002, 20)
    order = file_order(problem)
    result = run(problem, "muzero", MuZeroParams(checkpoint=tiny_checkpoint, num_simulations=2),
                 RunOptions(schedule=order))  # fmt: skip
    assert result.plan.schedule == order and result.stats["orders"] == ["given"]


def test_a_spent_time_budget_still_returns_a_valid_plan(tiny_checkpoint):
    from cosma.core.interface import RunOptions, run
    from mallocgame.solver import MuZeroParams

    problem = dag_problem(1003, 30)
    result = run(problem, "muzero", MuZeroParams(checkpoint=tiny_checkpoint), RunOptions(time_limit=0.0))
    assert result.plan is not None  # validated by run()
    assert result.stats["searched_decisions"] <= 1
    assert "time budget reached" in result.message


def test_eval_solver_table_has_every_reference(tiny_checkpoint, tmp_path):
    from mallocgame.evaluate import main

    table = tmp_path / "cells.md"
    argv = [tiny_checkpoint, "--solver", "--models", "", "--dags", "1", "--dag-ops", "12", "16", "--time-limit", "2",
            "--exact-time-limit", "2", "--out", str(table)]  # fmt: skip
    assert main(argv) == 0
    text = table.read_text()
    assert text.count("| dag1000x12/") == 6 and text.count("| dag1000x16/") == 6
    assert "best heuristic" in text and "lookahead rule" in text and "exact, same order" in text
    assert "against the better of best-greedy and xla-msa" in text and "seconds per plan" in text
