"""The tensor-lifetime IR: every type the solvers, the validator and the cost model share.

Conventions used everywhere in cosma:

* Sizes and offsets are whole **bytes**. A tensor's *footprint* in the scratchpad is
  its size rounded up to the problem's alignment, at least one alignment unit (so an
  empty tensor has an address too); offsets are multiples of the alignment.
* Time is counted in **steps**: step ``t`` runs the ``t``-th operator of the schedule.
* A residency's step interval is **half-open**: ``[start, end)`` means the tensor is
  resident at steps ``start, start+1, ..., end-1``. Loads happen just before
  ``start``; evictions (and spills) just after ``end - 1``.

The problem (``Problem``: a ``Graph`` plus the accelerator) and the answer (``Plan``)
are separate objects; no solver writes into a problem.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from functools import cached_property
from typing import Mapping

Bytes = int  # a size or an offset in bytes
Step = int  # an index into the schedule
TensorName = str
OpName = str


class TensorKind(enum.Enum):
    """Where a tensor comes from, which fixes what its traffic costs."""

    INPUT = "input"  # graph input: loaded from DRAM once (compulsory)
    WEIGHT = "weight"  # initializer/constant: loaded from DRAM once (compulsory)
    ACTIVATION = "activation"  # produced by an operator, consumed inside the graph
    OUTPUT = "output"  # produced by an operator and stored to DRAM once (compulsory)


@dataclass(frozen=True)
class Tensor:
    name: TensorName
    size: Bytes  # bytes of data, >= 0 (an empty tensor still takes a footprint: see Problem.footprint)
    kind: TensorKind
    shape: tuple[int, ...] = ()  # element shape, informational
    dtype_bytes: int = 0  # bytes per element, informational (0: unknown)


@dataclass(frozen=True)
class Operator:
    name: OpName  # unique in the graph
    op_type: str  # ONNX op type, e.g. "Conv"
    inputs: tuple[TensorName, ...]  # distinct tensor names, in first-use order
    outputs: tuple[TensorName, ...]  # distinct tensor names
    macs: int = 0  # multiply-accumulates (or element operations) for the latency model
    onnx_node: str = ""  # name of the ONNX node it came from ("" when hand built)


@dataclass(frozen=True)
class FoldedNode:
    """An ONNX node that takes no operator step: constant-folded or a view of its input."""

    onnx_node: str
    op_type: str
    how: str  # "folded" (computed at compile time) or "alias" (output shares input storage)
    alias_of: TensorName = ""  # for "alias": the tensor whose storage the output reuses


@dataclass(frozen=True)
class Graph:
    """A DAG of operators over tensors. ``operators`` is the file (framework) order."""

    name: str
    tensors: Mapping[TensorName, Tensor]
    operators: tuple[Operator, ...]
    folded: tuple[FoldedNode, ...] = ()

    @cached_property
    def op_index(self) -> dict[OpName, int]:
        return {op.name: i for i, op in enumerate(self.operators)}

    @cached_property
    def producer(self) -> dict[TensorName, OpName]:
        return {t: op.name for op in self.operators for t in op.outputs}

    @cached_property
    def consumers(self) -> dict[TensorName, tuple[OpName, ...]]:
        users: dict[TensorName, list[OpName]] = {name: [] for name in self.tensors}
        for op in self.operators:
            for t in op.inputs:
                users[t].append(op.name)
        return {t: tuple(ops) for t, ops in users.items()}

    @cached_property
    def memo(self) -> dict:
        """Results of pure, costly analyses of this graph, keyed by their name and every input
        they depend on (``cosma.schedules.minpeak``'s proven minimum-peak order: the candidate
        orders and the order bounds both ask for it, seconds on graphs of thousands of operators)."""
        return {}

    def predecessors(self, op: OpName) -> tuple[OpName, ...]:
        """Operators whose outputs ``op`` reads, without repeats, in input order."""
        seen: dict[OpName, None] = {}
        for t in self.operators[self.op_index[op]].inputs:
            if t in self.producer:
                seen[self.producer[t]] = None
        return tuple(seen)


@dataclass(frozen=True)
class Hardware:
    """An accelerator: its scratchpad and the rates used by the latency estimate."""

    name: str
    capacity: Bytes  # default scratchpad size
    alignment: Bytes  # every offset is a multiple of this; footprints are rounded up to it
    dram_bytes_per_cycle: float  # DRAM <-> scratchpad bandwidth
    macs_per_cycle: float  # peak compute throughput
    element_bytes: int  # bytes per element the accelerator computes in (1: int8)
    description: str = ""


# What a solver minimizes (``Problem.objective``); both figures are reported whichever it is.
OBJECTIVES = ("bytes", "latency")


@dataclass(frozen=True)
class Problem:
    """One memory-mapping instance: a graph, a scratchpad size and what counts.

    ``objective`` says what "better" and "optimal" mean for this instance:

    * ``"bytes"`` (the default, COSMA's): non-compulsory bytes (spills plus reloads);
      plans of equal traffic are equal.
    * ``"latency"`` (mallocGame's): the cost model's ``latency_cycles``, the per-step
      roofline in which a load is charged to the step its residency starts, so a load
      started early, at a compute-bound step, is hidden; ties broken by non-compulsory bytes.

    A solver's ``bound`` and ``OPTIMAL`` status are statements in this objective
    (``cosma.core.interface`` checks them): a solver that proves bounds on bytes only
    reports no bound under ``"latency"``.
    """

    graph: Graph
    capacity: Bytes
    hardware: Hardware
    weights_counted: bool = True  # False: weights stream from DRAM and take no scratchpad space
    objective: str = "bytes"  # "bytes" or "latency": see the class docstring

    def __post_init__(self) -> None:
        if self.objective not in OBJECTIVES:
            raise ValueError(f"unknown objective {self.objective!r}; known objectives: {', '.join(OBJECTIVES)}")

    @property
    def alignment(self) -> Bytes:
        return self.hardware.alignment

    def footprint(self, tensor: TensorName) -> Bytes:
        """Scratchpad bytes ``tensor`` occupies while resident: its size rounded up to the
        alignment, and at least one alignment unit. A zero-size tensor (an empty shape
        tensor, a zero-length dimension) still takes an address, as a runtime's allocator
        gives it one; it moves no bytes (traffic counts ``size``)."""
        size = self.graph.tensors[tensor].size
        a = self.alignment
        return max(a, -(-size // a) * a)

    def is_managed(self, tensor: TensorName) -> bool:
        """True when the tensor lives in the scratchpad (weights only when counted)."""
        return self.weights_counted or self.graph.tensors[tensor].kind is not TensorKind.WEIGHT

    @cached_property
    def managed_tensors(self) -> tuple[TensorName, ...]:
        return tuple(t for t in self.graph.tensors if self.is_managed(t))

    def operands(self, op: Operator) -> tuple[TensorName, ...]:
        """Managed tensors that must be resident while ``op`` runs: inputs then outputs."""
        known = self._operands.get(op.name)
        if known is not None and known[0] is op:
            return known[1]
        return tuple(t for t in (*op.inputs, *op.outputs) if self.is_managed(t))

    @cached_property
    def _operands(self) -> dict[OpName, tuple[Operator, tuple[TensorName, ...]]]:
        # Every solver asks for operands and operator footprints step after step (the order
        # search scores thousands of orders): computed once per problem.
        return {
            op.name: (op, tuple(t for t in (*op.inputs, *op.outputs) if self.is_managed(t)))
            for op in self.graph.operators
        }

    @cached_property
    def operator_footprints(self) -> dict[OpName, Bytes]:
        """Per operator, the footprint of its operands (what must fit while it runs)."""
        return {op.name: sum(self.footprint(t) for t in self.operands(op)) for op in self.graph.operators}


@dataclass(frozen=True, order=True)
class Residency:
    """One stay of a tensor in the scratchpad, at a fixed offset."""

    tensor: TensorName
    start: Step  # first step resident (loaded or produced just before/at it)
    end: Step  # one past the last step resident (half-open)
    offset: Bytes  # byte address of the first byte in the scratchpad
    spilled: bool = False  # written back to DRAM when evicted (activations only, at most once)


@dataclass(frozen=True)
class Plan:
    """A solver's answer: the schedule and every residency. Checked by ``validate``."""

    schedule: tuple[OpName, ...]  # operator names in execution order, one per step
    residencies: tuple[Residency, ...]


__all__ = [
    "Bytes",
    "Step",
    "TensorName",
    "OpName",
    "TensorKind",
    "Tensor",
    "Operator",
    "FoldedNode",
    "Graph",
    "Hardware",
    "OBJECTIVES",
    "Problem",
    "Residency",
    "Plan",
]
