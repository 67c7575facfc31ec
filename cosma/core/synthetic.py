"""Graphs built in code: a small builder for hand-made test cases, seeded random DAGs,
RandWire stages (for property tests, the mallocGame instance sampler and the NAS benchmark)
and transformer stacks of any depth (the scale benchmark), with the same stack as an ONNX
model (``transformer_stack_onnx``) to time the real lowering path."""

from __future__ import annotations

import math

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
    inputs_, weights_, outputs_ = set(inputs), set(weights), set(outputs)  # sets: graphs of 20k operators

    def kind(t: str) -> TensorKind:
        if t in inputs_:
            return TensorKind.INPUT
        if t in weights_:
            return TensorKind.WEIGHT
        if t in outputs_:
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


# One transformer block, as (op type, inputs, outputs) over block-local names: ``x`` is the
# block's input, ``r2`` its output; ``g1``... are its weights (shapes in ``_block_shapes``).
# Attention's heads are batched: Q/K/V read a ``heads x d x d/heads`` weight (MatMul
# broadcasts the normalized input over the heads); the context is put back to ``seq x d``
# by a Transpose and a Reshape (a view: no operator) before the output projection.
TRANSFORMER_BLOCK: tuple[tuple[str, str, tuple[str, ...], tuple[str, ...]], ...] = (
    ("ln1", "LayerNormalization", ("x", "g1", "b1"), ("h1",)),
    ("q", "MatMul", ("h1", "wq"), ("q",)),
    ("k", "MatMul", ("h1", "wk"), ("k",)),
    ("kt", "Transpose", ("k",), ("kt",)),
    ("v", "MatMul", ("h1", "wv"), ("v",)),
    ("scores", "MatMul", ("q", "kt"), ("s",)),
    ("softmax", "Softmax", ("s",), ("p",)),
    ("context", "MatMul", ("p", "v"), ("c",)),
    ("merge", "Transpose", ("c",), ("ct",)),  # heads x seq x dh -> seq x heads x dh (then a view to seq x d)
    ("proj", "MatMul", ("ct", "wo"), ("a",)),
    ("res1", "Add", ("x", "a"), ("r1",)),
    ("ln2", "LayerNormalization", ("r1", "g2", "b2"), ("h2",)),
    ("up", "MatMul", ("h2", "w1"), ("u",)),
    ("gelu", "Gelu", ("u",), ("gu",)),
    ("down", "MatMul", ("gu", "w2"), ("dn",)),
    ("res2", "Add", ("r1", "dn"), ("r2",)),
)
TRANSFORMER_WEIGHTS = ("g1", "b1", "wq", "wk", "wv", "wo", "g2", "b2", "w1", "w2")


def _block_shapes(d: int, seq: int, heads: int, mlp: int) -> dict[str, tuple[int, ...]]:
    dh = d // heads
    return {
        "x": (seq, d), "g1": (d,), "b1": (d,), "h1": (seq, d),
        "wq": (heads, d, dh), "wk": (heads, d, dh), "wv": (heads, d, dh),
        "q": (heads, seq, dh), "k": (heads, seq, dh), "kt": (heads, dh, seq), "v": (heads, seq, dh),
        "s": (heads, seq, seq), "p": (heads, seq, seq), "c": (heads, seq, dh), "ct": (seq, heads, dh),
        "wo": (d, d), "a": (seq, d), "r1": (seq, d), "g2": (d,), "b2": (d,), "h2": (seq, d),
        "w1": (d, mlp * d), "u": (seq, mlp * d), "gu": (seq, mlp * d), "w2": (mlp * d, d),
        "dn": (seq, d), "r2": (seq, d),
    }  # fmt: skip


def _block_macs(op_type: str, shapes: dict[str, tuple[int, ...]], ins: tuple[str, ...], out: str) -> int:
    """The lowering's estimate (``cosma.core.onnx_lower``): MatMul = output elements x K,
    everything else one operation per output element."""
    elements = math.prod(shapes[out])
    return elements * shapes[ins[1]][-2] if op_type == "MatMul" else elements  # K: the second operand's rows


def _names(block: int, n_blocks: int) -> dict[str, str]:
    """Block-local name -> graph tensor name: block ``i`` reads ``x{i}`` and writes ``x{i+1}``;
    the stack reads ``x0`` and writes ``y``."""
    local = {t for _, _, ins, outs in TRANSFORMER_BLOCK for t in (*ins, *outs)}
    names = {t: f"b{block}.{t}" for t in local}
    names["x"] = f"x{block}"
    names["r2"] = "y" if block == n_blocks - 1 else f"x{block + 1}"
    return names


def transformer_stack(
    n_blocks: int, *, d_model: int = 256, seq: int = 128, heads: int = 4, mlp: int = 4, seed: int | None = None
) -> Graph:
    """``n_blocks`` pre-norm transformer encoder blocks, ``len(TRANSFORMER_BLOCK)`` = 16
    operators each: LayerNorm, the Q/K/V projections (MatMuls with weights), K transposed,
    the scores MatMul, Softmax, the context MatMul, the heads merged (a Transpose), the
    output projection, the residual Add, LayerNorm, the MLP up / GELU / down, the residual
    Add. 8-bit tensors (size = elements), MACs as the ONNX lowering estimates them, file
    order = the natural block order; the input is ``x0``, the output ``y``.

    ``seed``: None gives every block the same sizes; an integer scales each block's
    sequence length by a seeded factor (1/2, 1 or 2), so tensor sizes differ between
    blocks (a block whose length differs from its input's reads ``x`` at the previous
    length in its first LayerNorm and residual Add: sizes, not arithmetic, are modelled)."""
    if n_blocks < 1 or d_model % heads or min(d_model, seq, heads, mlp) < 1:
        raise ValueError("transformer_stack: n_blocks >= 1, positive sizes, d_model divisible by heads")
    rng = None if seed is None else np.random.default_rng(seed)
    tensors: dict[str, Tensor] = {}
    operators: list[Operator] = []
    for b in range(n_blocks):
        length = seq if rng is None else max(1, int(seq * rng.choice([0.5, 1.0, 1.0, 2.0])))
        shapes = _block_shapes(d_model, length, heads, mlp)
        names = _names(b, n_blocks)
        for op, op_type, ins, outs in TRANSFORMER_BLOCK:
            for t in (*ins, *outs):
                name = names[t]
                if name in tensors:
                    continue
                kind = (
                    TensorKind.INPUT
                    if name == "x0"
                    else TensorKind.WEIGHT
                    if t in TRANSFORMER_WEIGHTS
                    else TensorKind.OUTPUT
                    if name == "y"
                    else TensorKind.ACTIVATION
                )
                tensors[name] = Tensor(name, math.prod(shapes[t]), kind, shapes[t], 1)
            operators.append(
                Operator(
                    f"b{b}.{op}",
                    op_type,
                    tuple(names[t] for t in ins),
                    tuple(names[t] for t in outs),
                    macs=_block_macs(op_type, shapes, ins, outs[0]),
                    onnx_node=f"b{b}.{op}",
                )
            )
    suffix = "" if seed is None else f"-s{seed}"
    return Graph(f"transformer-{n_blocks}x-d{d_model}-s{seq}-h{heads}{suffix}", tensors, tuple(operators))


def transformer_stack_onnx(n_blocks: int, *, d_model: int = 256, seq: int = 128, heads: int = 4, mlp: int = 4):
    """``transformer_stack(n_blocks, ...)`` (no ``seed``) as an ``onnx.ModelProto`` built
    with ``onnx.helper`` from the same ops (opset 20; weights as initializers without
    data, as in a weight-stripped file). Lowered with ``dtype_bytes=1`` it gives the same
    operators and tensor sizes as ``transformer_stack``."""
    import onnx
    from onnx import TensorProto, helper

    shapes = _block_shapes(d_model, seq, heads, mlp)
    nodes, initializers = [], []
    for b in range(n_blocks):
        names = _names(b, n_blocks)
        for w in TRANSFORMER_WEIGHTS:
            init = TensorProto(name=names[w], data_type=TensorProto.FLOAT, dims=shapes[w])
            init.external_data.add(key="location", value="stripped.bin")  # no bytes: shapes only, as the zoo's
            init.data_location = TensorProto.EXTERNAL
            initializers.append(init)
        for op, op_type, ins, outs in TRANSFORMER_BLOCK:
            attrs: dict = {}
            inputs = [names[t] for t in ins]
            outputs = [names[t] for t in outs]
            if op == "kt":
                attrs["perm"] = [0, 2, 1]
            elif op == "merge":
                attrs["perm"] = [1, 0, 2]
            elif op == "proj":
                inputs[0] = names["ct"] + ".2d"  # the view below
            elif op_type == "Softmax":
                attrs["axis"] = -1
            elif op_type == "LayerNormalization":
                attrs["axis"] = -1
            nodes.append(helper.make_node(op_type, inputs, outputs, name=f"b{b}.{op}", **attrs))
            if op == "merge":  # the view back to seq x d: no operator
                shape_name = f"b{b}.ct_shape"
                initializers.append(helper.make_tensor(shape_name, TensorProto.INT64, [2], [seq, d_model]))
                nodes.append(
                    helper.make_node("Reshape", [outputs[0], shape_name], [outputs[0] + ".2d"], name=f"b{b}.view")
                )
    graph = helper.make_graph(
        nodes,
        f"transformer-{n_blocks}x",
        [helper.make_tensor_value_info("x0", TensorProto.FLOAT, list(shapes["x"]))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(shapes["r2"]))],
        initializer=initializers,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)], ir_version=onnx.IR_VERSION)


__all__ = [
    "build_graph",
    "random_dag",
    "branchy_dag",
    "randwire_graph",
    "TRANSFORMER_BLOCK",
    "transformer_stack",
    "transformer_stack_onnx",
]
