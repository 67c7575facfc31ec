"""The sub-problem of a window of operators: a problem of its own, playable and solvable.

A *window* is a set of operators of a graph (typically a contiguous stretch of one
topological order). Cut out of the graph it becomes a graph of its own: tensors produced
outside the window enter it as graph inputs (their first residency is a compulsory load),
and, with ``leaving_as_outputs``, activations the window produces that an operator outside
it reads leave it as graph outputs (stored once, compulsory; the whole graph's outputs stay
outputs). Weights stay weights. Without ``leaving_as_outputs`` a produced tensor keeps its
kind: an activation read only outside the window is then dead after its producer, which is
what a lower bound over the window wants (nothing forces a store).

The window's operators keep their relative order in ``Graph.operators``, so its file
order is the window's order.
"""

from __future__ import annotations

from typing import Iterable

from cosma.core.ir import Graph, OpName, Problem, Tensor, TensorKind, TensorName


def window_problem(
    problem: Problem,
    ops: Iterable[OpName],
    *,
    leaving_as_outputs: bool = True,
    name: str | None = None,
    capacity: int | None = None,
) -> Problem:
    """The problem of the operators ``ops`` of ``problem`` (see the module docstring).

    ``name``: the window graph's name (default ``"<graph>[window]"``); ``capacity``: the
    window problem's scratchpad (default: the whole problem's). Hardware, weights setting
    and objective are the whole problem's.
    """
    graph = problem.graph
    names = set(ops)
    unknown = names - set(graph.op_index)
    if unknown:
        raise ValueError(f"operators not in graph {graph.name!r}: {sorted(unknown)[:5]}")
    chosen = tuple(op for op in graph.operators if op.name in names)
    consumers = graph.consumers
    tensors: dict[TensorName, Tensor] = {}
    for op in chosen:
        for a in (*op.inputs, *op.outputs):
            t = graph.tensors[a]
            produced_inside = graph.producer.get(a) in names
            if t.kind in (TensorKind.ACTIVATION, TensorKind.OUTPUT) and not produced_inside:
                t = Tensor(t.name, t.size, TensorKind.INPUT, t.shape, t.dtype_bytes)
            elif leaving_as_outputs and t.kind is TensorKind.ACTIVATION and produced_inside:
                if any(c not in names for c in consumers.get(a, ())):
                    t = Tensor(t.name, t.size, TensorKind.OUTPUT, t.shape, t.dtype_bytes)
            tensors[a] = t
    sub = Graph(name or f"{graph.name}[window]", tensors, chosen)
    return Problem(
        sub,
        problem.capacity if capacity is None else capacity,
        problem.hardware,
        problem.weights_counted,
        problem.objective,
    )


__all__ = ["window_problem"]
