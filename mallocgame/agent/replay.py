"""Self-play games, the replay buffer, and the n-step training targets MuZero unrolls on.

A game stores, per decision ``t``: the observation, the action played, the reward that
followed, the search's improved policy and its root value. Value targets are n-step
returns bootstrapped with the search's root value ``n`` decisions later, computed once
when the game is stored::

    z_t = r_t + g r_{t+1} + ... + g^(n-1) r_{t+n-1} + g^n v_{t+n}   (v = 0 past the end)

A sample is a position ``t`` and the ``K`` decisions after it: the network sees the
observation at ``t`` only and must predict, from its own latent unroll, the rewards,
values and policies at ``t, t+1, ..., t+K``. Past the end of the game the state is
absorbing: zero reward, zero value, and no policy target (masked out of the loss).
The observations at ``t+1 .. t+K`` come along too, for the consistency loss (the
unrolled latent should match the representation of what was really observed), and so do
the search's statistics of every root action it tried at ``t .. t+K`` (the reward and the
backed-up value each led to), for the sibling loss (``learner.muzero_loss``).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np


@dataclass
class Game:
    """One finished (or growing) episode."""

    observations: list[dict[str, np.ndarray]] = field(default_factory=list)
    actions: list[int] = field(default_factory=list)
    rewards: list[float] = field(default_factory=list)  # reward after each action
    policies: list[np.ndarray] = field(default_factory=list)  # [A] improved policy per decision
    root_values: list[float] = field(default_factory=list)  # searched value per decision
    # Per decision, [A] each: the search's reward and value of every root action, and which it tried.
    child_rewards: list[np.ndarray] = field(default_factory=list)
    child_values: list[np.ndarray] = field(default_factory=list)
    child_tried: list[np.ndarray] = field(default_factory=list)
    surprises: list[float] = field(default_factory=list)  # how far the search moved the policy from its prior

    def append(self, obs: dict[str, np.ndarray], action: int, reward: float, policy: np.ndarray, value: float,
               child_rewards=None, child_values=None, child_tried=None, surprise: float = 0.0):  # fmt: skip
        """One decision; the ``child_*`` arrays [A] are the search's root statistics (none: nothing
        tried); ``surprise`` in [0, 1] the total variation distance from the prior to ``policy``."""
        self.surprises.append(float(surprise))
        num_actions = len(policy)
        self.observations.append(obs)
        self.actions.append(int(action))
        self.rewards.append(float(reward))
        self.policies.append(np.asarray(policy, dtype=np.float32))
        self.root_values.append(float(value))
        tried = np.zeros(num_actions, bool) if child_tried is None else np.asarray(child_tried, bool)
        self.child_tried.append(tried)
        self.child_rewards.append(
            np.zeros(num_actions, np.float32) if child_rewards is None else np.asarray(child_rewards, np.float32)
        )
        self.child_values.append(
            np.zeros(num_actions, np.float32) if child_values is None else np.asarray(child_values, np.float32)
        )

    def __len__(self) -> int:
        return len(self.actions)

    @property
    def total_reward(self) -> float:
        return float(sum(self.rewards))


def n_step_values(rewards: np.ndarray, root_values: np.ndarray, td_steps: int, discount: float) -> np.ndarray:
    """[T] n-step value targets (see the module docstring)."""
    T = len(rewards)
    out = np.zeros(T, dtype=np.float32)
    for t in range(T):
        end = min(t + td_steps, T)
        ret = sum(discount ** (i - t) * rewards[i] for i in range(t, end))
        if t + td_steps < T:
            ret += discount**td_steps * root_values[t + td_steps]
        out[t] = ret
    return out


SIBLING_FIELDS = ("child_rewards", "child_values", "child_tried")  # the search's root statistics, [A] per decision


@dataclass
class StoredGame:
    """A game frozen into arrays for fast sampling."""

    observations: dict[str, np.ndarray]  # key -> [T, *shape] float32
    actions: np.ndarray  # [T] int64
    rewards: np.ndarray  # [T] float32
    policies: np.ndarray  # [T, A] float32
    values: np.ndarray  # [T] float32 n-step value targets
    child_rewards: np.ndarray  # [T, A] float32
    child_values: np.ndarray  # [T, A] float32
    child_tried: np.ndarray  # [T, A] float32, 1 where the search tried the root action
    surprises: np.ndarray  # [T] float64, how far the search moved the policy from its prior


@dataclass
class Batch:
    """Training targets for ``B`` positions unrolled ``K`` steps."""

    observations: dict[str, np.ndarray]  # key -> [B, *shape] at the sampled position
    actions: np.ndarray  # [B, K] actions played from there (random past the end)
    target_values: np.ndarray  # [B, K+1]
    target_rewards: np.ndarray  # [B, K+1] (index 0 unused: no reward before the root)
    target_policies: np.ndarray  # [B, K+1, A]
    policy_mask: np.ndarray  # [B, K+1] 1 where a policy target exists (inside the game)
    next_observations: dict[str, np.ndarray] | None = None  # key -> [B, K, *shape] at t+1..t+K (zeros past the end)
    child_rewards: np.ndarray | None = None  # [B, K+1, A] the search's reward of each root action at t+k
    child_values: np.ndarray | None = None  # [B, K+1, A] the search's value of the state each led to
    child_tried: np.ndarray | None = None  # [B, K+1, A] 1 where the search tried it (0: no target, past the end)


class ReplayBuffer:
    """The most recent games, up to ``capacity`` decisions; positions sampled uniformly."""

    def __init__(self, capacity: int, td_steps: int, discount: float):
        self.capacity = capacity
        self.td_steps = td_steps
        self.discount = discount
        self.games: deque[StoredGame] = deque()
        self.num_positions = 0

    def add(self, game: Game) -> None:
        if len(game) == 0:
            return
        rewards = np.asarray(game.rewards, dtype=np.float32)
        stored = StoredGame(
            observations={k: np.stack([o[k] for o in game.observations]).astype(np.float32)
                          for k in game.observations[0]},
            actions=np.asarray(game.actions, dtype=np.int64),
            rewards=rewards,
            policies=np.stack(game.policies).astype(np.float32),
            values=n_step_values(rewards, np.asarray(game.root_values), self.td_steps, self.discount),
            **{name: np.stack(getattr(game, name)).astype(np.float32) for name in SIBLING_FIELDS},
            surprises=np.asarray(game.surprises, dtype=np.float64),
        )  # fmt: skip
        self.games.append(stored)
        self.num_positions += len(stored.actions)
        while self.num_positions > self.capacity and len(self.games) > 1:
            self.num_positions -= len(self.games.popleft().actions)

    def __len__(self) -> int:
        return self.num_positions

    def sample(
        self, batch_size: int, unroll_steps: int, rng: np.random.Generator, surprise_share: float = 0.0
    ) -> Batch:
        """``batch_size`` positions: a ``surprise_share`` of them drawn in proportion to their
        surprise, the rest uniformly over every stored decision."""
        lengths = np.array([len(g.actions) for g in self.games])
        flat = rng.integers(0, lengths.sum(), size=batch_size)
        focused = round(surprise_share * batch_size)
        if focused:
            surprises = np.concatenate([g.surprises for g in self.games])
            if surprises.sum() > 0:
                flat[:focused] = rng.choice(len(surprises), size=focused, p=surprises / surprises.sum())
        game_of = np.searchsorted(np.cumsum(lengths), flat, side="right")
        starts = flat - (np.cumsum(lengths) - lengths)[game_of]

        K = unroll_steps
        num_actions = self.games[0].policies.shape[1]
        obs: dict[str, list[np.ndarray]] = {k: [] for k in self.games[0].observations}
        nxt = {k: np.zeros((batch_size, K, *v.shape[1:]), np.float32) for k, v in self.games[0].observations.items()}
        actions = rng.integers(0, num_actions, size=(batch_size, K))
        values = np.zeros((batch_size, K + 1), np.float32)
        rewards = np.zeros((batch_size, K + 1), np.float32)
        policies = np.full((batch_size, K + 1, num_actions), 1.0 / num_actions, np.float32)
        mask = np.zeros((batch_size, K + 1), np.float32)
        siblings = {name: np.zeros((batch_size, K + 1, num_actions), np.float32) for name in SIBLING_FIELDS}
        for i, (g, t) in enumerate(zip(game_of, starts)):
            game = self.games[g]
            T = len(game.actions)
            for k, v in obs.items():
                v.append(game.observations[k][t])
                later = game.observations[k][t + 1 : t + 1 + K]  # [<= K, *shape]
                nxt[k][i, : len(later)] = later
            inside = min(K + 1, T - t)  # positions t .. t+inside-1 exist
            values[i, :inside] = game.values[t : t + inside]
            policies[i, :inside] = game.policies[t : t + inside]
            mask[i, :inside] = 1.0
            for name, out in siblings.items():
                out[i, :inside] = getattr(game, name)[t : t + inside]
            n_act = min(K, T - t)
            actions[i, :n_act] = game.actions[t : t + n_act]
            rewards[i, 1 : n_act + 1] = game.rewards[t : t + n_act]
        return Batch(
            {k: np.stack(v) for k, v in obs.items()}, actions, values, rewards, policies, mask, nxt, **siblings
        )


__all__ = ["Game", "StoredGame", "Batch", "ReplayBuffer", "n_step_values"]
