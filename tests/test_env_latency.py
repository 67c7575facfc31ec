"""mallocGame under ``objective="latency"`` (issue #19): the return is the cost model's latency."""

from __future__ import annotations

import warnings
from dataclasses import replace

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from cosma.core.cost import evaluate
from cosma.core.errors import UsageError
from cosma.core.interface import run
from cosma.core.validator import validate
from mallocgame.env import ENV_ID, MallocGameEnv, greedy_action, play, random_action
from mallocgame.instances import InstanceSampler
from tests.test_env import SMALL, dag_problem


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
