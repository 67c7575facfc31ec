"""Loading a trained agent from a checkpoint written by ``mallocgame train``."""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

import torch

from cosma.core.errors import UsageError
from mallocgame.agent.envs import EnvSettings
from mallocgame.agent.networks import MuZeroNet, NetConfig


@dataclass
class LoadedAgent:
    net: MuZeroNet  # in eval mode
    config: dict  # the run's TrainConfig, as saved
    settings: EnvSettings  # the env settings the networks were built for
    counters: dict  # how far the run had got


def read_checkpoint(path: str | Path) -> dict:
    """What ``mallocgame train`` saved at ``path`` (on the CPU); ``UsageError`` if it cannot be read."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"no checkpoint at {path} (train one with `mallocgame train`)")
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except (RuntimeError, EOFError, ValueError, OSError) as e:
        raise UsageError(f"{path} is not a mallocMuZero checkpoint: {e}") from None


def net_config_of(ckpt: dict) -> NetConfig:
    """The network config a checkpoint's networks were built with."""
    return NetConfig(**{**ckpt["net_config"], "obs_shapes": {
        k: tuple(v) for k, v in ckpt["net_config"]["obs_shapes"].items()}})  # fmt: skip


def load_agent(path: str | Path) -> LoadedAgent:
    """The networks and settings of a checkpoint; ``UsageError`` if it cannot be read."""
    ckpt = read_checkpoint(path)
    try:
        net = MuZeroNet(net_config_of(ckpt))
        net.load_state_dict(ckpt["model"])
    except (KeyError, RuntimeError, TypeError, ValueError) as e:
        raise UsageError(f"{path} is not a mallocMuZero checkpoint: {e}") from None
    net.eval()
    config = ckpt["config"]
    known = {f.name for f in fields(EnvSettings)}
    settings = EnvSettings(**{k: config[k] for k in known if k in config})
    return LoadedAgent(net, config, settings, ckpt.get("counters", {}))


__all__ = ["LoadedAgent", "load_agent", "read_checkpoint", "net_config_of"]
