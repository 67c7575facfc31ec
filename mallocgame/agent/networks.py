"""The three MuZero networks over mallocGame observations, and their size config.

* **representation** ``h``: observation dict -> latent state ``s`` (what the search plans in);
* **dynamics** ``g``: ``(s, action)`` -> ``(reward, s')``: the learned model of one decision;
* **prediction** ``f``: ``s`` -> ``(policy logits, value)``.

The observation is a dict of float arrays (the env's ``Dict`` space). Each key is encoded
by the part that suits its shape, and the parts are concatenated:

* 1-D keys (``segment``, ``action_mask``, ...): used as they are;
* the 2-D ``occupancy`` map (scratchpad bytes x time): a small conv net;
* other 2-D keys (``pending`` segments ``[N, F]``, per-action ``candidates`` ``[K+1, C]``):
  a row encoder shared by every row, then flattened, so that a row's position (the
  order of pending segments, the index of a candidate offset) is kept.

Latent states are min-max scaled to ``[0, 1]`` per sample, as in MuZero, so that the
dynamics sees states on the same scale as the representation gives. Value and reward
heads predict in MuZero's squashed space ``h(x) = sign(x)(sqrt(|x| + 1) - 1) + eps x``:
returns (bytes moved over the capacity, ``envs.reward_unit``) range from tens for an
untrained policy to 0, and squashing keeps the regression from being ruled by the worst
games; ``inverse_transform`` gives scalars back.
Shapes at function boundaries: ``B`` batch, ``A`` = K + 1 actions, ``D`` latent size.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import gymnasium as gym
import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

IMAGE_KEY = "occupancy"  # the one observation key encoded as an image


@dataclass
class NetConfig:
    """Sizes of the networks. ``obs_shapes`` and ``num_actions`` come from the env's spaces."""

    obs_shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)  # key -> array shape, per observation
    num_actions: int = 9  # A = K + 1: evict, then K candidate offsets
    latent_dim: int = 128  # D: size of the latent state the search plans in
    hidden_dim: int = 128  # width of every hidden layer
    row_dim: int = 16  # per-row embedding of 2-D keys (pending segments, candidates)
    conv_channels: int = 8  # channels of the first conv layer over the occupancy map

    @classmethod
    def from_space(cls, space: gym.spaces.Dict, num_actions: int, **sizes) -> "NetConfig":
        shapes = {key: tuple(int(d) for d in sub.shape) for key, sub in space.spaces.items()}
        return cls(obs_shapes=shapes, num_actions=num_actions, **sizes)


def mlp(sizes: list[int], last_activation: bool = False) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes, sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2 or last_activation:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def scale_latent(s: torch.Tensor) -> torch.Tensor:
    """Min-max scale each latent state to [0, 1]. [B, D] -> [B, D]."""
    lo = s.min(dim=1, keepdim=True).values
    hi = s.max(dim=1, keepdim=True).values
    return (s - lo) / (hi - lo).clamp_min(1e-5)


TRANSFORM_EPS = 1e-3


def transform(x: torch.Tensor) -> torch.Tensor:
    """MuZero's invertible squashing h(x) of values and rewards."""
    return torch.sign(x) * (torch.sqrt(x.abs() + 1) - 1) + TRANSFORM_EPS * x


def inverse_transform(y: torch.Tensor) -> torch.Tensor:
    """h^-1(y): scalars back from the heads' squashed space."""
    eps = TRANSFORM_EPS
    return torch.sign(y) * (((torch.sqrt(1 + 4 * eps * (y.abs() + 1 + eps)) - 1) / (2 * eps)) ** 2 - 1)


class Representation(nn.Module):
    """h: observation dict -> latent state."""

    def __init__(self, cfg: NetConfig):
        super().__init__()
        self.flat_keys = sorted(k for k, s in cfg.obs_shapes.items() if len(s) == 1)
        self.row_keys = sorted(k for k, s in cfg.obs_shapes.items() if len(s) == 2 and k != IMAGE_KEY)
        self.has_image = IMAGE_KEY in cfg.obs_shapes
        width = sum(cfg.obs_shapes[k][0] for k in self.flat_keys)
        self.rows = nn.ModuleDict()
        for k in self.row_keys:
            n, f = cfg.obs_shapes[k]
            self.rows[k] = mlp([f, cfg.row_dim], last_activation=True)
            width += n * cfg.row_dim
        if self.has_image:
            c = cfg.conv_channels
            self.conv = nn.Sequential(
                nn.Conv2d(1, c, 3, stride=2, padding=1), nn.ReLU(),
                nn.Conv2d(c, 2 * c, 3, stride=2, padding=1), nn.ReLU(),
                nn.Flatten(),
            )  # fmt: skip
            h, w = cfg.obs_shapes[IMAGE_KEY]
            with torch.no_grad():
                width += self.conv(torch.zeros(1, 1, h, w)).shape[1]
        self.trunk = mlp([width, cfg.hidden_dim, cfg.latent_dim])

    def forward(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        """obs: key -> [B, *shape] float32. Returns s [B, D] in [0, 1]."""
        parts = [obs[k] for k in self.flat_keys]
        for k in self.row_keys:
            parts.append(self.rows[k](obs[k]).flatten(1))  # [B, N, F] -> [B, N * row_dim]
        if self.has_image:
            parts.append(self.conv(obs[IMAGE_KEY].unsqueeze(1)))  # [B, H, W] -> [B, C']
        return scale_latent(self.trunk(torch.cat(parts, dim=1)))


class Dynamics(nn.Module):
    """g: (latent, action) -> (reward, next latent)."""

    def __init__(self, cfg: NetConfig):
        super().__init__()
        self.num_actions = cfg.num_actions
        self.body = mlp([cfg.latent_dim + cfg.num_actions, cfg.hidden_dim, cfg.hidden_dim], last_activation=True)
        self.next_state = nn.Linear(cfg.hidden_dim, cfg.latent_dim)
        self.reward = nn.Linear(cfg.hidden_dim, 1)

    def forward(self, s: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """s [B, D], action [B] int64 -> reward [B] (squashed), next s [B, D]."""
        x = self.body(torch.cat([s, F.one_hot(action, self.num_actions).float()], dim=1))
        return self.reward(x).squeeze(1), scale_latent(s + self.next_state(x))


class Prediction(nn.Module):
    """f: latent -> (policy logits, value)."""

    def __init__(self, cfg: NetConfig):
        super().__init__()
        self.body = mlp([cfg.latent_dim, cfg.hidden_dim], last_activation=True)
        self.policy = nn.Linear(cfg.hidden_dim, cfg.num_actions)
        self.value = nn.Linear(cfg.hidden_dim, 1)

    def forward(self, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """s [B, D] -> logits [B, A] (unmasked), value [B] (squashed)."""
        x = self.body(s)
        return self.policy(x), self.value(x).squeeze(1)


class MuZeroNet(nn.Module):
    """The three networks together, with the two entry points the search calls.
    Values and rewards they return are squashed (see ``transform``)."""

    def __init__(self, cfg: NetConfig):
        super().__init__()
        self.cfg = cfg
        self.representation = Representation(cfg)
        self.dynamics = Dynamics(cfg)
        self.prediction = Prediction(cfg)

    def initial_inference(self, obs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """obs -> s [B, D], logits [B, A], value [B]."""
        s = self.representation(obs)
        logits, value = self.prediction(s)
        return s, logits, value

    def recurrent_inference(
        self, s: torch.Tensor, action: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """s [B, D], action [B] -> reward [B], next s [B, D], logits [B, A], value [B]."""
        reward, s_next = self.dynamics(s, action)
        logits, value = self.prediction(s_next)
        return reward, s_next, logits, value


def obs_to_torch(obs: dict[str, np.ndarray] | list[dict[str, np.ndarray]], keys) -> dict[str, torch.Tensor]:
    """One observation dict or a list of them -> key -> [B, *shape] float32 tensors."""
    if isinstance(obs, dict):
        return {k: torch.as_tensor(np.asarray(obs[k], dtype=np.float32)).unsqueeze(0) for k in keys}
    return {k: torch.as_tensor(np.stack([np.asarray(o[k], dtype=np.float32) for o in obs])) for k in keys}


__all__ = [
    "NetConfig",
    "MuZeroNet",
    "transform",
    "inverse_transform",
    "Representation",
    "Dynamics",
    "Prediction",
    "obs_to_torch",
    "scale_latent",
]
