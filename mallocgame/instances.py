"""Instances of mallocGame: a seeded sampler of training problems and a fixed evaluation set.

An instance is a ``Problem`` (a graph, a scratchpad capacity, a hardware preset and the
weights setting) with a name that says what it is, e.g. ``resnet18/M_R/weights`` or
``dag1003x24/M_H/acts``. Graphs come from the model zoo (``models/zoo/*.onnx``, lowered
with 1-byte elements as in COSMA's evaluation) and from ``cosma.core.synthetic.random_dag``;
capacities are COSMA's budget tiers of each graph and setting (``cosma.schedules.tiers``).
The sampled and evaluation sets take ``M_P`` over the two cheap orders (file order and the
memory-aware list schedule: no search per sampled instance); a tier a user names
(``make_problem``, ``mallocgame play --scratchpad M_P``) is resolved as ``cosma optimize``
resolves it, over every scheduler.

Everything here is deterministic given a seed: the sampler draws only from the
generator it is handed (the env passes its ``np_random``).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Sequence

import numpy as np

from cosma.core.errors import UsageError
from cosma.core.hardware import get_hardware
from cosma.core.ir import Bytes, Graph, Hardware, Problem
from cosma.core.paths import ZOO_DIR
from cosma.core.synthetic import random_dag
from cosma.core.units import TIERS
from cosma.schedules.orders import CHEAP_ORDERS
from cosma.schedules.tiers import compute_tiers, resolve_capacity


@dataclass(frozen=True)
class Instance:
    """One named problem to play."""

    name: str  # "<graph>/<tier or bytes>/<weights|acts>"
    problem: Problem


def tier_capacities(graph: Graph, hardware: Hardware, weights_counted: bool) -> dict[str, Bytes]:
    """``{"M_R": .., "M_H": .., "M_P": ..}`` of a graph in one setting, ``M_P`` over the two
    cheap orders (thousands of instances are sampled; see the module docstring)."""
    return compute_tiers(graph, hardware, weights_counted, kinds=CHEAP_ORDERS).as_dict()


def make_problem(
    graph: Graph, capacity: int | str | None, hardware: str | Hardware = "edge-npu", weights_counted: bool = True
) -> Problem:
    hw = get_hardware(hardware) if isinstance(hardware, str) else hardware
    return Problem(graph, resolve_capacity(graph, hw, weights_counted, capacity), hw, weights_counted)


def zoo_models(zoo_dir: str | Path = ZOO_DIR) -> list[Path]:
    """The zoo's ONNX files, sorted by name (empty when the zoo is absent)."""
    path = Path(zoo_dir)
    return sorted(path.glob("*.onnx")) if path.is_dir() else []


@functools.lru_cache(maxsize=64)
def load_zoo_graph(path: str, dtype_bytes: int = 1) -> Graph:
    """A zoo model lowered with ``dtype_bytes``-byte elements (cached: lowering is the slow part)."""
    from cosma.core.onnx_lower import load_model

    return load_model(path, dtype_bytes=dtype_bytes)


def dag_graph(seed: int, n_ops: int, alignment: Bytes) -> Graph:
    """A random DAG with tensor sizes from half an alignment unit to 48 units, so that
    footprints differ on every preset."""
    graph = random_dag(seed, n_ops, size_range=(max(1, alignment // 2), 48 * alignment))
    return replace(graph, name=f"dag{seed}x{n_ops}")


class InstanceSampler:
    """Draws training instances: zoo models or random DAGs x tiers x weights settings.

    ``sample(rng)`` uses only ``rng`` (the env passes its ``np_random``), so two envs
    seeded alike draw the same instances. Lowered graphs and tier capacities are cached.
    """

    def __init__(
        self,
        *,
        zoo_dir: str | Path = ZOO_DIR,
        hardware: str = "edge-npu",
        tiers: Sequence[str] = TIERS,
        weights: Sequence[bool] = (True, False),
        zoo_prob: float = 0.5,
        dag_ops: tuple[int, int] = (8, 48),
        max_zoo_ops: int = 400,
        seed: int = 0,
        preset: str = "default",
    ):
        """
        Args:
            zoo_dir: where the zoo's ONNX files are; models that fail to lower are skipped.
            hardware: preset of every instance.
            tiers: capacity tiers drawn from, uniformly.
            weights: weights settings drawn from (True: weights take scratchpad space).
            zoo_prob: chance of a zoo model rather than a random DAG (0 when the zoo is empty).
            dag_ops: inclusive range of the number of operators of random DAGs.
            max_zoo_ops: zoo models with more operators are left out (episode length).
            seed: offsets the random DAG seeds, so samplers with different seeds draw
                different graphs from the same generator.
            preset: "default" (the mix above), "dags" (random DAGs only) or "zoo" (zoo only).
        """
        if preset not in ("default", "dags", "zoo"):
            raise UsageError(f"unknown sampler preset {preset!r}; known: default, dags, zoo")
        self.hardware = get_hardware(hardware)
        self.tiers = tuple(tiers)
        self.weights = tuple(weights)
        self.dag_ops = dag_ops
        self.seed = seed
        self.max_zoo_ops = max_zoo_ops
        # Models are lowered when first drawn; one that fails or is too long is dropped.
        self.zoo_paths: list[str] = [] if preset == "dags" else [str(p) for p in zoo_models(zoo_dir)]
        if preset == "zoo" and not self.zoo_paths:
            raise UsageError(f"sampler preset 'zoo' but no model in {zoo_dir}")
        self.zoo_prob = {"default": zoo_prob, "zoo": 1.0, "dags": 0.0}[preset]
        self._tiers: dict[tuple[str, bool], dict[str, Bytes]] = {}

    def sample(self, rng: np.random.Generator) -> Instance:
        tier = self.tiers[int(rng.integers(len(self.tiers)))]
        weights = self.weights[int(rng.integers(len(self.weights)))]
        graph = None
        while graph is None and self.zoo_paths and rng.random() < self.zoo_prob:
            graph = self._zoo_graph(self.zoo_paths[int(rng.integers(len(self.zoo_paths)))])
        if graph is None:
            lo, hi = self.dag_ops
            dag_seed = self.seed * 1_000_003 + int(rng.integers(2**31))
            graph = dag_graph(dag_seed, int(rng.integers(lo, hi + 1)), self.hardware.alignment)
        key = (graph.name, weights)
        if key not in self._tiers:
            if len(self._tiers) > 4096:
                self._tiers.clear()
            self._tiers[key] = tier_capacities(graph, self.hardware, weights)
        problem = Problem(graph, self._tiers[key][tier], self.hardware, weights)
        return Instance(f"{graph.name}/{tier}/{'weights' if weights else 'acts'}", problem)

    def _zoo_graph(self, path: str) -> Graph | None:
        """The lowered model, or None (and the model dropped) when it cannot be played."""
        try:
            graph = load_zoo_graph(path)
        except Exception:  # noqa: BLE001 - a model the lowering does not support (yet): leave it out
            graph = None
        if graph is None or len(graph.operators) > self.max_zoo_ops:
            self.zoo_paths.remove(path)
            if not self.zoo_paths and self.zoo_prob == 1.0:
                raise UsageError("sampler preset 'zoo' but no zoo model can be played")
            return None
        return graph


def evaluation_set(
    *,
    zoo_dir: str | Path = ZOO_DIR,
    hardware: str = "edge-npu",
    models: Sequence[str] | None = None,
    n_dags: int = 8,
    dag_ops: int = 24,
    tiers: Sequence[str] = TIERS,
    weights: Sequence[bool] = (True, False),
) -> list[Instance]:
    """The fixed evaluation set: zoo models (all, or those named in ``models`` by file stem)
    and ``n_dags`` random DAGs (seeds 1000, 1001, ...) x tiers x weights settings, in a
    fixed order. The same arguments always give the same list."""
    hw = get_hardware(hardware)
    graphs: list[Graph] = []
    for path in zoo_models(zoo_dir):
        if models is None or path.stem in models:
            graphs.append(load_zoo_graph(str(path)))
    graphs.extend(dag_graph(1000 + k, dag_ops, hw.alignment) for k in range(n_dags))
    out = []
    for graph in graphs:
        for w in weights:
            caps = tier_capacities(graph, hw, w)
            for tier in tiers:
                out.append(
                    Instance(f"{graph.name}/{tier}/{'weights' if w else 'acts'}", Problem(graph, caps[tier], hw, w))
                )
    return out


__all__ = [
    "TIERS",
    "ZOO_DIR",
    "Instance",
    "tier_capacities",
    "resolve_capacity",
    "make_problem",
    "zoo_models",
    "load_zoo_graph",
    "dag_graph",
    "InstanceSampler",
    "evaluation_set",
]
