"""Instances of mallocGame: a seeded sampler of training problems and a fixed evaluation set.

An instance is a ``Problem`` (a graph, a scratchpad capacity, a hardware preset and the
weights setting) with a name that says what it is, e.g. ``resnet18/M_R/weights``,
``dag1003x24/M_H/acts`` or ``gpt2[40:72m]/M_R+0.35/acts``. Graphs come from the real
models (``models/zoo/*.onnx`` and ``models/nas/*.onnx``, lowered with 1-byte elements as in
COSMA's evaluation), windows of them (``cosma.core.window``: a contiguous stretch of one of
their cheap orders, a problem of its own) and ``cosma.core.synthetic.random_dag``;
capacities are COSMA's budget tiers of each graph and setting (``cosma.schedules.tiers``),
and for sampled real graphs also points between ``M_R`` and ``M_P``.

**The split by model.** Every real model is in exactly one of ``TRAIN_MODELS``,
``VALIDATION_MODELS`` and ``HELD_OUT_MODELS`` (file stems, fixed here once and listed in
``results/muzero/README.md``). Samplers only ever draw training models, their windows
included; validation models are for choosing settings; held-out models only for the
final evaluation (``mallocgame eval --models``).
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
from cosma.core.paths import NAS_DIR, ZOO_DIR
from cosma.core.synthetic import random_dag
from cosma.core.units import TIERS
from cosma.core.window import window_problem
from cosma.schedules.orders import CHEAP_ORDERS, SCHEDULES
from cosma.schedules.tiers import compute_tiers, resolve_capacity

# The split by model (file stems; see the module docstring). Held out: a small and a
# mobile CNN, a RandWire graph and a vision transformer, one of each family the training
# set also has (resnet50/resnext50, efficientnet's inverted residuals in lraspp, the other
# RandWire seeds, bert/gpt2) but never these graphs. Validation: one more of each kind.
TRAIN_MODELS = (
    "amoebanet_d", "bert_base", "darts_v2", "deeplabv3_resnet50", "densenet121", "fcn_resnet50", "gpt2",
    "lraspp_mobilenet_v3_large", "nasnetalarge", "pnasnet5large", "randwire_ws_n32_s0", "resnet50", "resnext50",
    "s3d", "transformer",
)  # fmt: skip
VALIDATION_MODELS = ("efficientnet_b0", "r2plus1d_18", "randwire_ws_n32_s1")
HELD_OUT_MODELS = ("mobilenetv2", "randwire_ws_n16_s0", "resnet18", "vit_b_16")
SPLITS = {"train": TRAIN_MODELS, "validation": VALIDATION_MODELS, "held-out": HELD_OUT_MODELS}
MODEL_DIRS = (ZOO_DIR, NAS_DIR)  # where the real models are


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


def real_models(split: str | None = None, dirs: Sequence[str | Path] = MODEL_DIRS) -> list[Path]:
    """The real models' ONNX files (zoo and NAS), sorted by stem; only those of one split
    (``"train"``, ``"validation"``, ``"held-out"``) when ``split`` is given."""
    if split is not None and split not in SPLITS:
        raise UsageError(f"unknown split {split!r}; known: {', '.join(SPLITS)}")
    paths = sorted((p for d in dirs for p in zoo_models(d)), key=lambda p: p.stem)
    return [p for p in paths if split is None or p.stem in SPLITS[split]]


def split_of(stem: str) -> str | None:
    """Which split a real model (file stem) is in; None for a model outside all three."""
    return next((name for name, stems in SPLITS.items() if stem in stems), None)


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


PRESETS = ("default", "dags", "zoo", "real", "mixed")


class InstanceSampler:
    """Draws training instances: real graphs, their windows or random DAGs x capacities x
    weights settings.

    Presets: "dags" (random DAGs only), "default" (whole zoo models or DAGs, ``zoo_prob``),
    "zoo" (whole zoo models only), "real" (training models of the zoo and NAS sets: whole
    graphs with chance ``whole_prob``, else windows of ``window_ops`` operators of one of
    their cheap orders; capacities at the tiers, or with chance ``between_prob`` at a
    point between ``M_R`` and ``M_P``) and "mixed" (a random DAG with chance ``dag_prob``,
    else what "real" draws). Whatever the preset, no model of the validation or held-out
    split (``VALIDATION_MODELS``, ``HELD_OUT_MODELS``) is ever drawn, whole or in part.

    ``sample(rng)`` uses only ``rng`` (the env passes its ``np_random``), so two envs
    seeded alike draw the same instances. Lowered graphs, orders and tier capacities are
    cached.
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
        model_dirs: Sequence[str | Path] = MODEL_DIRS,
        window_ops: tuple[int, int] = (8, 64),
        whole_prob: float = 0.1,
        max_whole_ops: int = 160,
        between_prob: float = 0.25,
        dag_prob: float = 0.5,
    ):
        """
        Args:
            zoo_dir: where the zoo's ONNX files are ("default", "zoo"); models that fail to
                lower are skipped.
            hardware: preset of every instance.
            tiers: capacity tiers drawn from, uniformly.
            weights: weights settings drawn from (True: weights take scratchpad space).
            zoo_prob: "default": chance of a zoo model rather than a random DAG (0 when the zoo is empty).
            dag_ops: inclusive range of the number of operators of random DAGs.
            max_zoo_ops: "default", "zoo": zoo models with more operators are left out (episode length).
            seed: offsets the random DAG seeds, so samplers with different seeds draw
                different graphs from the same generator.
            preset: one of ``PRESETS`` (see the class docstring).
            model_dirs: "real", "mixed": where the real models are (their training split is drawn).
            window_ops: "real", "mixed": inclusive range of a window's number of operators.
            whole_prob: "real", "mixed": chance of a whole model (of at most ``max_whole_ops``
                operators) rather than a window of one.
            max_whole_ops: "real", "mixed": longer models are only drawn as windows (a whole
                densenet121 is a 932-decision game).
            between_prob: "real", "mixed": chance of a capacity between ``M_R`` and ``M_P``
                (``M_R + f (M_P - M_R)``, f a uniform draw in hundredths) instead of a tier.
            dag_prob: "mixed": chance of a random DAG.
        """
        if preset not in PRESETS:
            raise UsageError(f"unknown sampler preset {preset!r}; known: {', '.join(PRESETS)}")
        self.hardware = get_hardware(hardware)
        self.tiers = tuple(tiers)
        self.weights = tuple(weights)
        self.dag_ops = dag_ops
        self.seed = seed
        self.max_zoo_ops = max_zoo_ops
        self.window_ops = window_ops
        self.whole_prob = whole_prob
        self.max_whole_ops = max_whole_ops
        self.between_prob = between_prob
        self.real = preset in ("real", "mixed")
        self.real_prob = {"real": 1.0, "mixed": 1.0 - dag_prob}.get(preset, 0.0)
        # Models are lowered when first drawn; one that fails or is too long is dropped.
        # Validation and held-out models are never drawn, whatever the folder holds.
        if self.real:
            paths = real_models("train", model_dirs)
        elif preset == "dags":
            paths = []
        else:
            paths = [p for p in zoo_models(zoo_dir) if split_of(p.stem) in (None, "train")]
        self.zoo_paths: list[str] = [str(p) for p in paths]
        if preset in ("zoo", "real") and not self.zoo_paths:
            raise UsageError(f"sampler preset {preset!r} but no training model found")
        self.zoo_prob = {"default": zoo_prob, "zoo": 1.0, "dags": 0.0}.get(preset, self.real_prob)
        self._tiers: dict[tuple[str, bool], dict[str, Bytes]] = {}
        self._orders: dict[tuple[str, str], tuple[str, ...]] = {}

    def sample(self, rng: np.random.Generator) -> Instance:
        tier = self.tiers[int(rng.integers(len(self.tiers)))]
        weights = self.weights[int(rng.integers(len(self.weights)))]
        graph = None
        while graph is None and self.zoo_paths and rng.random() < self.zoo_prob:
            path = self.zoo_paths[int(rng.integers(len(self.zoo_paths)))]
            if not self.real:
                graph = self._zoo_graph(path)
                continue
            # A window whose M_R is its M_P (a stretch of a chain) has nothing to decide at
            # any capacity: draw again, a few times, rather than train on it.
            for _ in range(self.REDRAWS):
                graph = self._real_graph(path, rng)
                if graph is None or self._capacities(graph, weights)["M_P"] > self._capacities(graph, weights)["M_R"]:
                    break
        real = graph is not None
        if graph is None:
            lo, hi = self.dag_ops
            dag_seed = self.seed * 1_000_003 + int(rng.integers(2**31))
            graph = dag_graph(dag_seed, int(rng.integers(lo, hi + 1)), self.hardware.alignment)
        caps = self._capacities(graph, weights)
        capacity, label = caps[tier], tier
        if real and self.real and rng.random() < self.between_prob:
            share = int(rng.integers(1, 100))  # hundredths: the name says the capacity exactly
            a = self.hardware.alignment
            capacity = max(caps["M_R"], (caps["M_R"] + share * (caps["M_P"] - caps["M_R"]) // 100) // a * a)
            label = f"M_R+{share / 100:.2f}"
        problem = Problem(graph, capacity, self.hardware, weights)
        return Instance(f"{graph.name}/{label}/{'weights' if weights else 'acts'}", problem)

    REDRAWS = 4  # windows drawn at most per real instance, until one is not degenerate

    def _capacities(self, graph: Graph, weights: bool) -> dict[str, Bytes]:
        key = (graph.name, weights)
        if key not in self._tiers:
            if len(self._tiers) > 4096:
                self._tiers.clear()
            self._tiers[key] = tier_capacities(graph, self.hardware, weights)
        return self._tiers[key]

    def _real_graph(self, path: str, rng: np.random.Generator) -> Graph | None:
        """A training model whole, or a window of one of its cheap orders (None: the model
        cannot be played and is dropped)."""
        whole = self._zoo_graph(path, max_ops=None)
        if whole is None:
            return None
        n_ops = len(whole.operators)
        if rng.random() < self.whole_prob and n_ops <= self.max_whole_ops:
            return whole
        kind = ("file", "memory")[int(rng.integers(2))]
        if (path, kind) not in self._orders:
            self._orders[(path, kind)] = SCHEDULES[kind](Problem(whole, self.hardware.capacity, self.hardware))
        order = self._orders[(path, kind)]
        lo, hi = self.window_ops
        size = min(n_ops, int(rng.integers(lo, hi + 1)))
        start = int(rng.integers(0, n_ops - size + 1))
        name = f"{Path(path).stem}[{start}:{start + size}{kind[0]}]"
        base = Problem(whole, self.hardware.capacity, self.hardware)
        return window_problem(base, order[start : start + size], name=name).graph

    def _zoo_graph(self, path: str, max_ops: int | None = -1) -> Graph | None:
        """The lowered model, or None (and the model dropped) when it cannot be played
        (longer than ``max_ops``, by default ``max_zoo_ops``; None: any length)."""
        limit = self.max_zoo_ops if max_ops == -1 else max_ops
        try:
            graph = load_zoo_graph(path)
        except Exception:  # noqa: BLE001 - a model the lowering does not support (yet): leave it out
            graph = None
        if graph is None or (limit is not None and len(graph.operators) > limit):
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
    """The fixed evaluation set: real models (all, or those named in ``models`` by file
    stem; zoo and NAS, or only ``zoo_dir`` when another folder is given) and ``n_dags``
    random DAGs (seeds 1000, 1001, ...) x tiers x weights settings, in a fixed order. The
    same arguments always give the same list. A named model that is not there is a usage
    error."""
    hw = get_hardware(hardware)
    dirs = MODEL_DIRS if Path(zoo_dir) == Path(ZOO_DIR) else (zoo_dir,)
    paths = [p for p in real_models(None, dirs) if models is None or p.stem in models]
    missing = sorted(set(models or ()) - {p.stem for p in paths})
    if missing:
        raise UsageError(f"no model {', '.join(missing)} in {', '.join(str(d) for d in dirs)}")
    graphs: list[Graph] = [load_zoo_graph(str(path)) for path in paths]
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
    "MODEL_DIRS",
    "TRAIN_MODELS",
    "VALIDATION_MODELS",
    "HELD_OUT_MODELS",
    "SPLITS",
    "PRESETS",
    "real_models",
    "split_of",
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
