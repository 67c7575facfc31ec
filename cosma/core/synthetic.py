"""Graphs built in code: a small builder for hand-made test cases and seeded random DAGs
and RandWire stages (for property tests, the mallocGame instance sampler and the NAS benchmark)."""

from __future__ import annotations

import networkx as nx
import numpy as np

from cosma.core.ir import Graph, Operator, Tensor, TensorKind


def build_graph(
    name: str,
    sizes: dict[str, int],
    ops: list[tuple[str, list[str], list[str]]],
    *,
    inputs: tuple[str, ...] = (),
    weights: tuple[str, ...] = (),
    outputs: tuple[str, ...] = (),
    macs: dict[str, int] | None = None,
) -> Graph:
    """A graph from ``(op name, input names, output names)`` triples, in file order.

    Tensors named in ``inputs``/``weights``/``outputs`` get that kind; every other
    tensor is an activation. Example::

        build_graph("chain", {"x": 4, "a": 8, "y": 4},
                    [("f", ["x"], ["a"]), ("g", ["a"], ["y"])], inputs=("x",), outputs=("y",))
    """
    macs = macs or {}

    def kind(t: str) -> TensorKind:
        if t in inputs:
            return TensorKind.INPUT
        if t in weights:
            return TensorKind.WEIGHT
        if t in outputs:
            return TensorKind.OUTPUT
        return TensorKind.ACTIVATION

    tensors = {t: Tensor(t, size, kind(t)) for t, size in sizes.items()}
    operators = tuple(
        Operator(n, "Op", tuple(dict.fromkeys(i)), tuple(dict.fromkeys(o)), macs=macs.get(n, 0)) for n, i, o in ops
    )
    return Graph(name, tensors, operators)


def random_dag(
    seed: int,
    n_ops: int = 8,
    *,
    max_inputs: int = 3,
    size_range: tuple[int, int] = (1, 64),
    weight_prob: float = 0.3,
    skip_prob: float = 0.3,
) -> Graph:
    """A seeded random DAG of ``n_ops`` single-output operators.

    Operator ``i`` reads the previous operator's output and, with probability
    ``skip_prob`` each, up to ``max_inputs - 1`` older outputs (long-lived skip tensors
    are what makes spilling interesting); with probability ``weight_prob`` it also reads
    a weight. Outputs nobody reads become graph outputs.
    """
    rng = np.random.default_rng(seed)
    lo, hi = size_range
    sizes: dict[str, int] = {"x": int(rng.integers(lo, hi + 1))}
    ops: list[tuple[str, list[str], list[str]]] = []
    weights: list[str] = []
    produced = ["x"]
    for i in range(n_ops):
        ins = [produced[-1]]
        for _ in range(max_inputs - 1):
            if len(produced) > 1 and rng.random() < skip_prob:
                ins.append(produced[int(rng.integers(0, len(produced) - 1))])
        if rng.random() < weight_prob:
            w = f"w{i}"
            sizes[w] = int(rng.integers(lo, hi + 1))
            weights.append(w)
            ins.append(w)
        out = f"t{i}"
        sizes[out] = int(rng.integers(lo, hi + 1))
        ops.append((f"op{i}", ins, [out]))
        produced.append(out)
    read = {t for _, ins, _ in ops for t in ins}
    outputs = tuple(t for t in produced[1:] if t not in read)
    macs = {name: int(rng.integers(1, 1000)) for name, _, _ in ops}
    return build_graph(f"random{seed}", sizes, ops, inputs=("x",), weights=tuple(weights), outputs=outputs, macs=macs)


def branchy_dag(seed: int, n_ops: int = 6, max_size: int = 16) -> Graph:
    """A seeded random DAG whose operators read one or two of ANY earlier tensors: few
    chains, many valid orders (what free-schedule search and order enumeration need)."""
    rng = np.random.default_rng(seed)
    sizes = {"x": int(rng.integers(1, max_size + 1))}
    produced, ops = ["x"], []
    for i in range(n_ops):
        picks = rng.integers(0, len(produced), size=int(rng.integers(1, 3)))
        ins = list(dict.fromkeys(produced[int(j)] for j in picks))
        sizes[f"t{i}"] = int(rng.integers(1, max_size + 1))
        ops.append((f"op{i}", ins, [f"t{i}"]))
        produced.append(f"t{i}")
    read = {t for _, ins, _ in ops for t in ins}
    outputs = tuple(t for t in produced[1:] if t not in read)
    return build_graph(f"branchy{seed}", sizes, ops, inputs=("x",), outputs=outputs)


def randwire_graph(seed: int, n: int = 32, k: int = 4, p: float = 0.75, *, channels: int = 64, hw: int = 28) -> Graph:
    """A RandWire stage: a Watts-Strogatz graph ``WS(n, k, p)`` made acyclic by pointing every
    edge from the lower to the higher node index (Xie et al. 2019).

    Node ``i`` sums its predecessors' outputs and applies a ReLU-conv-BN, one operator
    writing ``t{i}``; nodes without predecessors read the stage input, and one final
    operator averages the nodes without successors. Tensor sizes are 8-bit feature maps of
    ``channels x hw x hw`` scaled by a seeded factor per node, so lifetimes and sizes are
    both irregular; every conv reads a ``channels^2 x 3 x 3`` weight."""
    rng = np.random.default_rng(seed)
    ws = nx.connected_watts_strogatz_graph(n, k, p, seed=seed)
    base = channels * hw * hw
    sizes: dict[str, int] = {"x": base, "y": channels}
    ops: list[tuple[str, list[str], list[str]]] = []
    weights = []
    macs = {}
    for i in range(n):
        preds = sorted(j for j in ws.neighbors(i) if j < i)
        ins = [f"t{j}" for j in preds] or ["x"]
        w = f"w{i}"
        sizes[w] = channels * channels * 9
        weights.append(w)
        sizes[f"t{i}"] = int(base * rng.choice([0.5, 1.0, 1.0, 2.0]))
        ops.append((f"node{i}", ins + [w], [f"t{i}"]))
        macs[f"node{i}"] = sizes[f"t{i}"] * channels * 9
    sinks = [f"t{i}" for i in range(n) if not any(j > i for j in ws.neighbors(i))]
    ops.append(("output", sinks, ["y"]))
    return build_graph(
        f"randwire-n{n}-k{k}-p{p}-s{seed}", sizes, ops, inputs=("x",), weights=tuple(weights), outputs=("y",), macs=macs
    )


__all__ = ["build_graph", "random_dag", "branchy_dag", "randwire_graph"]
