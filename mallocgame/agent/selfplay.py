"""Self-play: games searched in lockstep, in the learner's process or in actor processes.

``SelfPlay`` advances a few games by one searched decision each per ``step`` and hands
back the games that finished. ``train`` either calls it between gradient steps (one
process: self-play and learning take turns on one core), or starts an ``ActorPool``: each
actor process runs its own ``SelfPlay`` on the learner's networks, read from shared
memory, and sends its finished games back. The learner keeps the one-process ratio of
gradient steps to decisions, which takes little CPU: on a 2-core machine, 2 actors play
twice the games of one process in the same wall-clock budget (results/muzero/README.md).

An actor reads the weights while the learner writes them, without a lock: a search may
see a half-applied gradient step. That is A3C's "Hogwild" bargain (Mnih et al., 2016),
and harmless here: one step moves the weights by far less than self-play's own noise.
"""

from __future__ import annotations

import os
import queue as queue_module
import time
import traceback
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from mallocgame.agent.envs import EnvSettings, reward_unit
from mallocgame.agent.networks import MuZeroNet
from mallocgame.agent.policy import make_policy
from mallocgame.agent.replay import Game
from mallocgame.agent.search import SearchParams

Finished = tuple[Game, float]  # a finished game (rewards in the agent's units) and the env's return


class SelfPlay:
    """``len(envs)`` games in lockstep, each decision searched by ``policy`` for all of them at once."""

    def __init__(self, policy, envs: list, seeds: list[int], sibling_targets: bool):
        self.policy, self.envs = policy, envs
        if hasattr(policy, "bind"):  # the true env as the model: the search steps the games' own envs
            policy.bind(envs)
        self.sibling_targets = sibling_targets  # keep what the true env's search found for every root action
        self.games = [Game() for _ in envs]
        self.obs = [env.reset(seed=seed)[0] for env, seed in zip(envs, seeds)]

    def step(self, rng: np.random.Generator) -> list[Finished]:
        """One searched decision in every game; returns the games this step finished (the
        envs are reset and their next games begun)."""
        decision = self.policy(self.obs, rng)
        surprises = decision.surprise  # [B], or None from a policy without a search
        finished = []
        for i, env in enumerate(self.envs):
            unit = reward_unit(env)
            next_obs, reward, terminated, truncated, _ = env.step(int(decision.action[i]))
            siblings = {}
            if self.sibling_targets:
                siblings = {"child_rewards": decision.child_rewards[i], "child_values": decision.child_values[i],
                            "child_tried": decision.child_tried[i]}  # fmt: skip
            surprise = 0.0 if surprises is None else float(surprises[i])
            game = self.games[i]
            game.append(self.obs[i], decision.action[i], reward * unit, decision.policy[i], decision.root_value[i],
                        **siblings, surprise=surprise)  # fmt: skip
            self.obs[i] = next_obs
            if terminated or truncated:
                finished.append((game, game.total_reward / unit))  # the env's return: unit is per episode
                self.games[i] = Game()
                self.obs[i], _ = env.reset()
        return finished


def _actor(
    index: int, net: MuZeroNet, params: SearchParams, model: str, make_env: Callable[[EnvSettings, int], Any],
    settings: EnvSettings, seeds: list[int], sibling_targets: bool, games: Any, stop: Any,
) -> None:  # fmt: skip
    """An actor process: self-play on the shared ``net`` until ``stop`` is set; finished
    games go to the ``games`` queue, an error as ("error", traceback)."""
    torch.set_num_threads(1)
    torch.manual_seed(seeds[0])
    rng = np.random.default_rng(seeds)
    learner = os.getppid()

    def running() -> bool:  # a learner killed outright sets no event: its actors notice they were orphaned
        return not stop.is_set() and os.getppid() == learner

    try:
        envs = [make_env(settings, seed) for seed in seeds]
        play = SelfPlay(make_policy(net, params, model), envs, seeds, sibling_targets)
        while running():
            for item in play.step(rng):
                while running():  # a bounded queue: wait while the learner is behind
                    try:
                        games.put(item, timeout=0.5)
                        break
                    except queue_module.Full:
                        continue
        games.cancel_join_thread()  # stopped: exit without waiting for the learner to read what is queued
    except KeyboardInterrupt:  # Ctrl-C reaches every process of the group: the learner saves
        games.cancel_join_thread()
    except BaseException:  # noqa: BLE001 - a worker reports any failure to its parent
        games.put(("error", f"actor {index}:\n{traceback.format_exc()}"))


class ActorPool:
    """``n`` actor processes playing on ``net``'s weights (moved to shared memory)."""

    def __init__(
        self, n: int, net: MuZeroNet, params: SearchParams, model: str, make_env: Callable[[EnvSettings, int], Any],
        settings: EnvSettings, seed: int, num_envs: int, sibling_targets: bool,
    ):  # fmt: skip
        context = torch.multiprocessing.get_context("spawn")  # no fork of a process that holds torch threads
        net.share_memory()
        self.games = context.Queue(maxsize=16 * num_envs)
        self.stop = context.Event()
        self.processes = []
        for j in range(n):
            # Seeds of their own, apart from the learner's envs (seed * 1000 + i, i < num_envs).
            seeds = [seed * 1000 + 100 * (j + 1) + i for i in range(num_envs)]
            args = (j, net, params, model, make_env, settings, seeds, sibling_targets, self.games, self.stop)
            process = context.Process(target=_actor, args=args, daemon=True, name=f"mallocgame-actor-{j}")
            process.start()
            self.processes.append(process)

    def collect(self, wait_s: float = 0.0) -> list[Finished]:
        """The games the actors finished since the last call (waiting up to ``wait_s`` for a
        first one when there is none); an actor's error is raised here."""
        out: list[Finished] = []
        while True:
            try:
                item = self.games.get(timeout=wait_s) if wait_s > 0 and not out else self.games.get_nowait()
            except queue_module.Empty:
                break
            if isinstance(item[0], str):  # ("error", traceback); a finished game is (Game, return)
                raise RuntimeError(f"a self-play actor failed: {item[1]}")
            out.append(item)
        if not out and not any(p.is_alive() for p in self.processes):
            raise RuntimeError("every self-play actor has exited")
        return out

    def close(self) -> None:
        """Stop the actors (their unfinished games are dropped)."""
        self.stop.set()
        deadline = time.monotonic() + 10.0
        while any(p.is_alive() for p in self.processes) and time.monotonic() < deadline:
            try:  # keep the queue moving, so that no actor blocks on a full pipe
                self.games.get(timeout=0.05)
            except queue_module.Empty:
                pass
        for process in self.processes:
            if process.is_alive():
                process.terminate()
            process.join()
        self.games.cancel_join_thread()


__all__ = ["ActorPool", "Finished", "SelfPlay"]
