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

``RayActorPool`` (``--ray``) is the same pool on Ray, on this machine or across a cluster,
in muzero-general's layout: every ``weights_every`` gradient steps the learner puts its
weights in Ray's object store and tells a shared-storage actor (``WeightStore``); each
self-play actor (``RaySelfPlayer``, one CPU: the same ``SelfPlay`` loop) polls the store
between decisions, loads weights newer than its own, and pushes its finished games to an
inbox actor (``GameInbox``) that the learner empties into its replay. One learner: this
process. Nothing is shared in memory, so the actors play on weights at most
``weights_every`` steps old rather than on the live ones.
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

from mallocgame.agent.envs import EnvSettings, agent_reward, reward_frame
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
        self.returns = [0.0 for _ in envs]  # the env's return of each game so far (its rewards' sum)
        self.obs = [env.reset(seed=seed)[0] for env, seed in zip(envs, seeds)]

    def step(self, rng: np.random.Generator) -> list[Finished]:
        """One searched decision in every game; returns the games this step finished (the
        envs are reset and their next games begun)."""
        decision = self.policy(self.obs, rng)
        surprises = decision.surprise  # [B], or None from a policy without a search
        finished = []
        for i, env in enumerate(self.envs):
            before = reward_frame(env)
            next_obs, reward, terminated, truncated, _ = env.step(int(decision.action[i]))
            siblings = {}
            if self.sibling_targets:
                siblings = {"child_rewards": decision.child_rewards[i], "child_values": decision.child_values[i],
                            "child_tried": decision.child_tried[i]}  # fmt: skip
            surprise = 0.0 if surprises is None else float(surprises[i])
            game = self.games[i]
            game.append(self.obs[i], decision.action[i], agent_reward(env, reward, before), decision.policy[i],
                        decision.root_value[i], **siblings, surprise=surprise)  # fmt: skip
            self.returns[i] += reward
            self.obs[i] = next_obs
            if terminated or truncated:
                finished.append((game, self.returns[i]))  # the env's return
                self.games[i], self.returns[i] = Game(), 0.0
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


def actor_seeds(seed: int, index: int, num_envs: int) -> list[int]:
    """The env seeds of actor ``index``: its own, apart from the learner's envs (seed * 1000 + i,
    i < num_envs) and from every other actor's."""
    return [seed * 1000 + 100 * (index + 1) + i for i in range(num_envs)]


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
            seeds = actor_seeds(seed, j, num_envs)
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

    def sync(self, net: MuZeroNet, updates: int) -> None:
        """Nothing to send: the actors read the learner's weights in shared memory."""

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


class WeightStore:
    """Shared storage (a Ray actor of no CPU): the learner's latest weights, as a reference into
    the object store with the number of gradient steps they are from, and the stop signal."""

    def __init__(self):
        self.version, self.weights, self.stopping = -1, None, False

    def publish(self, version: int, boxed: list) -> None:
        self.version, self.weights = version, boxed  # [ObjectRef]: boxed, so Ray passes the reference on

    def poll(self, known: int) -> tuple[bool, tuple[int, list] | None]:
        """(stop?, (version, [weights ref]) when newer than ``known``, else None)."""
        return self.stopping, None if self.version == known else (self.version, self.weights)

    def stop(self) -> None:
        self.stopping = True


class GameInbox:
    """Finished games on their way to the learner's replay (a Ray actor of no CPU)."""

    def __init__(self):
        self.items: list[Finished] = []

    def put(self, items: list[Finished]) -> int:
        self.items.extend(items)
        return len(self.items)

    def size(self) -> int:
        return len(self.items)

    def take(self) -> list[Finished]:
        out, self.items = self.items, []
        return out


class RaySelfPlayer:
    """A self-play actor on Ray (one CPU): ``SelfPlay`` on the store's latest weights, its
    finished games pushed to the inbox, until the store says stop."""

    def __init__(
        self, net_config, params: SearchParams, model: str, make_env: Callable[[EnvSettings, int], Any],
        settings: EnvSettings, seeds: list[int], sibling_targets: bool, store: Any, inbox: Any, room: int,
    ):  # fmt: skip
        torch.set_num_threads(1)
        torch.manual_seed(seeds[0])
        self.rng = np.random.default_rng(seeds)
        self.net, self.version = MuZeroNet(net_config), -1
        self.store, self.inbox, self.room = store, inbox, room
        envs = [make_env(settings, seed) for seed in seeds]
        self.play = SelfPlay(make_policy(self.net, params, model), envs, seeds, sibling_targets)

    def _stopping(self) -> bool:
        """Whether to stop; loads the learner's weights when they are newer than the actor's."""
        import ray

        stopping, newer = ray.get(self.store.poll.remote(self.version))
        if newer is not None and not stopping:
            self.version, (ref,) = newer
            self.net.load_state_dict(ray.get(ref))
        return stopping

    def run(self) -> dict[str, int]:
        """Play until stopped; returns the decisions played and the version of the weights last
        loaded (an error is raised to the learner)."""
        import ray

        decisions = 0
        while not self._stopping():
            finished = self.play.step(self.rng)
            decisions += len(self.play.envs)
            if finished and ray.get(self.inbox.put.remote(finished)) >= self.room:
                while not self._stopping() and ray.get(self.inbox.size.remote()) >= self.room:
                    time.sleep(0.05)  # the learner is behind: wait for it to empty the inbox
        return {"decisions": decisions, "version": self.version}


class RayActorPool:
    """``ActorPool`` on Ray: ``n`` ``RaySelfPlayer`` actors, the ``WeightStore`` and the
    ``GameInbox``, on the Ray at ``address`` (``cosma.core.distributed.ray_session``: a local
    one with ``n`` CPUs, or a cluster's), which ``close`` leaves as it found it."""

    def __init__(
        self, address: str, weights_every: int, n: int, net: MuZeroNet, params: SearchParams, model: str,
        make_env: Callable[[EnvSettings, int], Any], settings: EnvSettings, seed: int, num_envs: int,
        sibling_targets: bool,
    ):  # fmt: skip
        import contextlib

        from cosma.core.distributed import ray_session

        self.session = contextlib.ExitStack()
        ray = self.ray = self.session.enter_context(ray_session(address, n))
        try:
            self.weights_every, self.published = max(1, weights_every), -1
            self.store = ray.remote(num_cpus=0)(WeightStore).remote()
            self.inbox = ray.remote(num_cpus=0)(GameInbox).remote()
            self.sync(net, 0, force=True)
            player = ray.remote(num_cpus=1)(RaySelfPlayer)
            self.players = [
                player.remote(
                    net.cfg,
                    params,
                    model,
                    make_env,
                    settings,
                    actor_seeds(seed, j, num_envs),
                    sibling_targets,
                    self.store,
                    self.inbox,
                    16 * num_envs,
                )  # fmt: skip
                for j in range(n)
            ]
            self.runs = [p.run.remote() for p in self.players]
        except BaseException:
            self.session.close()
            raise

    def sync(self, net: MuZeroNet, updates: int, force: bool = False) -> None:
        """Publish the learner's weights when ``weights_every`` gradient steps passed since the last time."""
        if force or updates - self.published >= self.weights_every:
            weights = {k: v.detach().clone() for k, v in net.state_dict().items()}
            self.store.publish.remote(updates, [self.ray.put(weights)])
            self.published = updates

    def _check(self) -> None:
        """Raise an actor's error (or its exit: none stops before ``close``)."""
        ended, _ = self.ray.wait(self.runs, num_returns=len(self.runs), timeout=0)
        for ref in ended:
            try:
                self.ray.get(ref)
            except self.ray.exceptions.RayError as e:
                raise RuntimeError(f"a self-play actor failed: {e}") from None
            raise RuntimeError("a self-play actor has exited")

    def collect(self, wait_s: float = 0.0) -> list[Finished]:
        """The games the actors finished since the last call (waiting up to ``wait_s`` for a
        first one when there is none); an actor's error is raised here."""
        out = self.ray.get(self.inbox.take.remote())
        if not out and wait_s > 0:
            self.ray.wait(self.runs, num_returns=1, timeout=wait_s)  # a pause that a failing actor cuts short
            out = self.ray.get(self.inbox.take.remote())
        if not out:
            self._check()
        return out

    def close(self) -> list[dict[str, int]]:
        """Stop the actors (their unfinished games are dropped) and leave Ray as found; returns
        what each actor that stopped cleanly reports (``RaySelfPlayer.run``)."""
        ray = self.ray
        reports = []
        try:
            ray.get(self.store.stop.remote(), timeout=10.0)
            ended, _ = ray.wait(self.runs, num_returns=len(self.runs), timeout=10.0)
            for ref in ended:
                try:
                    reports.append(ray.get(ref))
                except ray.exceptions.RayError:
                    pass  # its error was raised by collect, or the run is ending over another one
        except ray.exceptions.RayError:
            pass  # a lost store: the actors are killed below all the same
        finally:
            for actor in (*self.players, self.store, self.inbox):
                ray.kill(actor)
            self.session.close()
        return reports


__all__ = [
    "ActorPool",
    "Finished",
    "GameInbox",
    "RayActorPool",
    "RaySelfPlayer",
    "SelfPlay",
    "WeightStore",
    "actor_seeds",
]
