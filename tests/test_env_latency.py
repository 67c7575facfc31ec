"""mallocGame under ``objective="latency"`` (issue #19): the timing phase, where the start of each
load is the player's choice, and a return that is the cost model's latency."""

from __future__ import annotations

import warnings
from dataclasses import replace

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from cosma.core.cost import evaluate
from cosma.core.errors import UsageError
from cosma.core.interface import RunOptions, run
from cosma.core.ir import Problem, Residency
from cosma.core.prefetch import LoadTiming
from cosma.core.validator import validate
from mallocgame.env import (
    ENV_ID,
    TIMING_ORDERS,
    MallocGameEnv,
    greedy_action,
    lookahead_action,
    play,
    random_action,
)
from mallocgame.instances import InstanceSampler
from solvers.xla import XlaParams
from tests.test_env import SMALL, dag_problem
from tests.test_latency import GRAPH, IDEAL, SCHEDULE
from tests.test_latency import plan as hide_plan


@pytest.mark.parametrize("objective", ["bytes", "latency"])
def test_check_env_passes_in_both_objectives(objective):
    for kwargs in ({"problem": dag_problem(3)}, {"sampler": InstanceSampler(preset="dags", dag_ops=(4, 12))}):
        env = gym.make(ENV_ID, render_mode="ansi", objective=objective, **SMALL, **kwargs).unwrapped
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            check_env(env)
        assert [str(w.message) for w in caught] == []


@pytest.mark.parametrize("seed", range(4))
def test_the_latency_return_is_the_finished_plans_latency(seed):
    problem = dag_problem(seed, "M_R")
    env = MallocGameEnv(problem=problem, objective="latency", **SMALL)
    rng = np.random.default_rng(seed)
    for policy in (greedy_action, lambda e: random_action(e, rng)):
        episode_return, info = play(env, policy, seed=seed)
        plan, cost = info["plan"], info["cost"]
        latency_problem = replace(problem, objective="latency")
        assert validate(latency_problem, plan) == []
        assert cost == evaluate(latency_problem, plan)
        assert info["nc_bytes"] == cost.non_compulsory_bytes
        assert episode_return == pytest.approx(-cost.latency_cycles / info["scale"])
    baseline = run(latency_problem, "best-greedy")
    assert info["scale"] == baseline.cost.latency_cycles


def test_the_objective_defaults_to_the_problems_and_bytes_is_unchanged():
    problem = dag_problem(1, "M_R")
    assert MallocGameEnv(problem=replace(problem, objective="latency"), **SMALL).objective == "latency"
    by_bytes = MallocGameEnv(problem=problem, **SMALL)
    assert by_bytes.objective == "bytes"
    episode_return, info = play(by_bytes, greedy_action, seed=0)
    assert episode_return == pytest.approx(-info["cost"].non_compulsory_bytes / info["scale"])
    with pytest.raises(UsageError):
        MallocGameEnv(problem=problem, objective="energy", **SMALL)


# -- the timing phase ----------------------------------------------------------------------


def hide_problem() -> Problem:
    """tests/test_latency.py's graph: ``a`` is spilled after step 1 and reloaded for step 4;
    step 3 is compute-bound (100 MACs at 1 MAC/cycle) and leaves room for ``a``."""
    return Problem(GRAPH, 24, IDEAL, objective="latency")


def to_timing_phase(env: MallocGameEnv, policy=greedy_action):
    """Reset and play ``policy`` until the first timing decision; returns (obs, info, return so far)."""
    obs, info = env.reset(seed=0)
    total = 0.0
    while env.timing is None:
        obs, reward, terminated, _, info = env.step(policy(env))
        total += reward
        assert not terminated
    return obs, info, total


def test_a_timing_action_hides_a_reload_behind_a_compute_bound_step():
    problem = hide_problem()
    env = MallocGameEnv(problem=problem, schedule=SCHEDULE, **SMALL)
    obs, info, untimed = to_timing_phase(env)
    assert (info["tensor"], info["segment"]) == ("a", (2, 4))  # free after its residency [0, 2) ends
    assert obs["action_mask"].tolist() == [1, 1, 0, 0, 0]  # step 2 holds c at a's range: only step 3 is offered
    assert obs["candidates"][1, 1] == pytest.approx(3 / 5) and obs["candidates"][1, 3] == 1.0  # fully hidden
    assert obs["segment"][17] == 1.0  # the timing phase
    snapshot = env.clone_state()
    _, at_use, done, _, late = env.step(0)
    assert done and at_use == 0.0
    env.restore_state(snapshot)
    assert greedy_action(env) == 1  # the prefetch pass's choice
    _, hidden, done, _, early = env.step(1)
    assert done
    assert early["cost"].latency_cycles == late["cost"].latency_cycles - 8  # a's 8 B at 1 B/cycle, now hidden
    assert hidden == pytest.approx(8 / early["scale"])
    assert Residency("a", 3, 5, 16) in early["plan"].residencies
    assert validate(problem, early["plan"]) == []
    assert untimed + hidden == pytest.approx(-early["cost"].latency_cycles / early["scale"])
    assert early["cost"].non_compulsory_bytes == late["cost"].non_compulsory_bytes  # timing moves no byte


def test_a_start_whose_range_is_not_free_is_not_offered():
    problem = hide_problem()
    timing = LoadTiming(problem, hide_plan(a_offset=16))  # c sits on a's range at step 3
    (reload,) = [load for load in timing.loads if load.tensor == "a"]
    assert timing.options(reload) == []
    timing = LoadTiming(problem, hide_plan(a_offset=8))
    (reload,) = [load for load in timing.loads if load.tensor == "a"]
    assert [(o.start, o.delta) for o in timing.options(reload, hidden=None)] == [(3, -8.0)]  # step 2 holds b
    # Relocated: at step 3 only [8, 16) is free over steps 3-4 (d, y, c sit at 0-8 and 16-20);
    # at step 2 b takes [0, 16) too, so nothing holds a's 8 bytes over steps 2-4.
    timing = LoadTiming(problem, hide_plan(a_offset=16), relocate=True)
    (reload,) = [load for load in timing.loads if load.tensor == "a"]
    (option,) = timing.options(reload, hidden=None)
    assert (option.start, option.offset, option.delta) == (3, 8, -8.0)
    timing.move(reload, option)
    assert Residency("a", 3, 5, 8) in timing.plan().residencies
    assert validate(problem, timing.plan()) == []


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("relocate", [False, True])
def test_every_offered_start_is_free_until_the_use(seed, relocate):
    """Checked against the plan as timed so far: the offered range is free from the start to
    the use (relocated: to the residency's end), aligned, inside the capacity."""
    problem = replace(dag_problem(seed, "M_H", weights=True, n_ops=20), objective="latency")
    env = MallocGameEnv(problem=problem, relocate=relocate, **SMALL)
    rng = np.random.default_rng(seed)
    obs, _, _ = to_timing_phase(env, lambda e: random_action(e, rng))
    offered = relocated = 0
    while True:
        game = env.unwrapped
        load = game._loads[game._tk]
        plan = game.timing.plan()
        mine = game.timing.residencies[load.index]
        before = [r for r in plan.residencies if r.tensor == load.tensor and r.end <= load.use]
        for option in game._starts:
            assert max((r.end for r in before), default=0) <= option.start < load.use
            assert option.offset % problem.alignment == 0 and option.offset + load.footprint <= problem.capacity
            until = load.use if option.offset == mine.offset else mine.end
            # A residency moved to make room is checked at its new offset, over its own steps.
            residencies = list(game.timing.residencies)
            if option.displaced is not None:
                j, offset = option.displaced
                moved = residencies[j] = replace(residencies[j], offset=offset)
                for r in residencies:
                    if r is moved or r.tensor == load.tensor or r.end <= moved.start or r.start >= moved.end:
                        continue
                    lo, hi = r.offset, r.offset + problem.footprint(r.tensor)
                    assert hi <= offset or offset + problem.footprint(moved.tensor) <= lo, (moved, r)
            for r in residencies:
                if r.tensor == load.tensor or r.end <= option.start or r.start >= until:
                    continue
                lo, hi = r.offset, r.offset + problem.footprint(r.tensor)
                assert hi <= option.offset or option.offset + load.footprint <= lo, (load, option, r)
            offered += 1
            relocated += option.offset != mine.offset
        obs, _, terminated, _, info = env.step(random_action(env, rng))
        if terminated:
            break
    assert validate(problem, info["plan"]) == []
    assert offered > 0 and (relocate or relocated == 0)


@pytest.mark.parametrize("seed", range(3))
def test_greedy_in_the_saving_order_is_the_prefetch_pass(seed):
    for tier in ("M_R", "M_H"):
        problem = replace(dag_problem(seed, tier, weights=True, n_ops=20), objective="latency")
        env = MallocGameEnv(problem=problem, timing_order="saving", **SMALL)
        _, info = play(env, greedy_action, seed=0)
        xla = run(problem, "xla-msa", XlaParams(prefetch="on"), RunOptions(schedule=env.schedule))
        assert info["cost"] == xla.cost
        for relocate in (False, True):  # the other orders time the same plan: the same bytes
            _, by_time = play(MallocGameEnv(problem=problem, relocate=relocate, **SMALL), greedy_action, seed=0)
            assert by_time["cost"].non_compulsory_bytes == xla.cost.non_compulsory_bytes
    with pytest.raises(UsageError):
        MallocGameEnv(problem=problem, timing_order="random", **SMALL)


@pytest.mark.parametrize("order", TIMING_ORDERS)
def test_latency_episodes_stay_in_the_spaces_and_return_the_latency(order):
    """Every observation of whole episodes (both phases, lookahead rows included) lies in the
    observation space, and every policy's return is the finished plan's latency."""
    problem = replace(dag_problem(7, "M_H", weights=True, n_ops=24), objective="latency")
    env = MallocGameEnv(problem=problem, lookahead=True, timing_order=order, **SMALL)
    rng = np.random.default_rng(0)
    for policy in (greedy_action, lookahead_action, lambda e: random_action(e, rng)):
        obs, info = env.reset(seed=0)
        total, terminated, timing_steps = 0.0, False, 0
        while not terminated:
            assert env.observation_space.contains(obs), {k: (v.min(), v.max()) for k, v in obs.items()}
            timing_steps += env.timing is not None
            obs, reward, terminated, _, info = env.step(policy(env))
            total += reward
        assert timing_steps > 0 and info["decision"] == len(env.tables.decisions) + timing_steps
        assert validate(problem, info["plan"]) == []
        assert total == pytest.approx(-evaluate(problem, info["plan"]).latency_cycles / info["scale"])


def test_timing_lookahead_rows_are_the_greedy_timing_completions():
    problem = replace(dag_problem(7, "M_H", weights=True, n_ops=24), objective="latency")
    env = MallocGameEnv(problem=problem, lookahead=True, **SMALL)
    obs, info, _ = to_timing_phase(env)
    bw = problem.hardware.dram_bytes_per_cycle
    checked, terminated = 0, False
    while not terminated:
        snapshot, exposed = env.clone_state(), {}
        compute = sum(env.timing.compute)
        for action in np.flatnonzero(obs["action_mask"]):
            env.restore_state(snapshot)
            _, _, done, _, end = env.step(int(action))
            while not done:
                _, _, done, _, end = env.step(greedy_action(env))
            exposed[action] = (end["cost"].latency_cycles - compute) * bw
        env.restore_state(snapshot)
        cap = env.tables.capacity
        for action, c in exposed.items():
            assert obs["lookahead"][action, 3] == pytest.approx((c / cap) / (1 + c / cap), abs=1e-3)
            checked += 1
        assert lookahead_action(env) in exposed
        assert exposed[lookahead_action(env)] == min(exposed.values())
        obs, _, terminated, _, _ = env.step(lookahead_action(env))
    assert checked > 1


def test_clone_and_restore_replay_the_timing_phase_exactly():
    problem = replace(dag_problem(7, "M_H", weights=True, n_ops=24), objective="latency")
    env = MallocGameEnv(problem=problem, **SMALL)
    rng = np.random.default_rng(3)
    to_timing_phase(env, lambda e: random_action(e, rng))
    snapshot = env.clone_state()

    def finish(seed):
        r = np.random.default_rng(seed)
        out, terminated = [], False
        while not terminated:
            obs, reward, terminated, _, info = env.step(random_action(env, r))
            out.append((reward, {k: v.tolist() for k, v in obs.items()}))
        return out, info["cost"]

    first = finish(1)
    env.restore_state(snapshot)
    assert finish(1) == first
    env.restore_state(snapshot)
    assert finish(1) == first


def test_cli_plays_the_latency_game(tmp_path, capsys):
    from mallocgame.cli import main
    from tests.test_env import tiny_onnx

    model = tmp_path / "tiny.onnx"
    tiny_onnx(model)
    for policy in ("greedy", "lookahead", "random"):
        argv = ["play", str(model), "--scratchpad", "M_R", "--policy", policy, "--objective", "latency"]
        assert main([*argv, "-o", str(tmp_path / "plan.json")]) == 0
        assert "baseline latency" in capsys.readouterr().out
    with pytest.raises(SystemExit) as bad:  # argparse: one line on stderr, exit 2
        main(["play", str(model), "--scratchpad", "M_R", "--objective", "energy"])
    assert bad.value.code == 2
