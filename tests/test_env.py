"""mallocGame: the Gymnasium contract, plans and costs, no dead ends, greedy == xla-msa,
snapshots, instances and the CLI."""

from __future__ import annotations

import re
import warnings

import gymnasium as gym
import numpy as np
import onnx
import pytest
from gymnasium.utils.env_checker import check_env
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper

from cosma.core.analysis import make_plan
from cosma.core.cost import evaluate
from cosma.core.hardware import get_hardware
from cosma.core.interface import RunOptions, run
from cosma.core.ir import Problem
from cosma.core.synthetic import build_graph, random_dag
from cosma.core.validator import validate
from mallocgame.cli import main
from mallocgame.env import (
    ENV_ID,
    LOOKAHEAD_FEATURES,
    LOOKAHEAD_SCALES,
    STEP_INFO_KEYS,
    TERMINAL_INFO_KEYS,
    MallocGameEnv,
    greedy_action,
    lookahead_action,
    play,
    random_action,
)
from mallocgame.instances import ZOO_DIR, InstanceSampler, dag_graph, evaluation_set, make_problem, tier_capacities
from solvers.xla import EVICT, XlaParams, play_greedy

EDGE = get_hardware("edge-npu")
SMALL = dict(num_candidates=4, num_pending=5, occupancy_shape=(6, 8))


def dag_problem(seed: int, tier: str = "M_R", weights: bool = True, n_ops: int = 16) -> Problem:
    return make_problem(dag_graph(seed, n_ops, EDGE.alignment), tier, EDGE, weights)


def check_terminal(env: MallocGameEnv, episode_return: float, info: dict) -> None:
    """The terminal plan validates and every figure of the env agrees with the cost model."""
    problem = env.unwrapped.problem
    plan, cost = info["plan"], info["cost"]
    assert validate(problem, plan) == []
    assert cost == evaluate(problem, plan)
    assert plan == make_plan(problem, plan.schedule, plan.residencies)
    assert info["nc_bytes"] == cost.non_compulsory_bytes
    assert episode_return == pytest.approx(-cost.non_compulsory_bytes / info["scale"])
    if info["baseline_bytes"] > 0:
        assert info["scale"] == info["baseline_bytes"]


def test_check_env_passes_without_warnings():
    for kwargs in ({"problem": dag_problem(3)}, {"sampler": InstanceSampler(preset="dags", dag_ops=(4, 12))}):
        env = gym.make(ENV_ID, render_mode="ansi", **SMALL, **kwargs).unwrapped
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            check_env(env)
        assert [str(w.message) for w in caught] == []


def test_same_seed_same_rollout():
    def rollout(seed: int):
        env = MallocGameEnv(sampler=InstanceSampler(preset="dags", dag_ops=(4, 20)), **SMALL)
        rng = np.random.default_rng(seed)
        trace = []
        obs, info = env.reset(seed=seed)
        for _ in range(120):
            action = random_action(env, rng)
            obs, reward, terminated, _, info = env.step(action)
            trace.append((info["instance"], action, reward, {k: v.tolist() for k, v in obs.items()}))
            if terminated:
                obs, info = env.reset()
        return trace

    assert rollout(11) == rollout(11)
    assert rollout(11) != rollout(12)


def test_documented_info_keys_match_the_code():
    doc = MallocGameEnv.__doc__
    section = doc.split("## Information")[1].split("##")[0]
    documented = set(re.findall(r'^\s*- "(\w+)"', section, flags=re.M))
    env = MallocGameEnv(problem=dag_problem(5), **SMALL)
    _, info = env.reset(seed=0)
    assert set(info) == set(STEP_INFO_KEYS)
    _, info = play(env, greedy_action, seed=0)
    assert set(info) == set(STEP_INFO_KEYS) | set(TERMINAL_INFO_KEYS) == documented


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("order", ["boundedness", "time"])
def test_greedy_policy_reproduces_xla_msa(seed, order):
    for tier in ("M_R", "M_H", "M_P"):
        problem = dag_problem(seed, tier, weights=seed % 2 == 0, n_ops=20)
        env = MallocGameEnv(problem=problem, order=order, **SMALL)
        episode_return, info = play(env, greedy_action, seed=seed)
        check_terminal(env, episode_return, info)
        xla = run(problem, "xla-msa", XlaParams(order=order), RunOptions(schedule=env.schedule))
        assert info["cost"].non_compulsory_bytes == xla.objective


def test_greedy_policy_reproduces_xla_msa_on_a_zoo_model():
    path = ZOO_DIR / "resnet18.onnx"
    if not path.exists():
        pytest.skip("models/zoo/resnet18.onnx not present")
    env = MallocGameEnv(model_path=str(path), capacity="M_R")
    episode_return, info = play(env, greedy_action)
    check_terminal(env, episode_return, info)
    xla = run(env.problem, "xla-msa", options=RunOptions(schedule=env.schedule))
    assert info["cost"].non_compulsory_bytes == xla.objective


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 10_000),
    n_ops=st.integers(1, 14),
    weights=st.booleans(),
    slack=st.sampled_from([0.0, 0.0, 0.3, 1.0]),
    policy_seed=st.integers(0, 3),
)
def test_no_dead_ends_from_m_r(seed, n_ops, weights, slack, policy_seed):
    """Random legal play never runs out of legal actions, at exactly M_R too, and ends
    in a valid plan whose cost the env reports exactly."""
    graph = random_dag(seed, n_ops, size_range=(1, 300))
    tiers = tier_capacities(graph, EDGE, weights)
    capacity = tiers["M_R"] + int(slack * (tiers["M_P"] - tiers["M_R"]))
    env = MallocGameEnv(problem=Problem(graph, capacity, EDGE, weights), **SMALL)
    rng = np.random.default_rng(policy_seed)
    obs, info = env.reset(seed=policy_seed)
    total, steps, terminated = 0.0, 0, False
    while not terminated:
        assert obs["action_mask"][0] == 1 and env.legal_actions().size >= 1
        assert np.array_equal(obs["action_mask"], info["action_mask"])
        obs, reward, terminated, _, info = env.step(random_action(env, rng))
        total += reward
        steps += 1
        assert steps <= max(1, len(env.tables.decisions))
    check_terminal(env, total, info)


def test_clone_and_restore_replay_exactly():
    env = MallocGameEnv(problem=dag_problem(21, "M_H", n_ops=24), **SMALL)
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    for _ in range(5):
        env.step(random_action(env, rng))
    snapshot = env.clone_state()

    def finish(seed):
        r = np.random.default_rng(seed)
        out, terminated = [], False
        while not terminated:
            obs, reward, terminated, _, info = env.step(random_action(env, r))
            out.append((reward, obs["occupancy"].tolist(), obs["action_mask"].tolist()))
        return out, info["cost"]

    first = finish(1)
    env.restore_state(snapshot)
    assert finish(1) == first
    env.restore_state(snapshot)  # the snapshot stays reusable
    assert finish(1) == first


def test_illegal_action_is_played_as_evict():
    env = MallocGameEnv(problem=dag_problem(2), **SMALL)
    obs, _ = env.reset(seed=0)
    illegal = [a for a in range(1, env.action_space.n) if not obs["action_mask"][a]]
    assert illegal, "a resident tensor or a crowded step leaves some keep illegal"
    _, reward, _, _, info = env.step(illegal[0])
    assert info["illegal_action"] and reward < 0


def test_instance_without_decisions_has_one_dummy_step():
    graph = build_graph("chain", {"x": 8, "y": 8}, [("f", ["x"], ["y"])], inputs=("x",), outputs=("y",))
    env = MallocGameEnv(problem=Problem(graph, 16, get_hardware("ideal")), **SMALL)
    obs, _ = env.reset(seed=0)
    assert obs["action_mask"].tolist() == [1, 0, 0, 0, 0]
    _, reward, terminated, _, info = env.step(0)
    assert terminated and reward == 0.0
    check_terminal(env, reward, info)


def test_check_env_passes_with_lookahead():
    env = gym.make(ENV_ID, render_mode="ansi", problem=dag_problem(3), lookahead=True, **SMALL).unwrapped
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env)
    assert [str(w.message) for w in caught] == []
    assert env.observation_space["lookahead"].shape == (SMALL["num_candidates"] + 1, len(LOOKAHEAD_FEATURES))


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("scale", LOOKAHEAD_SCALES)
def test_lookahead_rows_are_the_greedy_completions(seed, scale):
    """Each legal action's row holds what playing it and then XLA's rule to the end costs:
    checked by playing it out on a clone of the env."""
    problem = dag_problem(seed, "M_R", weights=seed % 2 == 0, n_ops=20)
    env = MallocGameEnv(problem=problem, lookahead=True, lookahead_scale=scale, **SMALL)
    obs, info = env.reset(seed=0)
    rng = np.random.default_rng(seed)
    terminated, checked = False, 0
    while not terminated:
        rows = obs["lookahead"]
        legal = np.flatnonzero(obs["action_mask"])
        assert np.array_equal(np.flatnonzero(rows[:, 0]), legal)
        start, snapshot, completion = info["nc_bytes"], env.clone_state(), {}
        for action in legal:
            env.restore_state(snapshot)
            _, info_end = play_from(env, int(action))
            completion[action] = info_end["nc_bytes"] - start
        env.restore_state(snapshot)
        cheapest, greedy = min(completion.values()), completion[greedy_action(env)]
        size = env.tables.size[env.state.decision[0]]
        for action, c in completion.items():
            assert rows[action, 1] == (c == cheapest)
            if scale == "capacity":
                cap = env.tables.capacity
                assert rows[action, 2] == pytest.approx(min(1.0, (c - cheapest) / cap))
                assert rows[action, 3] == pytest.approx((c / cap) / (1 + c / cap))
            else:
                regret, cost = (c - cheapest) / size, c / (greedy + size)
                assert rows[action, 2] == pytest.approx(regret / (1 + regret))
                assert rows[action, 3] == pytest.approx(cost / (1 + cost))
            checked += 1
        obs, _, terminated, _, info = env.step(random_action(env, rng))
    assert checked > 0


def full_completions(env: MallocGameEnv) -> np.ndarray:
    """The "lookahead" completions recomputed from scratch: one ``play_greedy`` per legal action."""
    out = np.full(env.K + 1, -1, dtype=np.int64)
    for action in np.flatnonzero(env._mask):
        state = env.state.clone()
        state.apply(EVICT if action == 0 else int(action) - 1)
        out[action] = play_greedy(state).nc_bytes - env.state.nc_bytes
    return out


def check_incremental_completions(env: MallocGameEnv, seed: int, greedy_share: float) -> int:
    """Play an episode, the greedy action with probability ``greedy_share`` (the recorded
    trajectory is followed) else a random one (it is left), going back to an earlier snapshot
    now and then (as a search does); at every decision the env's completions must equal the
    full recomputation. Returns the decisions checked."""
    rng = np.random.default_rng(seed)
    env.reset(seed=seed)
    terminated, checked, snapshots = False, 0, []
    while not terminated:
        assert np.array_equal(env._completion, full_completions(env)), env.state.k
        checked += 1
        if rng.random() < 0.2:
            snapshots.append(env.clone_state())
        if snapshots and rng.random() < 0.1:  # back to an earlier decision
            env.restore_state(snapshots.pop(int(rng.integers(len(snapshots)))))
            assert np.array_equal(env._completion, full_completions(env))
        action = greedy_action(env) if rng.random() < greedy_share else random_action(env, rng)
        _, _, terminated, _, _ = env.step(action)
    return checked


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("all_offsets", [False, True])
def test_incremental_lookahead_equals_the_full_rollouts(seed, all_offsets):
    """The lookahead rows come from one recorded greedy trajectory (``mallocgame.lookahead``);
    their completions are exactly one ``play_greedy`` per legal action, whether the episode
    follows the trajectory or leaves it, on random DAGs of several sizes and capacities."""
    tier = ("M_R", "M_H")[seed % 2]
    problem = dag_problem(seed, tier, weights=seed % 3 != 0, n_ops=(12, 24, 40)[seed % 3])
    env = MallocGameEnv(problem=problem, lookahead=True, all_offsets=all_offsets, **SMALL)
    for greedy_share in (0.0, 0.8):
        assert check_incremental_completions(env, seed, greedy_share) > 0


@pytest.mark.parametrize("all_offsets", [False, True])
def test_incremental_lookahead_equals_the_full_rollouts_on_a_zoo_model(all_offsets):
    path = ZOO_DIR / "resnet18.onnx"
    if not path.exists():
        pytest.skip("models/zoo/resnet18.onnx not present")
    env = MallocGameEnv(model_path=str(path), capacity="M_R", lookahead=True, all_offsets=all_offsets)
    assert check_incremental_completions(env, 1, 0.8) > 0


def test_unknown_lookahead_scale_is_a_usage_error():
    from cosma.core.errors import UsageError

    with pytest.raises(UsageError, match="lookahead scale"):
        MallocGameEnv(problem=dag_problem(1), lookahead=True, lookahead_scale="bytes", **SMALL)


def test_stop_lookahead_zeroes_the_rows_until_the_next_reset():
    env = MallocGameEnv(problem=dag_problem(1, "M_R", n_ops=20), lookahead=True, **SMALL)
    obs, _ = env.reset(seed=0)
    assert obs["lookahead"][:, 0].sum() >= 1
    env.stop_lookahead()
    obs, *_ = env.step(greedy_action(env))
    assert not obs["lookahead"].any()
    lookahead_action(env)  # still works: it computes the completions it needs
    obs, _ = env.reset(seed=0)
    assert obs["lookahead"][:, 0].sum() >= 1


def play_from(env: MallocGameEnv, action: int):
    """Play ``action``, then the greedy rule to the end."""
    obs, _, terminated, _, info = env.step(action)
    while not terminated:
        obs, _, terminated, _, info = env.step(greedy_action(env))
    return obs, info


def test_lookahead_policy_is_never_worse_than_greedy():
    """The greedy action's completion is among those the lookahead compares, so over an
    episode it can only improve on XLA's rule (a rollout policy's guarantee); on these
    small DAGs it does improve on most."""
    better = 0
    for seed in range(6):
        for tier in ("M_R", "M_H"):
            problem = dag_problem(seed, tier, weights=seed % 2 == 1, n_ops=24)
            for all_offsets in (False, True):
                env = MallocGameEnv(problem=problem, all_offsets=all_offsets, **SMALL)
                greedy_return, _ = play(env, greedy_action, seed=0)
                lookahead_return, info = play(env, lookahead_action, seed=0)
                check_terminal(env, lookahead_return, info)
                assert lookahead_return >= greedy_return
                better += lookahead_return > greedy_return
    assert better >= 12


def test_all_offsets_offers_more_keeps_and_the_same_greedy_game():
    """Every offset of a gap that fits becomes a candidate: more legal keeps somewhere, and
    XLA's rule (which plays the first) gives the same plan."""
    more = 0
    for seed in range(4):
        problem = dag_problem(seed, "M_H", n_ops=24)
        legal = {}
        for all_offsets in (False, True):
            env = MallocGameEnv(problem=problem, all_offsets=all_offsets, num_candidates=8)
            obs, _ = env.reset(seed=0)
            counts, terminated = [], False
            while not terminated:
                counts.append(int(obs["action_mask"].sum()))
                obs, _, terminated, _, info = env.step(greedy_action(env))
            legal[all_offsets] = (counts, info["cost"])
        (few, cost), (many, same_cost) = legal[False], legal[True]
        assert cost == same_cost and all(m >= f for f, m in zip(few, many))
        more += sum(m > f for f, m in zip(few, many))
    assert more > 0


def test_instances_are_deterministic():
    def draws(sampler: InstanceSampler, seed: int) -> list[tuple[str, int]]:
        rng = np.random.default_rng(seed)
        return [(i.name, i.problem.capacity) for i in (sampler.sample(rng) for _ in range(8))]

    sampler = InstanceSampler(dag_ops=(4, 10), zoo_prob=0.2, max_zoo_ops=60)
    assert draws(sampler, 5) == draws(InstanceSampler(dag_ops=(4, 10), zoo_prob=0.2, max_zoo_ops=60), 5)
    assert draws(sampler, 5) != draws(sampler, 6)
    first = evaluation_set(models=(), n_dags=3, dag_ops=10)
    second = evaluation_set(models=(), n_dags=3, dag_ops=10)
    assert [(i.name, i.problem.capacity) for i in first] == [(i.name, i.problem.capacity) for i in second]
    assert len(first) == 3 * 3 * 2
    for inst in first:
        caps = tier_capacities(inst.problem.graph, EDGE, inst.problem.weights_counted)
        assert caps["M_R"] <= caps["M_H"] <= caps["M_P"]


def tiny_onnx(path) -> None:
    """x -> Conv -> Relu -> Add(with the conv output) -> y: a residual block in ONNX."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])
    w = helper.make_tensor("w", TensorProto.FLOAT, [4, 4, 3, 3], np.zeros(144, np.float32).tolist())
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("Add", ["r", "c"], ["y"], name="add"),
    ]
    graph = helper.make_graph(nodes, "tiny", [x], [y], initializer=[w])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))


def test_cli_play_and_bench(tmp_path, capsys):
    model = tmp_path / "tiny.onnx"
    tiny_onnx(model)
    out = tmp_path / "plan.json"
    for policy in ("greedy", "random", "lookahead"):
        assert main(["play", str(model), "--scratchpad", "M_R", "--policy", policy, "-o", str(out)]) == 0
        assert out.exists()
    assert main(["play", str(model), "--scratchpad", "M_R", "--policy", "lookahead", "--all-offsets"]) == 0
    assert "return" in capsys.readouterr().out
    assert main(["play", str(model), "--scratchpad", "16", "--policy", "greedy"]) == 2  # below M_R
    assert main(["bench", "--steps", "50", "--model", str(model)]) == 0
    assert "steps/s" in capsys.readouterr().out
    assert main(["bench", "--steps", "30", "--dag", "1x12", "--lookahead", "--policy", "lookahead"]) == 0
    assert "steps/s" in capsys.readouterr().out
    assert main(["bench", "--dag", "1-12"]) == 2


def test_a_tier_named_to_the_game_is_the_tier_cosma_optimize_uses():
    """One tiers module: ``mallocgame play --scratchpad M_P`` and ``cosma optimize`` agree."""
    from cosma.schedules.tiers import compute_tiers

    graph = dag_graph(5, 24, EDGE.alignment)
    tiers = compute_tiers(graph, EDGE, True)
    for tier in ("M_R", "M_H", "M_P"):
        assert make_problem(graph, tier, EDGE, True).capacity == tiers.capacity(tier)
