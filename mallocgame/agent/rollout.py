"""Playing whole episodes with a policy: evaluation games, the solver's single game.

Envs run in lockstep so that every decision searches all unfinished games as one batch.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from mallocgame.agent.policy import Decision

Policy = Callable[..., Decision]  # (observations, rng, gumbel_scale=...) -> Decision


@dataclass
class Episode:
    """The outcome of one finished game."""

    name: str  # instance name (from the env's info, when it says)
    episode_return: float  # sum of rewards: -(agent NC bytes / baseline NC bytes), > -1 beats the baseline
    steps: int  # decisions played
    agent_bytes: int | None  # non-compulsory bytes of the agent's plan (terminal info["cost"])
    baseline_bytes: int | None  # non-compulsory bytes of the best greedy baseline
    final_info: dict[str, Any]  # the terminal info dict (carries "plan" and "cost")
    fallback_steps: int = 0  # decisions played by the fallback policy after the deadline
    objective: str = "bytes"  # the game played: under "latency" the return compares latencies

    @property
    def beats_baseline(self) -> bool:
        """Strictly better than best-greedy (the return convention: above -1)."""
        if self.objective == "bytes" and self.agent_bytes is not None and self.baseline_bytes is not None:
            return self.agent_bytes < self.baseline_bytes
        return self.episode_return > -1.0


def instance_name(env, info: dict[str, Any]) -> str:
    for key in ("instance", "name", "problem_name"):
        if key in info:
            return str(info[key])
    problem = getattr(env.unwrapped, "problem", None)
    return getattr(getattr(problem, "graph", None), "name", "") or "?"


def play_episodes(
    policy: Policy, envs: list, rng: np.random.Generator, *, seeds: list[int | None] | None = None,
    gumbel_scale: float = 0.0, deadline: float | None = None, fallback: Callable[[Any], int] | None = None,
    on_decision: Callable[[list, list, Decision], None] | None = None,
) -> list[Episode]:  # fmt: skip
    """Play one episode in each env, searching all unfinished games together.

    After ``deadline`` (a ``time.perf_counter()`` value), when a ``fallback`` policy
    (env -> action, e.g. the env's greedy policy) is given, the rest is played with it.
    ``on_decision(envs, observations, decision)``, when given, sees every searched decision
    of the unfinished games before it is played (a probe's hook).
    """
    seeds = seeds or [None] * len(envs)
    obs, names = [], []
    for env, seed in zip(envs, seeds):
        o, info = env.reset(seed=seed)
        obs.append(o)
        names.append(instance_name(env, info))
    returns = [0.0] * len(envs)
    steps = [0] * len(envs)
    results: list[Episode | None] = [None] * len(envs)
    fallback_steps = [0] * len(envs)
    active = list(range(len(envs)))
    while active:
        late = fallback is not None and deadline is not None and time.perf_counter() > deadline
        if late:
            for i in active:  # the fallback does not read the observation: stop paying for its lookahead
                getattr(envs[i].unwrapped, "stop_lookahead", lambda: None)()
            actions = [int(fallback(envs[i])) for i in active]
        else:
            if hasattr(policy, "bind"):  # a search on the true env needs the envs themselves
                policy.bind([envs[i] for i in active])
            decision = policy([obs[i] for i in active], rng, gumbel_scale=gumbel_scale)
            if on_decision is not None:
                on_decision([envs[i] for i in active], [obs[i] for i in active], decision)
            actions = decision.action
        still = []
        for j, i in enumerate(active):
            o, reward, terminated, truncated, info = envs[i].step(int(actions[j]))
            returns[i] += float(reward)
            steps[i] += 1
            fallback_steps[i] += late
            obs[i] = o
            if terminated or truncated:
                cost = info.get("cost")
                agent = getattr(cost, "non_compulsory_bytes", None)
                base = info.get("baseline_bytes")
                objective = getattr(envs[i].unwrapped, "objective", "bytes")
                results[i] = Episode(names[i], returns[i], steps[i], agent, base, info, fallback_steps[i], objective)
            else:
                still.append(i)
        active = still
    return [r for r in results if r is not None]


__all__ = ["Episode", "play_episodes", "instance_name"]
