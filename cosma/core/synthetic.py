"""Graphs built in code: a small builder for hand-made test cases and seeded random DAGs
(for property tests and the mallocGame instance sampler)."""

from __future__ import annotations

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


__all__ = ["build_graph", "random_dag", "branchy_dag"]
