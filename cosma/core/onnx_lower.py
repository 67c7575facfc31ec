"""Lowering an ONNX model into the tensor-lifetime IR (``cosma.core.ir.Graph``).

The optimizer needs shapes, not weights, so models are read with
``load_external_data=False``: a weight-stripped file (initializers keep name, dtype and
dims; their bytes live in an external file that need not exist) lowers exactly like the
full one. What the lowering does, in order:

1. **Load and check the structure** (``ModelError`` for anything malformed): the file
   parses, the graph is non-empty, every node reads only tensors defined before it, no
   tensor is defined twice, and no node carries a subgraph (``If``/``Loop``/``Scan``:
   control flow has no static schedule). Model-local functions are inlined first.
2. **Fix the graph inputs' shapes**: ``input_shapes`` replaces the dims of the named
   inputs (the CLI's ``--input-shape NAME=1x3x224x224``); then ``batch`` (the CLI's
   ``--batch N``, default 1) fixes a symbolic leading dim (a ``dim_param``, an unset dim
   or -1 on dim 0: ``[N, 3, 224, 224]``) of every other input, and ``notify`` says so in
   one line; an input that is still dynamic is reported with ``--input-shape`` in the message.
3. **Infer every shape** with ONNX shape inference (strict mode, with data propagation,
   so shape-computing subgraphs such as ``Shape -> Gather -> Concat -> Reshape`` give
   static shapes).
4. **Classify every node**, in file order:

   * *folded*: every input is a constant (initializer or folded output), or the node
     only reads shapes (``Shape``, ``Size``). It runs at compile time and takes no step;
     its outputs are constants. Constants read by a real operator become ``WEIGHT``
     tensors; constants nobody reads are dropped.
   * *alias*: a view operator (``Reshape``, ``Flatten``, ``Squeeze``, ``Unsqueeze``,
     ``Identity``, ``Dropout`` in inference) whose output shares its input's storage.
     Its output name maps to the input's storage tensor (chains resolved), so the
     consumers of the view read the original tensor. A view must keep the element
     count (a file's fixed shapes can break that under ``input_shapes``).
   * *real*: everything else becomes one ``Operator``, named after its node (``Conv_12``,
     op type and node index, when the node has no name; repeated names made unique).

5. **Build tensors**: only tensors some operator reads or writes enter the IR (unused
   inputs and initializers are dropped). Kinds: graph inputs -> ``INPUT``; initializers
   and folded constants -> ``WEIGHT``; operator results named as graph outputs, directly
   or through a view -> ``OUTPUT``; every other operator result -> ``ACTIVATION``.
   Size in bytes = number of elements x element bytes: the file's element type unless
   ``dtype_bytes`` overrides it for every tensor (the COSMA evaluation uses 1: int8).
   Zero-size constants (an empty ``roi`` of ``Resize``) are left out of the operands;
   any other zero-size tensor is an error. A graph output that is a graph input or a
   constant (directly or through a view) is already in DRAM: it takes no step, no
   scratchpad space and no store.

Operator cost (``Operator.macs``), used only by the latency estimate:

* ``Conv`` (and ``ConvInteger``, ``QLinearConv``): output elements x (C_in / groups x
  kernel elements), i.e. output elements x the weight's elements per output channel;
* ``ConvTranspose``: input elements x (C_out / groups x kernel elements);
* ``MatMul``/``Gemm`` (and the integer/quantized forms): M x N x K, batched (output
  elements x K, broadcasting included);
* everything else: the number of output elements, an element-wise estimate (one
  operation per element produced; a pooling window or a reduction is not expanded).

Every problem is reported as one ``ModelError`` line naming the node or tensor at fault.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Callable, Mapping, NoReturn

import onnx
import onnx.inliner
from google.protobuf.message import DecodeError

from cosma.core.errors import ModelError, UsageError
from cosma.core.ir import FoldedNode, Graph, Operator, Tensor, TensorKind, TensorName

# Operators whose (first) output is a view of their first input: same bytes, new shape.
VIEW_OPS = frozenset({"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Dropout"})

# Operators whose output depends only on their input's (static) shape, never its data.
SHAPE_OPS = frozenset({"Shape", "Size"})

# Bits per element of every ONNX tensor element type with a fixed width.
_ELEMENT_BITS: dict[int, int] = {
    onnx.TensorProto.FLOAT: 32,
    onnx.TensorProto.UINT8: 8,
    onnx.TensorProto.INT8: 8,
    onnx.TensorProto.UINT16: 16,
    onnx.TensorProto.INT16: 16,
    onnx.TensorProto.INT32: 32,
    onnx.TensorProto.INT64: 64,
    onnx.TensorProto.BOOL: 8,
    onnx.TensorProto.FLOAT16: 16,
    onnx.TensorProto.DOUBLE: 64,
    onnx.TensorProto.UINT32: 32,
    onnx.TensorProto.UINT64: 64,
    onnx.TensorProto.COMPLEX64: 64,
    onnx.TensorProto.COMPLEX128: 128,
    onnx.TensorProto.BFLOAT16: 16,
    onnx.TensorProto.FLOAT8E4M3FN: 8,
    onnx.TensorProto.FLOAT8E4M3FNUZ: 8,
    onnx.TensorProto.FLOAT8E5M2: 8,
    onnx.TensorProto.FLOAT8E5M2FNUZ: 8,
    onnx.TensorProto.UINT4: 4,
    onnx.TensorProto.INT4: 4,
    onnx.TensorProto.FLOAT4E2M1: 4,
}

Dim = int | str | None  # a static size, a symbolic name, or unknown

DTYPE_BYTES = (1, 2, 4, 8)  # element widths ``dtype_bytes`` may force on every tensor


def check_dtype_bytes(value: int | None, what: str = "--dtype-bytes") -> int | None:
    """The one check of an element-width override (both CLIs, the API, ``lower``):
    None (the file's dtypes) or one of ``DTYPE_BYTES``; ``UsageError`` otherwise."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value not in DTYPE_BYTES:
        raise UsageError(f"{what} must be 1, 2, 4 or 8, got {value!r}")
    return value


def check_batch(value: int | None, what: str = "--batch") -> int | None:
    """A batch size for symbolic leading dims: None (leave them) or a positive integer."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise UsageError(f"{what} must be a positive integer, got {value!r}")
    return value


def _stderr(line: str) -> None:
    import sys

    print(line, file=sys.stderr, flush=True)


@dataclass(frozen=True)
class _ValueType:
    """What shape inference knows about one tensor."""

    elem_type: int  # onnx.TensorProto data type (0: unknown)
    dims: tuple[Dim, ...] | None  # None: rank unknown

    def static_shape(self) -> tuple[int, ...] | None:
        if self.dims is None or not all(isinstance(d, int) for d in self.dims):
            return None
        return tuple(self.dims)  # type: ignore[arg-type]

    def describe(self) -> str:
        if self.dims is None:
            return "[?]"
        return "[" + ", ".join("?" if d is None else str(d) for d in self.dims) + "]"


# --------------------------------------------------------------------------- public API


def load_model(
    path: str | os.PathLike[str],
    *,
    dtype_bytes: int | None = None,
    input_shapes: Mapping[str, tuple[int, ...]] | None = None,
    name: str | None = None,
    batch: int | None = 1,
    notify: Callable[[str], None] | None = _stderr,
) -> Graph:
    """Lower the ONNX file at ``path`` (weights may be stripped). See the module docstring.

    ``name`` defaults to the file name without its extension; ``batch`` and ``notify`` as
    for ``lower``.
    """
    check_dtype_bytes(dtype_bytes, "dtype_bytes")
    check_batch(batch, "batch")
    model = _read(path)
    if name is None:
        name = os.path.splitext(os.path.basename(os.fspath(path)))[0]
    return lower(model, dtype_bytes=dtype_bytes, input_shapes=input_shapes, name=name, batch=batch, notify=notify)


def lower(
    model: onnx.ModelProto,
    *,
    dtype_bytes: int | None = None,
    input_shapes: Mapping[str, tuple[int, ...]] | None = None,
    name: str | None = None,
    batch: int | None = 1,
    notify: Callable[[str], None] | None = _stderr,
) -> Graph:
    """Lower an in-memory ONNX model (left unchanged). See the module docstring.

    ``name`` defaults to the ONNX graph's name. ``batch`` fixes the symbolic leading dim of
    every graph input not named in ``input_shapes`` (None: leave it, and fail on it);
    ``notify`` gets one line naming the inputs it fixed (default: stderr; None: silent).
    """
    check_dtype_bytes(dtype_bytes, "dtype_bytes")
    check_batch(batch, "batch")
    if not model.HasField("graph") or len(model.graph.node) == 0:
        raise ModelError("the ONNX model has an empty graph (no nodes): not a model, or truncated")
    prepared = onnx.ModelProto()
    prepared.CopyFrom(model)
    if prepared.functions:
        try:
            prepared = onnx.inliner.inline_local_functions(prepared)
        except Exception as e:  # noqa: BLE001 - any onnx failure on a malformed function body -> ModelError
            raise ModelError(f"cannot inline the model's local functions: {_one_line(e)}") from None
    graph = prepared.graph
    _check_structure(graph)
    if input_shapes:
        _override_input_shapes(prepared, input_shapes)
    batched = _fix_batch(prepared, batch, skip=set(input_shapes or ())) if batch is not None else []
    _check_graph_inputs(graph)
    if batched and notify is not None:  # once the inputs are static: an error is the one line said
        notify(
            f"note: {', '.join(repr(n) for n in batched)} had a dynamic batch dimension: fixed to {batch}"
            " (--batch N to change it)"
        )
    types = _infer_types(prepared, overridden=bool(input_shapes) or bool(batched))
    return _Lowering(graph, types, dtype_bytes).build(name if name is not None else graph.name or "model")


def parse_input_shape(text: str) -> tuple[str, tuple[int, ...]]:
    """``"NAME=1x3x224x224"`` -> ``("NAME", (1, 3, 224, 224))`` (the CLI's ``--input-shape``).

    A scalar is ``"NAME="``. Raises ``UsageError`` on anything else.
    """
    input_name, sep, dims = text.rpartition("=")
    if not sep or not input_name:
        raise UsageError(f"--input-shape expects NAME=1x3x224x224, got {text!r}")
    try:
        shape = tuple(int(d) for d in dims.lower().split("x")) if dims else ()
    except ValueError:
        raise UsageError(f"--input-shape expects NAME=1x3x224x224 (positive integers), got {text!r}") from None
    if any(d <= 0 for d in shape):
        raise UsageError(f"--input-shape dimensions must be positive, got {text!r}")
    return input_name, shape


# --------------------------------------------------------------------------- reading and checking


def _read(path: str | os.PathLike[str]) -> onnx.ModelProto:
    if not os.path.exists(path):
        raise ModelError(f"{os.fspath(path)}: no such file")
    if os.path.isdir(path):
        raise ModelError(f"{os.fspath(path)}: is a directory, not an ONNX file")
    try:
        model = onnx.load(path, load_external_data=False)
    except DecodeError as e:
        raise ModelError(f"{os.fspath(path)}: not a valid ONNX file (malformed or truncated protobuf: {e})") from None
    except Exception as e:  # noqa: BLE001 - onnx raises several types for unreadable input
        raise ModelError(f"{os.fspath(path)}: cannot be read as ONNX ({type(e).__name__}: {_one_line(e)})") from None
    if not model.HasField("graph") or len(model.graph.node) == 0:
        raise ModelError(f"{os.fspath(path)}: no ONNX graph with nodes in the file (not an ONNX model, or truncated)")
    return model


def _node_names(graph: onnx.GraphProto) -> list[str]:
    """A unique, non-empty name for every node: its own, else ``op_type_index``; a repeated
    name gets ``_2``, ``_3``... (``Operator.onnx_node`` keeps the name as in the file)."""
    names: list[str] = []
    taken: set[str] = set()
    for i, node in enumerate(graph.node):
        base = node.name or f"{node.op_type}_{i}"
        unique, k = base, 1
        while unique in taken:
            k += 1
            unique = f"{base}_{k}"
        taken.add(unique)
        names.append(unique)
    return names


def _check_structure(graph: onnx.GraphProto) -> None:
    """Reject control flow and graphs whose nodes read undefined tensors (truncated or
    malformed files often still parse) or define a tensor twice."""
    defined: set[str] = {v.name for v in graph.input} | {t.name for t in graph.initializer}
    defined |= {t.values.name for t in graph.sparse_initializer}
    for node_name, node in zip(_node_names(graph), graph.node):
        if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in node.attribute):
            raise ModelError(
                f"node {node_name!r} is control flow ({node.op_type}): only graphs without subgraphs can be scheduled"
            )
        for t in node.input:
            if t and t not in defined:
                raise ModelError(
                    f"node {node_name!r} ({node.op_type}) reads tensor {t!r} that is not defined before it "
                    "(malformed or truncated model, or nodes not in topological order)"
                )
        for t in node.output:
            if t and t in defined:
                raise ModelError(f"tensor {t!r} is defined twice (again by node {node_name!r}): malformed model")
            if t:
                defined.add(t)
    for out in graph.output:
        if out.name not in defined:
            raise ModelError(f"graph output {out.name!r} is never computed: malformed or truncated model")


def _override_input_shapes(model: onnx.ModelProto, input_shapes: Mapping[str, tuple[int, ...]]) -> None:
    """Set the dims of the named graph inputs, and forget every shape the file recorded
    for other tensors: they were computed for the old input shapes."""
    graph = model.graph
    initializers = {t.name for t in graph.initializer}
    by_name = {v.name: v for v in graph.input if v.name not in initializers}
    for input_name, shape in input_shapes.items():
        if input_name not in by_name:
            known = ", ".join(sorted(by_name)) or "none"
            raise UsageError(f"--input-shape names {input_name!r}, which is not a graph input (inputs: {known})")
        if any(int(d) <= 0 for d in shape):
            raise UsageError(f"--input-shape {input_name}: dimensions must be positive, got {tuple(shape)}")
        tensor_type = by_name[input_name].type.tensor_type
        tensor_type.ClearField("shape")
        for d in shape:
            tensor_type.shape.dim.add().dim_value = int(d)
    _forget_recorded_shapes(graph)


def _fix_batch(model: onnx.ModelProto, batch: int, skip: set[str]) -> list[str]:
    """Set a symbolic leading dim (``dim_param``, unset, or a negative value) of every graph
    input a node reads and ``skip`` does not name to ``batch``; the names of those inputs."""
    graph = model.graph
    initializers = {t.name for t in graph.initializer}
    read = {t for node in graph.node for t in node.input}
    fixed = []
    for value in graph.input:
        if value.name in initializers or value.name in skip or value.name not in read:
            continue
        if not value.type.HasField("tensor_type") or not value.type.tensor_type.HasField("shape"):
            continue
        dims = value.type.tensor_type.shape.dim
        if len(dims) == 0 or (dims[0].HasField("dim_value") and dims[0].dim_value > 0):
            continue
        dims[0].Clear()
        dims[0].dim_value = batch
        fixed.append(value.name)
    if fixed:
        _forget_recorded_shapes(graph)
    return fixed


def _forget_recorded_shapes(graph: onnx.GraphProto) -> None:
    """Drop the shapes the file recorded for inner tensors and outputs: they were computed
    for the old input shapes (shape inference recomputes them)."""
    del graph.value_info[:]
    for out in graph.output:
        if out.type.HasField("tensor_type"):
            out.type.tensor_type.ClearField("shape")


def _value_type(type_proto: onnx.TypeProto) -> _ValueType | None:
    if not type_proto.HasField("tensor_type"):
        return None
    tt = type_proto.tensor_type
    if not tt.HasField("shape"):
        return _ValueType(tt.elem_type, None)
    dims: list[Dim] = []
    for d in tt.shape.dim:
        if d.HasField("dim_value") and d.dim_value >= 0:
            dims.append(int(d.dim_value))
        elif d.HasField("dim_param") and d.dim_param:
            dims.append(d.dim_param)
        else:
            dims.append(None)
    return _ValueType(tt.elem_type, tuple(dims))


def _check_graph_inputs(graph: onnx.GraphProto) -> None:
    """Every graph input a node reads needs a static shape; say how to give one."""
    initializers = {t.name for t in graph.initializer}
    read = {t for node in graph.node for t in node.input}
    for value in graph.input:
        if value.name in initializers or value.name not in read:
            continue
        vt = _value_type(value.type)
        if vt is None:
            raise ModelError(f"graph input {value.name!r} is not a tensor (sequence, map and optional are unsupported)")
        if vt.dims is None:
            raise ModelError(
                f"graph input {value.name!r} has an unknown rank: fix it with --input-shape {value.name}=DIMS "
                f"(e.g. {value.name}=1x3x224x224)"
            )
        if vt.static_shape() is None:
            example = "x".join(str(d) if isinstance(d, int) else "1" for d in vt.dims)
            raise ModelError(
                f"graph input {value.name!r} has dynamic shape {vt.describe()}: fix it with "
                f"--input-shape {value.name}={example} (dynamic dims shown as 1: give the size you want)"
            )


def _infer_types(model: onnx.ModelProto, overridden: bool) -> dict[str, _ValueType]:
    """Every tensor's type after ONNX shape inference (strict, with data propagation).
    Initializer dims come from the initializers themselves (their data may be absent)."""
    try:
        inferred = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True, data_prop=True)
    except Exception as e:  # noqa: BLE001 - InferenceError, ValidationError, RuntimeError from the C++ side
        hint = (
            " (with the given --input-shape: the file may fix other dims to its exported shape)" if overridden else ""
        )
        raise ModelError(f"ONNX shape inference failed{hint}: {_one_line(e)}") from None
    graph = inferred.graph
    types: dict[str, _ValueType] = {}
    for value in (*graph.input, *graph.value_info, *graph.output):
        vt = _value_type(value.type)
        if vt is not None and (value.name not in types or vt.static_shape() is not None):
            types[value.name] = vt
    for init in graph.initializer:
        types[init.name] = _ValueType(init.data_type, tuple(int(d) for d in init.dims))
    for sparse in graph.sparse_initializer:
        types[sparse.values.name] = _ValueType(sparse.values.data_type, tuple(int(d) for d in sparse.dims))
    for node in graph.node:  # Constant nodes: the attribute holds the exact type
        if node.op_type == "Constant" and node.output:
            for attr in node.attribute:
                if attr.name == "value" and attr.type == onnx.AttributeProto.TENSOR:
                    types[node.output[0]] = _ValueType(attr.t.data_type, tuple(int(d) for d in attr.t.dims))
    return types


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return text if len(text) <= 300 else text[:297] + "..."


# --------------------------------------------------------------------------- lowering proper


class _Lowering:
    """One pass over the nodes in file order: classify, then build the IR."""

    def __init__(self, graph: onnx.GraphProto, types: dict[str, _ValueType], dtype_bytes: int | None):
        self.graph = graph
        self.types = types
        self.dtype_bytes = dtype_bytes
        self.node_names = _node_names(graph)
        self.initializers = {t.name for t in graph.initializer} | {t.values.name for t in graph.sparse_initializer}
        self.graph_inputs = [v.name for v in graph.input if v.name not in self.initializers]
        self.constants: set[str] = set(self.initializers)  # initializers and folded outputs
        self.storage: dict[str, str] = {}  # view output -> the tensor whose bytes it reads
        self.origin: dict[str, tuple[str, str]] = {}  # tensor -> (node name, op type) that defines it
        self.read = {t for node in graph.node for t in node.input} | {v.name for v in graph.output}

    def root(self, tensor: TensorName) -> TensorName:
        """The tensor whose storage ``tensor`` names (itself unless it is a view)."""
        return self.storage.get(tensor, tensor)

    def build(self, name: str) -> Graph:
        folded: list[FoldedNode] = []
        real: list[tuple[str, onnx.NodeProto]] = []
        for node_name, node in zip(self.node_names, self.graph.node):
            for t in node.output:
                if t:
                    self.origin[t] = (node_name, node.op_type)
            inputs = [t for t in node.input if t]
            if node.op_type in SHAPE_OPS or all(t in self.constants for t in inputs):
                self.constants.update(t for t in node.output if t)
                folded.append(FoldedNode(node.name or node_name, node.op_type, "folded"))
            elif self._is_view(node):
                self._check_view(node_name, node)
                source = self.root(node.input[0])
                self.storage[node.output[0]] = source
                folded.append(FoldedNode(node.name or node_name, node.op_type, "alias", alias_of=source))
            else:
                real.append((node_name, node))
        if not real:
            raise ModelError(f"graph {name!r} has no operator left to schedule: every node is a constant or a view")

        outputs = {self.root(v.name) for v in self.graph.output}
        operators: list[Operator] = []
        used: dict[TensorName, None] = {}  # IR tensors, in first-use order
        for node_name, node in real:
            ins = self._operator_inputs(node)
            outs = tuple(dict.fromkeys(t for t in node.output if t))
            used.update(dict.fromkeys((*ins, *outs)))
            macs = self._macs(node)
            operators.append(Operator(node_name, node.op_type, ins, outs, macs, onnx_node=node.name or node_name))
        produced = {t for op in operators for t in op.outputs}

        tensors: dict[TensorName, Tensor] = {}
        for t in used:
            if t in produced:
                kind = TensorKind.OUTPUT if t in outputs else TensorKind.ACTIVATION
            elif t in self.constants:
                kind = TensorKind.WEIGHT
            else:
                kind = TensorKind.INPUT
            tensors[t] = self._tensor(t, kind)
        return Graph(name, tensors, tuple(operators), tuple(folded))

    def _is_view(self, node: onnx.NodeProto) -> bool:
        if node.op_type not in VIEW_OPS or not node.input or not node.input[0]:
            return False
        # Dropout is a view in inference unless something reads its mask output.
        return not (node.op_type == "Dropout" and len(node.output) > 1 and node.output[1] in self.read)

    def _check_view(self, node_name: str, node: onnx.NodeProto) -> None:
        """A view keeps every element; a file whose static shapes were fixed at export
        can break that once ``input_shapes`` changes an input (a Reshape to ``[1, 2048]``
        fed a batch of 2), and lowering it would silently undercount bytes."""
        before, after = self._static_shape(node.input[0]), self._static_shape(node.output[0])
        if before is not None and after is not None and math.prod(before) != math.prod(after):
            raise ModelError(
                f"node {node_name!r} ({node.op_type}) turns {list(before)} into {list(after)}: element counts differ "
                "(shapes fixed in the file do not fit the input shapes)"
            )

    def _operator_inputs(self, node: onnx.NodeProto) -> tuple[TensorName, ...]:
        """Distinct storage tensors the node reads, in order. Zero-size constants (an empty
        ``roi`` or ``scales`` of ``Resize``) hold no bytes and are left out."""
        out: dict[TensorName, None] = {}
        for t in node.input:
            if not t:
                continue
            t = self.root(t)
            shape = self._static_shape(t)
            if t in self.constants and shape is not None and 0 in shape:
                continue
            out[t] = None
        return tuple(out)

    def _static_shape(self, t: TensorName) -> tuple[int, ...] | None:
        vt = self.types.get(t)
        return vt.static_shape() if vt is not None else None

    def _tensor(self, t: TensorName, kind: TensorKind) -> Tensor:
        vt = self.types.get(t)
        shape = vt.static_shape() if vt is not None else None
        if vt is None or shape is None:
            self._unknown_shape(t, vt)
        if 0 in shape:
            raise ModelError(f"tensor {t!r}{self._where(t)} has zero size (shape {list(shape)}): nothing to schedule")
        elements = math.prod(shape)
        if self.dtype_bytes is not None:
            size, per_element = elements * self.dtype_bytes, self.dtype_bytes
        else:
            bits = _ELEMENT_BITS.get(vt.elem_type)
            if bits is None:
                type_name = onnx.TensorProto.DataType.Name(vt.elem_type) if vt.elem_type else "unknown"
                raise ModelError(
                    f"tensor {t!r}{self._where(t)} has element type {type_name} with no fixed size: "
                    "pass dtype_bytes (--dtype-bytes) to size every tensor"
                )
            size, per_element = -(-elements * bits // 8), max(1, bits // 8)
        return Tensor(t, size, kind, shape, per_element)

    def _where(self, t: TensorName) -> str:
        if t in self.origin:
            node_name, op_type = self.origin[t]
            return f" (output of node {node_name!r}, {op_type})"
        return " (graph input)" if t in self.graph_inputs else ""

    def _unknown_shape(self, t: TensorName, vt: _ValueType | None) -> NoReturn:
        if t in self.origin and (vt is None or vt.dims is None):
            node_name, op_type = self.origin[t]
            node = self.graph.node[self.node_names.index(node_name)]
            known = onnx.defs.has(op_type, node.domain) if node.domain in ("", "ai.onnx") else False
            reason = "no shape inference for it" if known else "not an ONNX operator shape inference knows"
            raise ModelError(
                f"unsupported operator {op_type!r} (node {node_name!r}, domain {node.domain or 'ai.onnx'!r}): "
                f"{reason}, so the shape of {t!r} is unknown"
            )
        shape = vt.describe() if vt is not None else "[?]"
        raise ModelError(
            f"tensor {t!r}{self._where(t)} has a dynamic or unknown shape {shape}: its size depends on data "
            "or on a graph input dimension (fix inputs with --input-shape NAME=1x3x224x224)"
        )

    # ----------------------------------------------------------------------- cost estimate

    def _macs(self, node: onnx.NodeProto) -> int:
        """Multiply-accumulates of the node (see the module docstring), 0 if unknown."""
        shape = self._static_shape
        out = [shape(t) for t in node.output if t]
        out_elems = sum(math.prod(s) for s in out if s is not None)
        op = node.op_type
        try:
            if op in ("Conv", "ConvInteger", "QLinearConv"):
                weight = shape(node.input[3 if op == "QLinearConv" else 1])
                return out_elems * math.prod(weight[1:])  # type: ignore[index]
            if op == "ConvTranspose":
                x, weight = shape(node.input[0]), shape(node.input[1])
                return math.prod(x) * math.prod(weight[1:])  # type: ignore[arg-type, index]
            if op in ("MatMul", "MatMulInteger", "QLinearMatMul"):
                a = shape(node.input[0])
                return out_elems * a[-1]  # type: ignore[index]
            if op == "Gemm":
                a = shape(node.input[0])
                trans_a = any(attr.name == "transA" and attr.i for attr in node.attribute)
                return out_elems * (a[0] if trans_a else a[1])  # type: ignore[index]
        except (TypeError, IndexError):
            return out_elems
        return out_elems


def graph_stats(graph: Graph) -> dict[str, int]:
    """Counts for tables and logs: operators, tensors by kind, folded/alias nodes."""
    kinds = {k: 0 for k in TensorKind}
    for t in graph.tensors.values():
        kinds[t.kind] += 1
    return {
        "operators": len(graph.operators),
        "tensors": len(graph.tensors),
        **{f"{k.value}s": n for k, n in kinds.items()},
        "folded": sum(f.how == "folded" for f in graph.folded),
        "aliases": sum(f.how == "alias" for f in graph.folded),
    }


__all__ = [
    "VIEW_OPS",
    "SHAPE_OPS",
    "DTYPE_BYTES",
    "check_dtype_bytes",
    "check_batch",
    "load_model",
    "lower",
    "parse_input_shape",
    "graph_stats",
]
