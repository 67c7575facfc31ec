"""Policies built on the search: the agent acting in a batch of environments.

The search (``mallocgame.agent.search``) is given a model as its ``recurrent_fn``: the
learned dynamics (``MuZeroPolicy``, the agent) or the env itself (``TrueModelPolicy``, the
AlphaZero-style ablation). This module turns observations into root inputs, reads the
legal actions from the observation's ``action_mask`` and plays the searched action.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from mallocgame.agent.envs import agent_reward, reward_frame
from mallocgame.agent.networks import MuZeroNet, inverse_transform, obs_to_torch
from mallocgame.agent.search import ROOT_INDEX, SearchOutput, SearchParams, root_prior, search

MASK_KEY = "action_mask"  # observation key of the legal-action mask, [A] (1 = legal)

# How the search plays to win (evaluation, the solver), per model, chosen on the validation
# set (``envs.validation_instances``) for the shipped checkpoint (results/muzero/README.md):
# simulations per decision, c_scale (the weight of q-values against the prior) and the floor
# of the q normalization range (``SearchParams.min_q_range``). The learned model's q-values
# rank actions worse than its prior (``mallocgame probe``), so they only tilt it; the true
# env's are exact. Self-play uses TrainConfig's own.
INFERENCE_SIMULATIONS = {"learned": 16, "true": 64}
INFERENCE_C_SCALE = {"learned": 0.01, "true": 0.1}
INFERENCE_MIN_Q_RANGE = {"learned": 0.0, "true": 0.1}


@dataclass
class Decision:
    action: np.ndarray  # [B] int: actions to play
    policy: np.ndarray  # [B, A] improved policy: the policy head's training target
    root_value: np.ndarray  # [B] searched value of the root: bootstraps n-step targets
    # The root's statistics (None from a policy without a search):
    child_rewards: np.ndarray | None = None  # [B, A] reward of each root action the search tried
    child_values: np.ndarray | None = None  # [B, A] backed-up value of the state each tried root action led to
    child_tried: np.ndarray | None = None  # [B, A] bool: the root actions the search expanded
    prior: np.ndarray | None = None  # [B, A] the policy head's prior at the root (zero on illegal actions)

    @property
    def surprise(self) -> np.ndarray | None:
        """[B] how far the search moved the policy from its prior: total variation distance."""
        return None if self.prior is None else 0.5 * np.abs(self.policy - self.prior).sum(axis=1)


def decision_from(out: SearchOutput) -> Decision:
    """The decision a search made, with its root's statistics."""
    tree = out.tree
    tried = tree.children_visits[:, ROOT_INDEX] > 0
    return Decision(out.action, out.action_weights, out.root_value,
                    tree.children_rewards[:, ROOT_INDEX].copy(), tree.children_values[:, ROOT_INDEX].copy(), tried,
                    root_prior(tree))  # fmt: skip


class MuZeroPolicy:
    """Search on the learned model from a batch of observations."""

    def __init__(self, net: MuZeroNet, params: SearchParams):
        self.net = net
        self.params = params
        self.keys = sorted(net.cfg.obs_shapes)

    @torch.no_grad()
    def recurrent_fn(self, embeddings: np.ndarray, actions: np.ndarray):
        """The learned model, as the search calls it: numpy in, numpy out."""
        reward, s, logits, value = self.net.recurrent_inference(torch.from_numpy(embeddings), torch.from_numpy(actions))
        return inverse_transform(reward).numpy(), inverse_transform(value).numpy(), logits.numpy(), s.numpy()

    @torch.no_grad()
    def __call__(self, observations: list[dict[str, np.ndarray]], rng: np.random.Generator,
                 gumbel_scale: float | None = None) -> Decision:  # fmt: skip
        """One searched decision per observation. ``gumbel_scale=0`` plays deterministically."""
        was_training = self.net.training
        self.net.eval()
        s, logits, value = self.net.initial_inference(obs_to_torch(observations, self.keys))
        invalid = np.stack([np.asarray(o[MASK_KEY]) == 0 for o in observations])  # [B, A]
        params = self.params
        if gumbel_scale is not None:
            params = replace(params, gumbel_scale=gumbel_scale)
        out: SearchOutput = search(
            logits.numpy().astype(np.float64), inverse_transform(value).numpy().astype(np.float64), s.numpy(),
            self.recurrent_fn, invalid, params, rng,
        )  # fmt: skip
        self.net.train(was_training)
        return decision_from(out)


class TrueModelPolicy:
    """The same search with the true environment as its model (AlphaZero-style ablation).

    Each root is a live env; a node's "embedding" is the index of its env snapshot
    (``clone_state``) in a table, so the search code is unchanged. Rewards are the game's
    own; values and priors come from the prediction head on the real observation, and
    illegal actions get a -inf prior at every node (their masks are known here). Every
    env is restored to its root snapshot after the search.
    """

    def __init__(self, net: MuZeroNet, params: SearchParams):
        self.net = net
        self.params = params
        self.keys = sorted(net.cfg.obs_shapes)
        self.envs: list = []  # set by ``bind``: the env behind each observation

    def bind(self, envs: list) -> "TrueModelPolicy":
        self.envs = envs
        return self

    @torch.no_grad()
    def _evaluate(self, observations: list[dict[str, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
        """Masked logits [B, A] and values [B] of real observations."""
        _, logits, value = self.net.initial_inference(obs_to_torch(observations, self.keys))
        masks = np.stack([np.asarray(o[MASK_KEY]) for o in observations])
        logits = np.where(masks > 0, logits.numpy().astype(np.float64), -1e9)
        return logits, inverse_transform(value).numpy().astype(np.float64)

    def __call__(self, observations: list[dict[str, np.ndarray]], rng: np.random.Generator,
                 gumbel_scale: float | None = None, envs: list | None = None) -> Decision:  # fmt: skip
        envs = [e.unwrapped for e in (envs or self.envs)]
        if len(envs) != len(observations):
            raise ValueError("bind the policy to one env per observation")
        snapshots: list[tuple] = []  # (env index, state, terminated)

        def remember(b: int, done: bool) -> float:
            snapshots.append((b, envs[b].clone_state(), done))
            return float(len(snapshots) - 1)

        roots = [env.clone_state() for env in envs]
        logits, values = self._evaluate(observations)
        root_ids = np.array([[remember(b, False)] for b in range(len(envs))], dtype=np.float32)  # [B, 1]

        def recurrent_fn(ids: np.ndarray, actions: np.ndarray):
            rewards = np.zeros(len(actions))
            obs, done_flags, new_ids = [], [], np.zeros((len(actions), 1), np.float32)
            for b, (i, a) in enumerate(zip(ids[:, 0].astype(int), actions)):
                _, state, done = snapshots[i]
                envs[b].restore_state(state)
                if done:  # absorbing: nothing more to earn
                    o, r = observations[b], 0.0
                else:
                    before = reward_frame(envs[b])
                    o, r, done, _, _ = envs[b].step(int(a))
                    r = agent_reward(envs[b], r, before)  # the units the value head learns in
                obs.append(o)
                rewards[b] = r
                done_flags.append(done)
                new_ids[b, 0] = remember(b, done)
            child_logits, child_values = self._evaluate(obs)
            child_values = np.where(done_flags, 0.0, child_values)
            return rewards, child_values, child_logits, new_ids

        params = self.params
        if gumbel_scale is not None:
            params = replace(params, gumbel_scale=gumbel_scale)
        invalid = np.stack([np.asarray(o[MASK_KEY]) == 0 for o in observations])
        out = search(logits, values, root_ids, recurrent_fn, invalid, params, rng)
        for env, root in zip(envs, roots):
            env.restore_state(root)
        return decision_from(out)


MODELS = ("learned", "true")  # what the search plans with: the learned dynamics, or the env itself


def make_policy(net: MuZeroNet, params: SearchParams, model: str = "learned"):
    """The search policy planning with ``model`` (one of ``MODELS``)."""
    if model == "learned":
        return MuZeroPolicy(net, params)
    if model == "true":
        return TrueModelPolicy(net, params)
    raise ValueError(f"unknown model {model!r}; known: {', '.join(MODELS)}")


__all__ = [
    "MASK_KEY",
    "INFERENCE_SIMULATIONS",
    "INFERENCE_C_SCALE",
    "INFERENCE_MIN_Q_RANGE",
    "MODELS",
    "Decision",
    "MuZeroPolicy",
    "TrueModelPolicy",
    "make_policy",
]
