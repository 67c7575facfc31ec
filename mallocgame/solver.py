"""The trained agent as a solver: ``cosma optimize --solver muzero``.

It plays one mallocGame episode on the problem with search on the learned model (no
Gumbel noise: deterministic) and returns the episode's plan. The env only offers legal
actions and its finished episode is a complete plan, so the plan is always valid (and
``cosma.core.interface.run`` checks it anyway). Past the time limit the remaining decisions are
played by the env's greedy policy, so a plan still comes back.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from cosma.core.errors import UsageError
from cosma.core.interface import RunOptions, SolveResult, Status, bytes_bound_only, register
from cosma.core.ir import Problem
from cosma.core.paths import AGENT_CHECKPOINT

# torch and the agent are imported when the solver runs, not when the registry loads it.
MODELS = ("learned", "true")  # as mallocgame.agent.policy.MODELS

DEFAULT_CHECKPOINT = str(AGENT_CHECKPOINT)


@dataclass(frozen=True)
class MuZeroParams:
    """Settings of the muzero solver."""

    checkpoint: str = DEFAULT_CHECKPOINT  # a checkpoint written by `mallocgame train` (default: the shipped one)
    num_simulations: int = (
        0  # model calls per decision (more searches deeper, runs slower); 0: the model's, chosen on validation
    )
    max_considered_actions: int = 8  # actions sequential halving starts with at the root
    model: str = "learned"  # plan with the "learned" dynamics (MuZero) or the "true" env (AlphaZero-style)
    c_scale: float = 0.0  # weight of q-values against the policy prior; 0: the model's, chosen on validation
    min_q_range: float = (
        -1.0
    )  # floor of the search's q normalization range; negative: the model's, chosen on validation


@lru_cache(maxsize=4)
def _cached_agent(path: str, mtime: float):
    from mallocgame.agent.checkpoint import load_agent

    return load_agent(path)


@register("muzero", "mallocMuZero: one mallocGame episode with search on the learned model", MuZeroParams)
def solve_muzero(problem: Problem, params: MuZeroParams, options: RunOptions) -> SolveResult:
    if params.model not in MODELS:
        raise UsageError(f"muzero: unknown model {params.model!r}; known: {', '.join(MODELS)}")
    import numpy as np
    import torch

    from mallocgame.agent.envs import make_problem_env
    from mallocgame.agent.policy import (
        INFERENCE_C_SCALE,
        INFERENCE_MIN_Q_RANGE,
        INFERENCE_SIMULATIONS,
        make_policy,
    )
    from mallocgame.agent.rollout import play_episodes
    from mallocgame.agent.search import SearchParams
    from mallocgame.env import greedy_action

    path = str(Path(params.checkpoint))
    agent = _cached_agent(path, Path(path).stat().st_mtime if Path(path).exists() else 0.0)
    torch.set_num_threads(max(1, options.threads))
    search = SearchParams(
        num_simulations=params.num_simulations or INFERENCE_SIMULATIONS[params.model],
        max_num_considered_actions=params.max_considered_actions,
        gumbel_scale=0.0,
        discount=agent.config.get("discount", 1.0),
        c_scale=params.c_scale or INFERENCE_C_SCALE[params.model],
        min_q_range=params.min_q_range if params.min_q_range >= 0 else INFERENCE_MIN_Q_RANGE[params.model],
    )
    env = make_problem_env(agent.settings, problem, schedule=options.schedule)
    deadline = None if options.time_limit is None else time.perf_counter() + options.time_limit
    start = time.perf_counter()
    (episode,) = play_episodes(
        make_policy(agent.net, search, params.model), [env], np.random.default_rng(options.seed),
        deadline=deadline, fallback=greedy_action,
    )  # fmt: skip
    plan = episode.final_info["plan"]
    nc = episode.agent_bytes
    stats = {
        "decisions": episode.steps,
        "searched_decisions": episode.steps - episode.fallback_steps,
        "episode_return": episode.episode_return,
        "baseline_bytes": episode.baseline_bytes,
        "checkpoint": path,
        "num_simulations": search.num_simulations,
        "model": params.model,
    }
    message = ""
    if episode.fallback_steps:
        message = f"time limit reached: the last {episode.fallback_steps} decisions were played greedily"
    options.say(f"muzero: {episode.steps} decisions in {time.perf_counter() - start:.1f} s, {nc} NC bytes")
    if nc == 0:  # nothing non-compulsory: 0 is a lower bound, so this is optimal
        return bytes_bound_only(problem, SolveResult(Status.OPTIMAL, plan, bound=0, stats=stats, message=message))
    return SolveResult(Status.FEASIBLE, plan, stats=stats, message=message)


__all__ = ["MuZeroParams", "solve_muzero", "DEFAULT_CHECKPOINT"]
